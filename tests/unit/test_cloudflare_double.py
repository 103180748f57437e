"""The Cloudflare API double and the role's API client, without Ansible: shapes follow the official SDK models."""

from __future__ import annotations

import json

import pytest
from cloudflare.types.dns import record_create_params
from cloudflare.types.zero_trust.access import policy_create_params

from tests.cloudflare_double import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
    DEFAULT_TUNNEL_ID,
    DEFAULT_ZONE_ID,
    Fault,
    default_state,
)
from tests.cloudflare_double.schema import problems
from tests.cloudflare_double.server import Api

AUTH = {"authorization": f"Bearer {DEFAULT_TOKEN}"}
RECORDS = f"/client/v4/zones/{DEFAULT_ZONE_ID}/dns_records"
CONFIG = f"/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/cfd_tunnel/{DEFAULT_TUNNEL_ID}/configurations"


def call(api: Api, method: str, path: str, body: object = None, headers: dict | None = None):
    raw = json.dumps(body).encode() if body is not None else b""
    status, envelope, _ = api.handle(method, path, AUTH if headers is None else headers, raw)
    return status, envelope


def cname(**overrides: object) -> dict:
    return {"type": "CNAME", "name": "mlflow.254carbon.com", "content": "t.cfargotunnel.com", "ttl": 1,
            "proxied": True, "comment": "c", "tags": [], **overrides}  # fmt: skip


def test_schema_rejects_unknown_fields_wrong_types_and_missing_keys():
    ok = {**cname(), "zone_id": "z"}
    assert problems(record_create_params.CNAMERecord, ok) == []
    assert problems(record_create_params.CNAMERecord, {**ok, "proxy": True}) == [
        "$.proxy: unknown field of CNAMERecord"
    ]
    assert problems(record_create_params.CNAMERecord, {**ok, "ttl": "1"})
    missing = {k: v for k, v in ok.items() if k != "name"}
    assert problems(record_create_params.CNAMERecord, missing) == ["$.name: required by CNAMERecord but missing"]
    policy = {"account_id": "a", "decision": "allow", "name": "n", "include": [{"email": {"email": "a@b.c"}}]}
    assert problems(policy_create_params.PolicyCreateParams, policy) == []
    assert problems(policy_create_params.PolicyCreateParams, {**policy, "decision": "permit"})


def test_proxied_record_gets_automatic_ttl_and_duplicates_are_refused():
    api = Api(default_state())
    status, created = call(api, "POST", RECORDS, cname(ttl=300))
    assert status == 200 and created["result"]["ttl"] == 1  # the trap the role's preflight avoids
    status, duplicate = call(api, "POST", RECORDS, cname())
    assert status == 400 and duplicate["errors"][0]["code"] == 81053
    status, invalid = call(api, "POST", RECORDS, cname(proxy=True))
    assert status == 400 and "unknown field" in invalid["errors"][0]["message"]
    assert api.state.validation_errors  # recorded for the tests' final assertion


def test_list_paginates_and_filters():
    api = Api(default_state())
    for i in range(3):
        call(api, "POST", RECORDS, cname(name=f"h{i}.254carbon.com"))
    status, page = call(api, "GET", f"{RECORDS}?per_page=2&page=2")
    assert status == 200
    assert page["result_info"] == {"page": 2, "per_page": 2, "count": 2, "total_count": 4, "total_pages": 2}
    _, one = call(api, "GET", f"{RECORDS}?name=h1.254carbon.com&type=CNAME")
    assert [r["name"] for r in one["result"]] == ["h1.254carbon.com"]


def test_tunnel_configuration_needs_a_catch_all_last():
    api = Api(default_state())
    bad = {
        "config": {"ingress": [{"service": "http_status:404"}, {"hostname": "a.254carbon.com", "service": "http://x"}]}
    }
    status, body = call(api, "PUT", CONFIG, bad)
    assert status == 400 and "last ingress rule must match all URLs" in body["errors"][0]["message"]
    good = {
        "config": {"ingress": [{"hostname": "a.254carbon.com", "service": "http://x"}, {"service": "http_status:404"}]}
    }
    status, body = call(api, "PUT", CONFIG, good)
    assert status == 200 and body["result"]["version"] == 2
    assert api.state.validation_errors == []


@pytest.mark.parametrize(
    ("headers", "path", "status", "code"),
    [
        ({"authorization": "Bearer revoked"}, "/client/v4/user/tokens/verify", 401, 1000),
        ({"authorization": "Bearer revoked"}, RECORDS, 403, 9109),
        ({}, RECORDS, 400, 6003),
    ],
)
def test_authentication_errors(headers, path, status, code):
    got, body = call(Api(default_state()), "GET", path, headers=headers)
    assert (got, body["errors"][0]["code"], body["success"]) == (status, code, False)


def test_faults_are_injected_then_cleared():
    state = default_state()
    state.faults.append(Fault(status=429, path="/zones$", times=1, retry_after=2))
    api = Api(state)
    status, _, extra = api.handle("GET", "/client/v4/zones", AUTH, b"")
    assert (status, extra) == (429, {"Retry-After": "2"})
    assert call(api, "GET", "/client/v4/zones")[0] == 200
    assert [r["status"] for r in state.requests] == [429, 200]
