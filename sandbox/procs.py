"""Process helpers: start detached, recognise our own processes by PID + command line, stop them for good."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class SandboxError(RuntimeError):
    """A sandbox service could not be started, reached or stopped; the message says which and why."""


def cmdline(pid: int) -> str:
    """The command line of a live process, or "" when there is none (gone, zombie or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def is_ours(pid: int | None, marker: str) -> bool:
    """True when `pid` is alive and its command line contains `marker` (our state directory).

    The PID alone is not enough: after a reboot or a long pause the number may belong to a stranger.
    """
    return bool(pid) and marker in cmdline(int(pid))


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def spawn(argv: Sequence[str], log_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a long-running server in its own session (so a test's Ctrl-C does not reach it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.25) -> object:
    """Poll `check` until it returns a truthy value; raise SandboxError naming `what` with the last error."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    detail = f": {last_error}" if last_error else ""
    raise SandboxError(f"{what} did not become ready within {timeout:.0f}s{detail}")


def terminate(pid: int, marker: str, timeout: float = 15.0) -> bool:
    """Stop our process `pid` and its process group: SIGTERM, then SIGKILL. Returns True if one was stopped."""
    if not is_ours(pid, marker):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            pgid = os.getpgid(pid)
            # Only signal the whole group when the process leads it (we started it with a new session).
            if pgid == pid:
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not is_ours(pid, marker):
                return True
            time.sleep(0.1)
    raise SandboxError(f"process {pid} ({cmdline(pid)[:80]}) survived SIGKILL")


def _reap(pid: int) -> None:
    """Collect an exited child so it does not linger as a zombie when we started it in this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class PidFileService:
    """A server the sandbox starts itself (spawn) and recognises by the PID in `pid_file` plus `marker`."""

    pid_file: Path
    marker: str

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        return is_ours(self.pid(), self.marker)

    def launch(self, argv: Sequence[str], log_file: Path, env: dict[str, str] | None = None) -> None:
        proc = spawn(argv, log_file, env=env)
        self.pid_file.write_text(f"{proc.pid}\n")

    def stop_process(self, timeout: float = 15.0) -> bool:
        pid = self.pid()
        stopped = terminate(pid, self.marker, timeout=timeout) if pid else False
        self.pid_file.unlink(missing_ok=True)
        return stopped
