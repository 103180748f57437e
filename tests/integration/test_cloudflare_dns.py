"""cloudflare_dns against the local Cloudflare API double (tests/cloudflare_double).

The unmodified community.general.cloudflare_dns module reaches the double through its hard-coded
https://api.cloudflare.com base URL: https_proxy points at the double's CONNECT proxy and SSL_CERT_FILE at its
test CA (both honoured by ansible.module_utils.urls). Every body the double saw or sent is checked against the
official cloudflare SDK's models; each test ends by asserting there was no mismatch.
"""

from __future__ import annotations

import pytest
import yaml

from harness.ansible import run_role
from tests.cloudflare_double import (
    DEFAULT_TOKEN,
    DEFAULT_TUNNEL_ID,
    DEFAULT_ZONE_ID,
    CloudflareDouble,
    Fault,
)

HOST = "mlflow.254carbon.com"
OTHER_TUNNEL = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
COMMENT = "managed by carbon254.mlflow.cloudflare_dns"


@pytest.fixture
def double(monkeypatch):
    with CloudflareDouble() as server:
        for key, value in server.client_env().items():
            monkeypatch.setenv(key, value)
        yield server
        assert server.state.validation_errors == []


def role_vars(**overrides: object) -> dict:
    return {
        "cloudflare_dns_api_token": DEFAULT_TOKEN,
        "cloudflare_dns_tunnel_id": DEFAULT_TUNNEL_ID,
        "cloudflare_dns_access_allowed_emails": ["alice@254carbon.com"],
        "cloudflare_dns_access_allowed_email_domains": ["254carbon.com"],
        "cloudflare_dns_api_retry_delay": 0.05,
        **overrides,
    }


def records(double: CloudflareDouble, name: str = HOST) -> list[dict]:
    return [r for r in double.state.dns_records[DEFAULT_ZONE_ID] if r["name"] == name]


def ingress(double: CloudflareDouble, tunnel: str = DEFAULT_TUNNEL_ID) -> list[dict]:
    return double.state.tunnels[tunnel]["config"]["ingress"]


def test_check_converge_idempotence_retarget_and_absent(double):
    before = double.state.snapshot()

    check = run_role("cloudflare_dns", role_vars(), check=True, diff=True)
    assert not check.failed, check.output
    assert check.changed == 3, check.changed_tasks()
    assert double.state.writes() == []
    assert double.state.snapshot() == before

    double.state.requests.clear()
    first = run_role("cloudflare_dns", role_vars())
    assert not first.failed, first.output
    assert first.changed == 3, first.changed_tasks()
    writes = [(w["method"], w["path"].split("/")[-1]) for w in double.state.writes()]
    assert writes == [("POST", "dns_records"), ("PUT", "configurations"), ("POST", "policies"), ("POST", "apps")]

    [record] = records(double)
    assert record["type"] == "CNAME"
    assert record["content"] == f"{DEFAULT_TUNNEL_ID}.cfargotunnel.com"
    assert record["proxied"] is True and record["ttl"] == 1
    assert record["comment"] == COMMENT
    assert records(double, "grafana.254carbon.com")[0]["comment"] == "not ours"  # untouched
    rules = ingress(double)
    assert rules[0] == before["tunnels"][DEFAULT_TUNNEL_ID]["config"]["ingress"][0]  # grafana's rule kept as it was
    assert rules[1] == {"hostname": HOST, "service": "http://mlflow.mlflow.svc.cluster.local:5000"}
    assert rules[2] == {"service": "http_status:404"}
    [app] = double.state.access_apps.values()
    [policy] = double.state.access_policies.values()
    assert app["domain"] == HOST and app["type"] == "self_hosted"
    assert [p["id"] for p in app["policies"]] == [policy["id"]]
    assert policy["decision"] == "allow"
    assert policy["include"] == [
        {"email": {"email": "alice@254carbon.com"}},
        {"email_domain": {"domain": "254carbon.com"}},
    ]

    double.state.requests.clear()
    second = run_role("cloudflare_dns", role_vars())
    assert not second.failed, second.output
    assert second.changed == 0, second.changed_tasks()
    assert double.state.writes() == []
    reads = len(double.state.requests)
    assert reads > 0

    check_again = run_role("cloudflare_dns", role_vars(), check=True)
    assert check_again.changed == 0, check_again.changed_tasks()

    # A new tunnel: the CNAME is updated in place, never duplicated.
    double.state.tunnels[OTHER_TUNNEL] = {**double.state.tunnels[DEFAULT_TUNNEL_ID], "config": None, "version": 0}
    record_id = record["id"]
    moved = run_role("cloudflare_dns", role_vars(cloudflare_dns_tunnel_id=OTHER_TUNNEL))
    assert not moved.failed, moved.output
    [record] = records(double)
    assert record["id"] == record_id
    assert record["content"] == f"{OTHER_TUNNEL}.cfargotunnel.com"
    assert ingress(double, OTHER_TUNNEL) == [
        {"hostname": HOST, "service": "http://mlflow.mlflow.svc.cluster.local:5000"}, {"service": "http_status:404"},
    ]  # fmt: skip

    # absent removes only what the role owns.
    double.state.requests.clear()
    gone = run_role("cloudflare_dns", role_vars(cloudflare_dns_tunnel_id=OTHER_TUNNEL, cloudflare_dns_state="absent"))
    assert not gone.failed, gone.output
    assert records(double) == []
    assert len(records(double, "grafana.254carbon.com")) == 1
    assert ingress(double, OTHER_TUNNEL) == [{"service": "http_status:404"}]
    assert len(ingress(double)) == 3  # the old tunnel is not the role's business any more
    assert double.state.access_apps == {} and double.state.access_policies == {}
    deletes = sorted(w["path"].split("/")[-2] for w in double.state.writes() if w["method"] == "DELETE")
    assert deletes == ["apps", "dns_records", "policies"]


