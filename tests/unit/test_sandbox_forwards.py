"""The sandbox's Service forwards (sandbox/forward.py ServiceForwards): one process per Service port, none orphaned."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from sandbox import forward
from sandbox.procs import cmdline


@pytest.fixture
def forwards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """ServiceForwards whose new forward processes are sleeping Pythons that write their port file once running.

    The child writes it, as the real forward does: a port file written by the parent let `url` read the child's
    /proc/PID/cmdline in the instant after exec, before the kernel sets it (empty), and start a second one (CI, loaded).
    """
    marker = str(tmp_path / "state")
    started: list[subprocess.Popen] = []
    child = "import sys, time; open(sys.argv[1], 'w').write('41000\\n'); time.sleep(60)"

    def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", child, argv[argv.index("--port-file") + 1], marker])
        started.append(proc)
        return proc

    monkeypatch.setattr(forward, "spawn", spawn)
    made = forward.ServiceForwards(tmp_path, tmp_path / "forwards.log", tmp_path / "netns", marker, "127.0.0.1", [])
    yield types.SimpleNamespace(forwards=made, started=started, marker=marker)
    for proc in started:
        proc.kill()
        proc.wait()


def test_the_same_target_keeps_its_forward_and_a_new_cluster_ip_ends_the_old_one(forwards):
    first = forwards.forwards.url("mlflow/mlflow:5000", "10.96.0.5:5000")
    assert forwards.forwards.url("mlflow/mlflow:5000", "10.96.0.5:5000") == first
    assert len(forwards.started) == 1
    old = forwards.started[0]
    assert forwards.marker in cmdline(old.pid)

    # The Service was deleted and created again (teardown, then site.yml): another ClusterIP.
    forwards.forwards.url("mlflow/mlflow:5000", "10.96.0.9:5000")
    assert len(forwards.started) == 2
    assert old.wait(timeout=10) is not None  # ended, not left running where `down` cannot find it
    known = json.loads((forwards.forwards.base / "forwards.json").read_text())
    assert known["mlflow/mlflow:5000"] == {"pid": forwards.started[1].pid, "port": 41000, "target": "10.96.0.9:5000"}

    forwards.forwards.stop_all()
    assert forwards.started[1].wait(timeout=10) is not None
