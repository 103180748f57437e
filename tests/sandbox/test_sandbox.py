"""The sandbox starts real services, proves they answer, and stops exactly what it started."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import psycopg2
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import Sandbox, SandboxConfig, SandboxError
from sandbox.procs import port_in_use

ROOT = Path(__file__).resolve().parents[2]
# Ports of their own, so these tests never touch the shared sandbox that other stages use.
# Below Linux's ephemeral port range (32768-60999): make test runs these tests while another sandbox's
# port-forward listeners and outgoing connections take ports from that range.
PORTS = {"pg_port": 26432, "s3_port": 26333, "k8s_port": 26443, "weed_port_base": 26340}
# The node imports only the pause image: these tests run no pod (tests/sandbox/test_cluster.py does).
IMAGES = ["localhost/carbon254/pause:1"]


# A CA bundle without the sandbox's CA: the system's public CAs.
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


@pytest.fixture
def config(tmp_path: Path) -> SandboxConfig:
    return SandboxConfig(state_dir=tmp_path / "state", k8s_images=IMAGES, **PORTS)


@pytest.fixture
def box(config: SandboxConfig):
    sandbox = Sandbox(config)
    yield sandbox
    sandbox.down(purge=True)
    assert processes_mentioning(str(config.state_dir)) == []


def s3(facts: dict, secret: str | None = None):
    return boto3.client(
        "s3", endpoint_url=facts["s3"]["endpoint_url"], aws_access_key_id=facts["s3"]["access_key"],
        aws_secret_access_key=secret or facts["s3"]["secret_key"], region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )  # fmt: skip


def test_up_answers_writes_facts_and_down_leaves_nothing(box: Sandbox, config: SandboxConfig):
    result = box.up()
    assert result.started == ["postgres", "s3", "kubernetes"]

    facts = json.loads(config.facts_file.read_text())
    assert stat.S_IMODE(config.facts_file.stat().st_mode) == 0o600  # it holds passwords
    assert facts["postgres"]["port"] == PORTS["pg_port"] and facts["postgres"]["version"] == "15"
    assert facts["s3"]["endpoint_url"] == f"http://127.0.0.1:{PORTS['s3_port']}"

    pg = facts["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"], password=pg["admin_password"],
                            dbname="postgres", connect_timeout=5)  # fmt: skip
    with conn.cursor() as cur:
        cur.execute("show password_encryption")
        assert cur.fetchone() == ("scram-sha-256",)
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host=pg["host"], port=pg["port"], user="postgres", password="wrong", dbname="postgres")

    # TLS that verify-full accepts with the sandbox's CA (for 127.0.0.1 and the pods' gateway), and only with it.
    login = {"port": pg["port"], "user": pg["admin_user"], "password": pg["admin_password"], "dbname": "postgres"}
    assert pg["tls_names"][:2] == ["127.0.0.1", "localhost"]
    if "node" in facts["kubernetes"]:
        assert facts["kubernetes"]["node"]["postgres_host"] in pg["tls_names"]
    conn = psycopg2.connect(host="127.0.0.1", sslmode="verify-full", sslrootcert=pg["ca_file"], **login)
    with conn.cursor() as cur:
        cur.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        psycopg2.connect(host="127.0.0.1", sslmode="verify-full", sslrootcert=SYSTEM_CAS, **login)

    assert s3(facts).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        s3(facts, secret="not-the-secret").list_buckets()

    # Everything listens on loopback only.
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    for port in (PORTS["pg_port"], PORTS["s3_port"], PORTS["k8s_port"]):
        lines = [line for line in listening.splitlines() if f":{port} " in line]
        assert lines and all("127.0.0.1:" in line for line in lines), lines

    kube = facts["kubernetes"]
    assert kube["url"] == f"https://127.0.0.1:{PORTS['k8s_port']}"
    assert stat.S_IMODE(Path(kube["kubeconfig"]).stat().st_mode) == 0o600
    config_doc = yaml.safe_load(Path(kube["kubeconfig"]).read_text())
    assert config_doc["clusters"][0]["cluster"]["server"] == kube["url"]

    again = box.up()
    assert again.started == [] and again.already_running == ["postgres", "s3", "kubernetes"]
    assert box.status() == {
        name: {"running": True, "pid": box.service(name).pid(), "answering": True}
        for name in ("postgres", "s3", "kubernetes")
    }

    node = box.service("kubernetes").nodes.netns
    assert node in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert sorted(box.down()) == ["kubernetes", "postgres", "s3"]
    assert processes_mentioning(str(config.state_dir)) == []
    assert node not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for port in (PORTS["pg_port"], PORTS["s3_port"], PORTS["k8s_port"], *config.weed_ports().values()):
        assert not port or not port_in_use("127.0.0.1", port), port
    assert not config.facts_file.exists()
    assert box.down() == []  # nothing left to stop


def test_data_and_credentials_survive_down_up(box: Sandbox, config: SandboxConfig):
    box.up()
    facts = box.facts()
    s3(facts).create_bucket(Bucket="survivor")
    box.down()
    assert Sandbox(config).up().started == ["postgres", "s3", "kubernetes"]
    assert Sandbox(config).facts()["s3"]["secret_key"] == facts["s3"]["secret_key"]
    assert [b["Name"] for b in s3(facts).list_buckets()["Buckets"]] == ["survivor"]


def test_a_fresh_checkout_at_the_same_place_starts_over(tmp_path: Path):
    """CI clones to the same path again: data made with the old credentials must not lock the new run out,
    also when PostgreSQL's data lives outside the checkout (a 0700 parent the postgres user cannot enter)."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    config = SandboxConfig(state_dir=private / "checkout" / ".sandbox", k8s_images=IMAGES, **PORTS)
    first = Sandbox(config)
    try:
        first.up()
        if os.geteuid() == 0:
            assert (config.state_dir / "postgres").is_symlink()  # the /var/tmp fallback is in use
        first.down()
        shutil.rmtree(config.state_dir)  # the next clone has no state directory at all
        second = Sandbox(config)
        assert second.credentials != first.credentials
        assert second.up().started == ["postgres", "s3", "kubernetes"]
        assert second.status()["postgres"]["answering"]
    finally:
        Sandbox(config).down(purge=True)
    assert processes_mentioning(str(config.state_dir)) == []