def test_publishing_without_authentication_is_refused(double):
    result = run_role("cloudflare_dns", role_vars(cloudflare_dns_access_enabled=False))
    assert result.failed
    messages = result.failure_messages()
    assert any("without authentication" in m and "cloudflare_dns_allow_unauthenticated" in m for m in messages), (
        messages
    )
    assert double.state.requests == []  # refused before talking to Cloudflare


def test_basic_auth_or_explicit_opt_in_allows_publishing_without_access(double):
    plain = role_vars(cloudflare_dns_access_enabled=False, cloudflare_dns_tunnel_mode="none")
    with_auth = run_role("cloudflare_dns", {**plain, "mlflow_auth_enabled": True})
    assert not with_auth.failed, with_auth.output
    assert len(records(double)) == 1
    assert double.state.access_apps == {}
    opted_in = run_role("cloudflare_dns", {**plain, "cloudflare_dns_allow_unauthenticated": True})
    assert not opted_in.failed, opted_in.output
    assert opted_in.changed == 0


def test_transient_errors_are_retried_and_no_token_is_logged(double):
    state = double.state
    state.faults += [
        Fault(status=429, path="/user/tokens/verify", times=2),
        Fault(status=503, path="/dns_records$", method="POST", times=1),
        Fault(status=429, path="/dns_records$", method="GET", times=1),
        Fault(status=502, path="/configurations$", method="PUT", times=2),
        Fault(status=500, path="/access/apps$", method="POST", times=1, retry_after=0),
    ]
    result = run_role("cloudflare_dns", role_vars(), verbosity=3)
    assert not result.failed, result.output[-4000:]
    assert "changed=3" in result.stdout
    assert all(f.times == 0 for f in state.faults)
    assert len(records(double)) == 1
    assert len(ingress(double)) == 3
    assert len(state.access_apps) == 1
    failed = [r for r in state.requests if r["status"] >= 429]
    assert len(failed) == 7
    assert '"module_args"' in result.output  # -vvv printed every invocation, where a token would show
    assert DEFAULT_TOKEN not in result.output


