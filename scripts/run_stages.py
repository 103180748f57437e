"""Run the test stages of `make test`, time each, and fail when any fails.

Every stage runs even after an earlier one failed, so one CI run shows every problem.

The whole suite runs in two lanes at once (the machines have 2 cores and the long stages mostly wait on MLflow
pods and ansible-playbook start-up):
  - `unit` (no service), then `integration` alone against the shared sandbox (default state directory and ports),
    which is started for it and always stopped at the end; its tests read and reset that sandbox's request log, so
    nothing else may use it;
  - every other stage, one after the other; `molecule` brings up a sandbox of its own (MOLECULE_SANDBOX below),
    which `upgrade` (tests/integration/test_upgrade.py) uses after it, and `quickstart` (make demo, tests/demo) one
    of its own too.
Each stage's output goes to .cache/stage-logs/<stage>.log and is printed whole when the stage ends, so the two
lanes never interleave; a line every minute says what is still running. STAGES_PARALLEL=0 runs the stages one
after the other in this process's output. A selection (`run_stages.py integration molecule`) runs just those.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PY = str(BIN / "python")
LOGS = ROOT / ".cache" / "stage-logs"

STAGES: dict[str, list[list[str]]] = {
    "lint": [
        [str(BIN / "yamllint"), "--strict", "."],
        [str(BIN / "ansible-lint"), "--profile", "production"],
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "antsibull-changelog"), "lint"],
        # The sandbox's Go program: formatted, vetted, its staging replace block what the pinned release implies.
        ["sh", "-c", 'test -z "$(gofmt -l sandbox/cluster)" || { gofmt -l sandbox/cluster; exit 1; }'],
        ["sh", "-c", "cd sandbox/cluster && CGO_ENABLED=0 go vet ./..."],
        [PY, "scripts/gen-k8s-replaces.py", "--check"],
        # The Grafana dashboard is what grafana-foundation-sdk makes from scripts/gen-grafana-dashboard.py.
        [PY, "scripts/gen-grafana-dashboard.py", "--check"],
    ],
    "sanity": [["bash", "scripts/ansible-test-sanity.sh"]],
    "unit": [[PY, "-m", "pytest", "-q", "--durations=10", "tests/unit"]],
    # The sandbox itself (its own clusters on ports and pod networks of their own): kubectl, logs, OOM, down.
    "sandbox": [[PY, "-m", "pytest", "-q", "--durations=10", "tests/sandbox"]],
    "build": [[PY, "-m", "pytest", "-q", "tests/build"]],
    "integration": [
        [PY, "-m", "pytest", "-q", "--durations=15", "tests/integration", "--ignore=tests/integration/test_upgrade.py"]
    ],
    "molecule": [[str(BIN / "molecule"), "test", "--all"]],
    # MLflow upgrades from older releases (about ten minutes): in the other lane, on molecule's sandbox after it.
    "upgrade": [[PY, "-m", "pytest", "-q", "--durations=10", "tests/integration/test_upgrade.py"]],
    # The README quick start itself (make demo, an MLflow client on its URL, make demo-down), in its own sandbox.
    "quickstart": [[PY, "-m", "pytest", "-q", "--durations=5", "tests/demo"]],
}
# The stages that use the shared sandbox (started here, stopped at the end).
NEEDS_SANDBOX = {"integration"}
# molecule's own sandbox: its scenarios keep it between them (SANDBOX_KEEP=1); stopped here when the stage ends.
# Ports and pod network apart from the shared sandbox (25432/25333/25443/25340, 10.213/16), tests/sandbox (263xx-264xx),
# bench/ (279xx) and tests/demo (275xx); below Linux's ephemeral port range (32768-60999), where the
# outgoing connections and port-forward listeners of the sandbox running beside it take their ports.
MOLECULE_SANDBOX = {
    "SANDBOX_STATE_DIR": str(ROOT / ".cache" / "molecule-sandbox"),
    "SANDBOX_PG_PORT": "27632",
    "SANDBOX_S3_PORT": "27633",
    "SANDBOX_K8S_PORT": "27643",
    "SANDBOX_WEED_PORT_BASE": "27650",
    "SANDBOX_POD_CIDR": "10.216.0.0/16",
}
STAGE_ENV = {"molecule": MOLECULE_SANDBOX, "upgrade": MOLECULE_SANDBOX}
# `unit` (no service, about 5 min) runs before `integration` in its lane: the other lane was the longer by about 10 min
# (2026-12-07: integration 2226 s against 2797 s for the rest), with only one lane running at its end.
LANES = (("unit", "integration"), ("lint", "sanity", "build", "sandbox", "molecule", "upgrade", "quickstart"))

PRINT = threading.Lock()


def say(text: str) -> None:
    with PRINT:
        print(text, flush=True)


def run(argv: list[str], env: dict[str, str], log: TextIO) -> int:
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    return subprocess.run(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode


class Runner:
    def __init__(self, streamed: bool) -> None:
        self.streamed = streamed
        self.env = {**os.environ, "SANDBOX_KEEP": "1", "PY_COLORS": "0", "ANSIBLE_FORCE_COLOR": "0"}
        self.results: dict[str, tuple[bool, float]] = {}
        self.running: dict[str, float] = {}
        self.sandbox_started = False
        self.sandbox_lock = threading.Lock()

    def stage(self, name: str, later: tuple[str, ...] = ()) -> None:
        """Run one stage; a sandbox of the stage's own is stopped after it unless a `later` stage uses it too."""
        start = time.monotonic()
        self.running[name] = start
        env = {**self.env, **STAGE_ENV.get(name, {})}
        LOGS.mkdir(parents=True, exist_ok=True)
        path = LOGS / f"{name}.log"
        ok = True
        try:
            with contextlib.nullcontext(sys.stdout) if self.streamed else open(path, "w") as log:
                if self.streamed:
                    say(f"\n===== stage {name} =====")
                if name in NEEDS_SANDBOX:
                    with self.sandbox_lock:
                        if not self.sandbox_started:
                            ok = run([PY, "-m", "sandbox", "up"], self.env, log) == 0
                            self.sandbox_started = ok
                for argv in STAGES[name] if ok else []:
                    if run(argv, env, log) != 0:
                        ok = False
                own = STAGE_ENV.get(name, {}).get("SANDBOX_STATE_DIR")
                if own and not any(STAGE_ENV.get(n, {}).get("SANDBOX_STATE_DIR") == own for n in later):
                    run([PY, "-m", "sandbox", "down"], env, log)
        finally:
            elapsed = time.monotonic() - start
            del self.running[name]
            self.results[name] = (ok, elapsed)
            verdict = f"===== stage {name}: {'ok' if ok else 'FAILED'} in {elapsed:.1f}s ====="
            if self.streamed:
                say(verdict)
            else:
                output = path.read_text(errors="replace")
                say(f"\n===== stage {name} ({path.relative_to(ROOT)}) =====\n{output}{verdict}")

    def lane(self, names: list[str]) -> None:
        for index, name in enumerate(names):
            self.stage(name, tuple(names[index + 1 :]))

    def heartbeat(self, done: threading.Event) -> None:
        while not done.wait(60):
            now = time.monotonic()
            running = ", ".join(f"{name} ({now - start:.0f}s)" for name, start in list(self.running.items()))
            if running:
                say(f"... still running: {running}")


