"""minio_bucket against the sandbox's real SeaweedFS S3 (which, unlike moto, rejects wrong keys)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from harness import stores
from harness.ansible import run_role
from harness.evidence import record

pytestmark = pytest.mark.integration


def s3_client(facts: dict):
    return stores.s3_client(facts, attempts=1)


def bucket_exists(facts: dict, name: str) -> bool:
    return any(b["Name"] == name for b in s3_client(facts).list_buckets().get("Buckets", []))


def anonymous_get(facts: dict, bucket: str, key: str) -> int:
    try:
        with urllib.request.urlopen(f"{facts['s3']['endpoint_url']}/{bucket}/{key}", timeout=5) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def empty_and_delete(facts: dict, bucket: str) -> None:
    client = s3_client(facts)
    if not bucket_exists(facts, bucket):
        return
    versions = client.list_object_versions(Bucket=bucket)
    for entry in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        client.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def bucket(sandbox_facts: dict):
    name = f"mlflow-test-{uuid.uuid4().hex[:10]}"
    yield name
    empty_and_delete(sandbox_facts, name)


def role_vars(facts: dict, bucket: str, **overrides: object) -> dict:
    s3 = facts["s3"]
    return {
        "minio_bucket_name": bucket,
        "minio_bucket_endpoint_url": s3["endpoint_url"],
        "minio_bucket_access_key": s3["access_key"],
        "minio_bucket_secret_key": s3["secret_key"],
        "minio_bucket_region": s3["region"],
        **overrides,
    }


def lifecycle_rules(facts: dict, bucket: str) -> list[dict]:
    try:
        return s3_client(facts).get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
            return []
        raise


def test_check_mode_then_converge_versioning_lifecycle_policy_and_idempotence(sandbox_facts, bucket):
    variables = role_vars(sandbox_facts, bucket)

    check = run_role("minio_bucket", variables, check=True, diff=True)
    assert not check.failed, check.output
    assert check.changed == 1
    assert not bucket_exists(sandbox_facts, bucket)

    first = run_role("minio_bucket", variables)
    assert not first.failed, first.output
    assert first.changed == 2

    client = s3_client(sandbox_facts)
    assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    [rule] = lifecycle_rules(sandbox_facts, bucket)
    assert rule["ID"] == "mlflow-noncurrent-versions"
    assert rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7
    policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["DenyAnonymousAccess"]

    client.put_object(Bucket=bucket, Key="model/MLmodel", Body=b"v1")
    client.put_object(Bucket=bucket, Key="model/MLmodel", Body=b"v2")
    versions = client.list_object_versions(Bucket=bucket, Prefix="model/MLmodel")["Versions"]
    assert len(versions) == 2
    assert client.get_object(Bucket=bucket, Key="model/MLmodel")["Body"].read() == b"v2"
    assert anonymous_get(sandbox_facts, bucket, "model/MLmodel") == 403

    second = run_role("minio_bucket", variables)
    assert not second.failed, second.output
    assert second.changed == 0, second.changed_tasks()

    check_again = run_role("minio_bucket", variables, check=True)
    assert check_again.changed == 0, check_again.changed_tasks()


def test_public_bucket_is_locked_down(sandbox_facts, bucket):
    client = s3_client(sandbox_facts)
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="leak.txt", Body=b"secret model")
    public = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }  # fmt: skip
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public))
    assert anonymous_get(sandbox_facts, bucket, "leak.txt") == 200  # the store honours policies

    check = run_role("minio_bucket", role_vars(sandbox_facts, bucket), check=True)
    assert check.changed == 1
    assert anonymous_get(sandbox_facts, bucket, "leak.txt") == 200  # check mode changed nothing

    result = run_role("minio_bucket", role_vars(sandbox_facts, bucket))
    assert not result.failed, result.output
    assert anonymous_get(sandbox_facts, bucket, "leak.txt") == 403
    assert client.get_object(Bucket=bucket, Key="leak.txt")["Body"].read() == b"secret model"


def test_lifecycle_days_change_and_disable(sandbox_facts, bucket):
    assert not run_role("minio_bucket", role_vars(sandbox_facts, bucket)).failed

    changed = run_role(
        "minio_bucket", role_vars(sandbox_facts, bucket, minio_bucket_noncurrent_version_expiration_days=30)
    )
    assert changed.changed == 1, changed.changed_tasks()
    [rule] = lifecycle_rules(sandbox_facts, bucket)
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30

    disabled = run_role("minio_bucket", role_vars(sandbox_facts, bucket, minio_bucket_lifecycle_enabled=False))
    assert disabled.changed == 1, disabled.changed_tasks()
    assert lifecycle_rules(sandbox_facts, bucket) == []


def test_lifecycle_rule_with_an_extra_action_is_put_back(sandbox_facts, bucket):
    """A re-run skips s3_lifecycle when the bucket has exactly its rule; an action added to the rule is drift."""
    variables = role_vars(sandbox_facts, bucket)
    assert not run_role("minio_bucket", variables).failed
    [rule] = lifecycle_rules(sandbox_facts, bucket)
    s3_client(sandbox_facts).put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [{**rule, "Expiration": {"Days": 1}}]}
    )
    assert lifecycle_rules(sandbox_facts, bucket)[0]["Expiration"] == {"Days": 1}  # the store kept it

    fixed = run_role("minio_bucket", variables)
    assert not fixed.failed, fixed.output
    changed = [name.split(" : ")[-1] for name in fixed.changed_tasks()]
    assert changed == ["apply | Expire noncurrent versions and stale multipart uploads"]
    assert lifecycle_rules(sandbox_facts, bucket) == [rule]
    assert run_role("minio_bucket", variables).changed == 0


def test_absent_needs_force_delete(sandbox_facts, bucket):
    assert not run_role("minio_bucket", role_vars(sandbox_facts, bucket)).failed
    client = s3_client(sandbox_facts)
    client.put_object(Bucket=bucket, Key="a", Body=b"1")
    client.put_object(Bucket=bucket, Key="a", Body=b"2")

    refused = run_role("minio_bucket", role_vars(sandbox_facts, bucket, minio_bucket_state="absent"))
    assert refused.failed
    assert any("minio_bucket_force_delete" in msg for msg in refused.failure_messages()), refused.output
    assert client.get_object(Bucket=bucket, Key="a")["Body"].read() == b"2"

    forced = {"minio_bucket_state": "absent", "minio_bucket_force_delete": True}
    check = run_role("minio_bucket", role_vars(sandbox_facts, bucket, **forced), check=True)
    assert check.changed == 1 and bucket_exists(sandbox_facts, bucket)

    deleted = run_role("minio_bucket", role_vars(sandbox_facts, bucket, **forced))
    assert not deleted.failed, deleted.output
    assert not bucket_exists(sandbox_facts, bucket)


BAD_INPUTS = [
    pytest.param({"minio_bucket_name": "MLflow_Artifacts"}, "minio_bucket_name", id="invalid-bucket-name"),
    pytest.param({"minio_bucket_name": "ab"}, "minio_bucket_name", id="bucket-name-too-short"),
    pytest.param({"minio_bucket_secret_key": "wrong-secret"}, "SignatureDoesNotMatch", id="wrong-secret-key"),
    pytest.param({"minio_bucket_access_key": "NOSUCHKEY"}, "cannot list buckets at", id="unknown-access-key"),
    pytest.param({"minio_bucket_endpoint_url": "http://127.0.0.1:1"}, "cannot list buckets at http://127.0.0.1:1", id="unreachable"),
    pytest.param({"minio_bucket_endpoint_url": "minio:9000"}, "minio_bucket_endpoint_url", id="endpoint-not-a-url"),
    pytest.param({"minio_bucket_access_key": ""}, "minio_bucket_access_key is empty", id="empty-access-key"),
    pytest.param({"minio_bucket_noncurrent_version_expiration_days": "ninety"}, "minio_bucket_noncurrent_version_expiration_days", id="days-not-an-int"),
    pytest.param({"minio_bucket_noncurrent_version_expiration_days": 0}, "minio_bucket_noncurrent_version_expiration_days must be at least 1", id="days-zero"),
    pytest.param({"minio_bucket_validate_certs": "sometimes"}, "minio_bucket_validate_certs", id="bool-not-a-bool"),
    pytest.param({"minio_bucket_abort_incomplete_multipart_upload_days": 0}, "minio_bucket_abort_incomplete_multipart_upload_days must be at least 1", id="abort-days-zero"),
    pytest.param({"minio_bucket_lifecycle_rule_id": ""}, "minio_bucket_lifecycle_rule_id is empty", id="empty-rule-id"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS)
def test_bad_input_fails_before_any_change(sandbox_facts, bucket, overrides, message, request):
    result = run_role("minio_bucket", role_vars(sandbox_facts, bucket, **overrides))
    assert result.failed
    messages = result.failure_messages()
    assert any(message in msg for msg in messages), messages
    assert not bucket_exists(sandbox_facts, bucket)
    assert sandbox_facts["s3"]["secret_key"] not in result.output
    record("input", role="minio_bucket", case=request.node.callspec.id, given=overrides, refused_with=message,
           proof="no bucket in the store's listing")  # fmt: skip