def test_down_never_stops_a_stranger(box: Sandbox, config: SandboxConfig):
    box.up()
    box.down()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # A stale PID file now names a process that is not ours.
        (config.state_dir / "s3" / "weed.pid").write_text(f"{stranger.pid}\n")
        assert box.down() == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_port_in_use_fails_clearly_and_starts_nothing(box: Sandbox, config: SandboxConfig):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", PORTS["s3_port"]))
    blocker.listen()
    try:
        with pytest.raises(SandboxError, match=rf"cannot start s3: port\(s\) \[{PORTS['s3_port']}\]"):
            box.up()
        # PostgreSQL, started before the conflict was found, was stopped again; the API server never started.
        assert processes_mentioning(str(config.state_dir)) == []
    finally:
        blocker.close()


def test_invalid_port_setting_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SANDBOX_PG_PORT", "fifty")
    with pytest.raises(ValueError, match="SANDBOX_PG_PORT='fifty'"):
        SandboxConfig(state_dir=tmp_path)
    monkeypatch.setenv("SANDBOX_PG_PORT", "80")
    with pytest.raises(ValueError, match="pg_port=80"):
        SandboxConfig(state_dir=tmp_path)


def test_cli_status_exit_codes(tmp_path: Path):
    state = tmp_path / "cli"
    argv = [sys.executable, "-m", "sandbox", "--state-dir", str(state), "--pg-port", str(PORTS["pg_port"]),
            "--s3-port", str(PORTS["s3_port"]), "--k8s-port", str(PORTS["k8s_port"]),
            "--weed-port-base", str(PORTS["weed_port_base"])]  # fmt: skip
    env = {**os.environ, "SANDBOX_K8S_IMAGES": ",".join(IMAGES)}
    try:
        assert subprocess.run([*argv, "status"], cwd=ROOT, capture_output=True, check=False).returncode == 1
        up = subprocess.run([*argv, "up"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        assert up.returncode == 0, up.stderr
        assert "started postgres" in up.stdout and "started s3" in up.stdout
        status = subprocess.run([*argv, "status"], cwd=ROOT, capture_output=True, text=True, check=False)
        assert status.returncode == 0 and status.stdout.count("answering") == 3
        facts = subprocess.run([*argv, "facts"], cwd=ROOT, capture_output=True, text=True, check=True)
        assert facts.stdout.strip() == str(state / "facts.json")
        kubeconfig = subprocess.run([*argv, "kubeconfig"], cwd=ROOT, capture_output=True, text=True, check=True)
        assert kubeconfig.stdout.strip() == str(state / "kubeconfig")
    finally:
        subprocess.run([*argv, "down", "--purge"], cwd=ROOT, capture_output=True, check=False)
    assert processes_mentioning(str(state)) == []
    assert not state.exists()


def test_a_failing_test_leaves_no_process(tmp_path: Path):
    """A test that fails while the sandbox runs: its fixture still stops every service."""
    state = tmp_path / "failing"
    test_file = tmp_path / "test_fails.py"
    test_file.write_text(
        textwrap.dedent(f"""
        import pytest
        from sandbox import Sandbox, SandboxConfig

        @pytest.fixture
        def box():
            sandbox = Sandbox(SandboxConfig(state_dir={str(state)!r}, pg_port={PORTS["pg_port"]},
                                            s3_port={PORTS["s3_port"]}, k8s_port={PORTS["k8s_port"]},
                                            weed_port_base={PORTS["weed_port_base"]}, k8s_images={IMAGES!r}))
            sandbox.up()
            yield sandbox
            sandbox.down()

        def test_boom(box):
            assert box.status()["postgres"]["answering"]
            raise AssertionError("deliberate failure")
        """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 1 and "deliberate failure" in proc.stdout, proc.stdout + proc.stderr
    assert processes_mentioning(str(state)) == []
    Sandbox(SandboxConfig(state_dir=state, **PORTS)).down(purge=True)
