"""The way to the sandbox's PostgreSQL and S3 as their administrators (like kubernetes.core's setup_* targets,
one place): a connection, a client, and the removal of what a test made."""

from __future__ import annotations

from typing import Any

import boto3
import psycopg2
from botocore.config import Config


def admin_conn(facts: dict, dbname: str = "postgres", verify: bool = False) -> Any:
    """An autocommit connection as the sandbox's PostgreSQL superuser (TLS verified against its CA with `verify`)."""
    pg = facts["postgres"]
    tls = {"sslmode": "verify-full", "sslrootcert": pg["ca_file"]} if verify else {}
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"], password=pg["admin_password"],
                            dbname=dbname, connect_timeout=5, **tls)  # fmt: skip
    conn.autocommit = True
    return conn


def query(facts: dict, sql: str, params: tuple = (), dbname: str = "postgres") -> list[tuple]:
    """One statement as the superuser; its rows (none for a statement without a result)."""
    conn = admin_conn(facts, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def s3_client(facts: dict, attempts: int | None = None) -> Any:  # boto3 clients have no importable type
    """An S3 client with the sandbox's own keys, path-style (as MinIO is addressed); `attempts` caps botocore's
    retries (1: a failure shows at once)."""
    s3 = facts["s3"]
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": attempts} if attempts else None)
    return boto3.client("s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["access_key"],
                        aws_secret_access_key=s3["secret_key"], region_name=s3["region"], config=config)  # fmt: skip


def drop_bucket(client: Any, bucket: str) -> None:
    """Every object version of `bucket`, then the bucket; nothing when it is already gone."""
    try:
        versions = client.list_object_versions(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        return
    for item in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


def drop_stores(facts: dict, bucket: str, dbs: list[str], user: str) -> None:
    """Remove a test's bucket (every object in it first), its databases and its login, whatever is left of them."""
    drop_bucket(s3_client(facts), bucket)
    conn = admin_conn(facts)
    try:
        with conn.cursor() as cur:
            for db in dbs:
                cur.execute(f"drop database if exists {db} with (force)")
            cur.execute(f"drop role if exists {user}")
    finally:
        conn.close()
