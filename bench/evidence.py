"""docs/reliability.md from the tests themselves: the bad inputs tried, the faults injected, what happened.

Runs the integration tests that try bad input and inject faults against the shared sandbox (started by the tests'
fixture when it is not running), with EVIDENCE_FILE set: each of them records what it tried and what it saw, after
its assertions passed (harness/evidence.py). The page is written only when every one of them passed.

    make evidence        (.venv/bin/python bench/evidence.py)

`bench/evidence.py --from FILE` writes the page from what a whole `make test` run recorded instead (EVIDENCE_FILE=FILE
set for it): the same tests' records, and any other test's of the same kinds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.ansible import BIN, ansible_env  # noqa: E402

TESTS = [
    "tests/integration/test_mlflow_k8s_inputs.py",
    "tests/integration/test_postgres_init.py::test_bad_input_fails_before_any_change",
    "tests/integration/test_minio_bucket.py::test_bad_input_fails_before_any_change",
    "tests/integration/test_store_faults.py",
    "tests/sandbox/test_nodes.py",  # drain and a lost node, test pods on a cluster of its own
    "tests/demo/test_ha.py",  # make demo's MLflow: rolling updates and a drain under a client
]
DOC = ROOT / "docs" / "reliability.md"


def cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def input_row(r: dict) -> str:
    given = cell(r["given"])
    return f"| {r['role']} | {cell(r['case'])} | `{given}` | {cell(r['refused_with'])} | {cell(r['proof'])} |"


STANDARD = {"kind", "what", "requests", "failed", "first_failure_s", "last_failure_s", "errors"}


def timings(r: dict) -> str:
    """A disruption's own measures (replaced after, declared lost after, failed after ..., in seconds where the
    name ends in _s), besides its failures."""
    own = {k: v for k, v in r.items() if k not in STANDARD}
    return ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v}" for k, v in own.items()) or "-"


def render(records: list[dict], commit: str, source: str = "") -> str:
    inputs = [r for r in records if r["kind"] == "input"]
    faults = [r for r in records if r["kind"] == "fault"]
    disruptions = [r for r in records if r["kind"] == "disruption"]
    roles = sorted({r["role"] for r in inputs})
    lines = [
        "# Reliability: what was tried, and what happened",
        "",
        f"Written by `{source or 'make evidence (bench/evidence.py)'}` on {time.strftime('%Y-%m-%d')} at {commit}:",
        (
            "records a whole `make test` run (EVIDENCE_FILE set) left, among them those of the tests"
            if source
            else "it runs the tests"
        )
        + " that try bad input and inject faults ("
        + ", ".join(f"`{t.split('::')[0]}`" for t in TESTS)
        + ")",
        "against the sandbox; each row below was recorded by a test after its assertions passed.",
        "",
        f"## Bad input: {len(inputs)} inputs tried, {len(inputs)} refused before any change",
        "",
        "Each is refused with a message naming the variable (the text below is what the test requires in it), and",
        "the proof that nothing changed is read from the service itself. "
        + ", ".join(f"{role}: {sum(r['role'] == role for r in inputs)}" for role in roles)
        + ". site.yml's own preflight (the sandbox-only settings outside the sandbox) is tested in",
        "tests/integration/test_site.py.",
        "",
        "| role | case | given | refused with | nothing changed: |",
        "|---|---|---|---|---|",
        *(input_row(r) for r in inputs),
        "",
        f"## Faults injected for real: {len(faults)}",
        "",
        "| fault | during | what happened | afterwards |",
        "|---|---|---|---|",
        *(f"| {cell(r['fault'])} | {cell(r['where'])} | {cell(r['outcome'])} | {cell(r['after'])} |" for r in faults),
        "",
        f"## Disruptions under a client's load: {len(disruptions)}",
        "",
        "A client polls through the Service from the host, a new connection per request and no retries (for MLflow:",
        "create a run, log a metric, read it back); failures are counted from the start of the disruption until it",
        "is over (first/last failure in seconds after its start). Nodes are the sandbox's workers (sandbox/README.md).",
        "",
        "| disruption | requests | failed | first / last failure (s) | errors | after (s) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {cell(r['what'])} | {r['requests']} | {r['failed']} | {r['first_failure_s']} / {r['last_failure_s']} "
            f"| {cell(', '.join(r['errors']) or '-')} | {cell(timings(r))} |"
            for r in disruptions
        ),
        "",
        "## Known limits",
        "",
        "- A node lost under make demo's MLflow: requests sent to the lost replica fail until Kubernetes declares",
        "  the node lost (node grace 50 s upstream) and takes the pod out of the Service's endpoints. Once,",
        "  requests still failed for up to 35 s after kube-proxy's rules no longer named the dead pod (not pinned",
        "  down; a stale TCP SYN_SENT conntrack entry is the likely cause, kubernetes/kubernetes#101607), so",
        "  tests/demo/test_ha.py bounds the failures at 120 s (nf_conntrack_tcp_timeout_syn_sent) + 30 s after that",
        "  and records how many came after.",
        "- A crash-looping pod is covered by tests/integration/test_mlflow_k8s.py (the rollout stops, the old",
        "  ReplicaSet keeps serving, the failure quotes the container's log).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="a passed `make test` run's EVIDENCE_FILE")
    source = parser.parse_args().source
    if source:
        records = [json.loads(line) for line in source.read_text().splitlines()]
        return write(records, f"bench/evidence.py --from {source.name}")
    with tempfile.TemporaryDirectory(prefix="evidence-") as tmp:
        evidence = Path(tmp) / "evidence.jsonl"
        env = ansible_env(EVIDENCE_FILE=str(evidence))
        proc = subprocess.run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                              env=env, check=False)  # fmt: skip
        if proc.returncode != 0:
            print("a test failed: docs/reliability.md left as it was", file=sys.stderr)
            return proc.returncode
        records = [json.loads(line) for line in evidence.read_text().splitlines()]
    return write(records)


def write(records: list[dict], source: str = "") -> int:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip() or "an unknown commit"  # fmt: skip
    DOC.write_text(render(records, commit, source))
    kinds = [r["kind"] for r in records]
    counts = ", ".join(f"{kinds.count(k)} {k}s" for k in ("input", "fault", "disruption"))
    print(f"{DOC}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
