"""python -m tests.cloudflare_double {serve,start,stop} --workdir DIR [--token TOKEN]

serve: run in the foreground until SIGTERM/SIGINT. start: run `serve` detached and return once it listens.
stop: end the process `start` left (its pid is in DIR/pid). Both write DIR/env.json (the client environment:
https_proxy, SSL_CERT_FILE, ...) and DIR/info.json (control URL, direct API URL, the token and the seeded IDs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .server import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
    DEFAULT_TUNNEL_ID,
    DEFAULT_ZONE_ID,
    CloudflareDouble,
    default_state,
)


def serve(workdir: Path, token: str) -> int:
    double = CloudflareDouble(default_state(token), workdir=workdir).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    info = {
        "control_url": double.control_url, "api_url": double.api_url, "proxy_url": double.proxy_url,
        "ca_file": str(double.ca_file), "token": token, "account_id": DEFAULT_ACCOUNT_ID,
        "zone_id": DEFAULT_ZONE_ID, "tunnel_id": DEFAULT_TUNNEL_ID, "pid": os.getpid(),
    }  # fmt: skip
    (workdir / "env.json").write_text(json.dumps(double.client_env()))
    (workdir / "info.json").write_text(json.dumps(info))
    (workdir / "pid").write_text(str(os.getpid()))
    stop.wait()
    double.stop()
    for name in ("pid", "env.json", "info.json"):
        (workdir / name).unlink(missing_ok=True)
    return 0


def start(workdir: Path, token: str) -> int:
    for name in ("pid", "env.json", "info.json"):
        (workdir / name).unlink(missing_ok=True)
    log = (workdir / "double.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cloudflare_double", "serve", "--workdir", str(workdir), "--token", token],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (workdir / "info.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"the Cloudflare double did not start; see {workdir / 'double.log'}", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print((workdir / "info.json").read_text())
    return 0


def stop(workdir: Path) -> int:
    pid_file = workdir / "pid"
    if not pid_file.exists():
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return 0
    deadline = time.monotonic() + 10
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cloudflare_double", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "start", "stop"])
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--token", default=os.environ.get("CLOUDFLARE_DOUBLE_TOKEN", DEFAULT_TOKEN))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.command == "serve":
        return serve(args.workdir, args.token)
    if args.command == "start":
        return start(args.workdir, args.token)
    return stop(args.workdir)


if __name__ == "__main__":
    sys.exit(main())
