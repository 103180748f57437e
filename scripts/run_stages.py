"""Run the test stages of `make test`, time each, and fail when any fails.

Every stage runs even after an earlier one failed, so one CI run shows every problem.
The sandbox (PostgreSQL + S3) is started once for the stages that need it and always stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PY = str(BIN / "python")

STAGES: dict[str, list[list[str]]] = {
    "lint": [
        [str(BIN / "yamllint"), "--strict", "."],
        [str(BIN / "ansible-lint"), "--profile", "production"],
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "antsibull-changelog"), "lint"],
    ],
    "sanity": [["bash", "scripts/ansible-test-sanity.sh"]],
    "unit": [[PY, "-m", "pytest", "-q", "tests/unit", "tests/sandbox"]],
    "build": [[PY, "-m", "pytest", "-q", "tests/build"]],
    "integration": [[PY, "-m", "pytest", "-q", "tests/integration"]],
    "molecule": [[str(BIN / "molecule"), "test", "--all"]],
}
NEEDS_SANDBOX = {"integration", "molecule"}


def run(argv: list[str], env: dict[str, str]) -> int:
    print(f"$ {' '.join(argv)}", flush=True)
    return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode


def main(selected: list[str]) -> int:
    names = selected or list(STAGES)
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        print(f"unknown stage(s) {unknown}; known: {list(STAGES)}", file=sys.stderr)
        return 2
    env = {**os.environ, "SANDBOX_KEEP": "1", "PY_COLORS": "0", "ANSIBLE_FORCE_COLOR": "0"}
    results: list[tuple[str, bool, float]] = []
    sandbox_started = False
    try:
        for name in names:
            print(f"\n===== stage {name} =====", flush=True)
            start = time.monotonic()
            ok = True
            if name in NEEDS_SANDBOX and not sandbox_started:
                ok = run([PY, "-m", "sandbox", "up"], env) == 0
                sandbox_started = ok
            for argv in STAGES[name] if ok else []:
                if run(argv, env) != 0:
                    ok = False
            elapsed = time.monotonic() - start
            results.append((name, ok, elapsed))
            print(f"===== stage {name}: {'ok' if ok else 'FAILED'} in {elapsed:.1f}s =====", flush=True)
    finally:
        if sandbox_started:
            run([PY, "-m", "sandbox", "down"], env)
    print("\nstage        result   seconds")
    for name, ok, elapsed in results:
        print(f"{name:12} {'ok' if ok else 'FAILED':8} {elapsed:7.1f}")
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"total {sum(e for _, _, e in results):.1f}s")
    print(f"stages: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