# One test run per machine: two at once share the sandboxes' ports and /opt's images and, on two cores, time out
# each other's MLflow pods (a CI run that overlapped a clean-clone run failed 17 tests so). A second run waits.
LOCK = Path(os.environ.get("CARBON254_TEST_LOCK", "/run/lock/carbon254-mlflow-tests.lock"))


def one_run_per_machine() -> TextIO:
    """Hold the machine's test lock (waiting for it when another run has it); held until this process ends."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    handle = LOCK.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        say(f"another test run holds {LOCK} ({handle.read().strip() or 'unknown'}); waiting for it to end")
        fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} in {ROOT}\n")
    handle.flush()
    return handle


def disk(where: str) -> str:
    """Free space where the checkout and the sandboxes' images live: a full disk fails tests far from its cause."""
    usage = shutil.disk_usage(ROOT)
    return f"disk {where}: {usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.0f} GiB"


def main(selected: list[str]) -> int:
    names = selected or list(STAGES)
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        print(f"unknown stage(s) {unknown}; known: {list(STAGES)}", file=sys.stderr)
        return 2
    lanes = [[name for name in lane if name in names] for lane in LANES]
    lanes = [lane for lane in lanes if lane]
    parallel = os.environ.get("STAGES_PARALLEL", "1") != "0" and len(lanes) > 1
    lock = one_run_per_machine()  # noqa: F841 - held while this process runs
    runner = Runner(streamed=not parallel)
    wall = time.monotonic()
    say(disk("at the start"))
    try:
        if parallel:
            say(f"lanes running at once: {' | '.join(' -> '.join(lane) for lane in lanes)}")
            done = threading.Event()
            threads = [threading.Thread(target=runner.lane, args=(lane,)) for lane in lanes]
            beat = threading.Thread(target=runner.heartbeat, args=(done,), daemon=True)
            beat.start()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            done.set()
        else:
            runner.lane(names)
    finally:
        if runner.sandbox_started:
            run([PY, "-m", "sandbox", "down"], runner.env, sys.stdout)
    print("\nstage        result   seconds")
    for name in names:
        ok, elapsed = runner.results.get(name, (False, 0.0))
        print(f"{name:12} {'ok' if ok else 'FAILED':8} {elapsed:7.1f}")
    failed = sum(1 for name in names if not runner.results.get(name, (False, 0.0))[0])
    print(disk("at the end"))
    print(f"wall clock {time.monotonic() - wall:.1f}s ({'two lanes at once' if parallel else 'one after the other'})")
    print(f"stages: {len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