def test_revoked_token_fails_in_preflight(double):
    del double.state.tokens[DEFAULT_TOKEN]
    result = run_role("cloudflare_dns", role_vars())
    assert result.failed
    messages = result.failure_messages()
    assert any("Invalid API Token" in m and "cloudflare_dns_api_token" in m for m in messages), messages
    assert double.state.writes() == []
    assert DEFAULT_TOKEN not in result.output


def test_disabled_token_and_missing_zone_fail_in_preflight(double):
    double.state.tokens[DEFAULT_TOKEN]["status"] = "disabled"
    disabled = run_role("cloudflare_dns", role_vars())
    assert any("token is disabled" in m for m in disabled.failure_messages()), disabled.output
    double.state.tokens[DEFAULT_TOKEN]["status"] = "active"
    missing = run_role(
        "cloudflare_dns", role_vars(cloudflare_dns_zone="example.org", cloudflare_dns_hostname="mlflow.example.org")
    )
    assert any("zone example.org not found" in m and "cloudflare_dns_zone" in m for m in missing.failure_messages()), (
        missing.output
    )
    assert double.state.writes() == []


def test_global_api_key_and_local_tunnel_config(double, tmp_path):
    double.state.global_keys["ops@254carbon.com"] = "global-key-0123"
    dest = tmp_path / "cloudflared.yml"
    variables = role_vars(
        cloudflare_dns_api_token="", cloudflare_dns_account_email="ops@254carbon.com",
        cloudflare_dns_account_api_key="global-key-0123", cloudflare_dns_tunnel_mode="local",
        cloudflare_dns_local_config_dest=str(dest), cloudflare_dns_namespace="ml",
    )  # fmt: skip
    result = run_role("cloudflare_dns", variables)
    assert not result.failed, result.output
    assert result.changed == 3, result.changed_tasks()
    configmap = yaml.safe_load(dest.read_text())
    assert configmap["kind"] == "ConfigMap" and configmap["metadata"]["namespace"] == "ml"
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert config["tunnel"] == DEFAULT_TUNNEL_ID
    assert config["ingress"] == [
        {"hostname": HOST, "service": "http://mlflow.ml.svc.cluster.local:5000"}, {"service": "http_status:404"},
    ]  # fmt: skip
    assert ingress(double) == double.state.tunnels[DEFAULT_TUNNEL_ID]["config"]["ingress"]
    assert not any("cfd_tunnel" in r["path"] for r in double.state.requests)  # local mode leaves the API alone
    assert run_role("cloudflare_dns", variables).changed == 0
    assert "global-key-0123" not in result.output


def test_bad_inputs_fail_before_any_request_naming_each_variable(double):
    # preflight collects every input error into one message, so one run proves them all.
    bad = role_vars(
        cloudflare_dns_tunnel_id="not-a-uuid", cloudflare_dns_ttl=300, cloudflare_dns_hostname="mlflow.example.org",
        cloudflare_dns_access_allowed_emails=[], cloudflare_dns_access_allowed_email_domains=[],
        cloudflare_dns_api_token="", cloudflare_dns_access_session_duration="a day",
    )  # fmt: skip
    result = run_role("cloudflare_dns", bad)
    assert result.failed
    [message] = [m for m in result.failure_messages() if "invalid input" in m]
    for expected in (
        'cloudflare_dns_tunnel_id "not-a-uuid" must be the tunnel UUID',
        "cloudflare_dns_ttl must be 1 (automatic) for a proxied record",
        'cloudflare_dns_hostname "mlflow.example.org" must be a host name inside cloudflare_dns_zone',
        "no one is allowed",
        "no credentials: set cloudflare_dns_api_token",
        "cloudflare_dns_access_session_duration",
    ):
        assert expected in message, message
    wrong_type = run_role("cloudflare_dns", role_vars(cloudflare_dns_tunnel_mode="sideways"))
    assert any("cloudflare_dns_tunnel_mode" in m for m in wrong_type.failure_messages()), wrong_type.output
    assert double.state.requests == []
