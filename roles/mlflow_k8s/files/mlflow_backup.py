# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""MLflow's databases to S3 and back.

`backup` (the default): `pg_dump --format=custom` of the tracking database (and the basic-auth one when
MLFLOW_AUTH_DATABASE_URI is set), streamed into the artifact store under BACKUP_PREFIX/<UTC time>/, then a
manifest.json that marks the backup complete (with the row counts of the very snapshot pg_dump read); then only
the newest BACKUP_KEEP complete backups are kept.

`schema`: compares each database's alembic revision with the heads of the MLflow in this image, writing nothing:
which migrations would run, whether the image knows the database's revision at all (it does not when the database
is newer), and the explicit NO_PERMISSIONS denies that MLflow 3.13's auth migration (e5f6a7b8c9d0) does not carry
over. Role mlflow_k8s runs it before an upgrade, with the new image, to choose a rolling or a stop-the-world one.

`check NAME` (or `latest`): finds that backup and checks the target databases, writing nothing.
`restore NAME` (or `latest`): each database of that backup, streamed from S3 into `pg_restore --single-transaction`
(all or nothing per database). A database that holds tables is refused unless BACKUP_FORCE=true, which replaces
what is there (--clean). Every database is checked before any is restored; afterwards the row counts are compared
with the manifest's.

Runs in the MLflow server image (role mlflow_k8s's backup CronJob and playbooks/backup.yml), with the server's
ConfigMap and Secret as environment: the store URIs, MLFLOW_S3_ENDPOINT_URL, AWS_* credentials. Needs pg_dump
(postgresql-client) and boto3, both in carbon254's image. Prints one JSON line with what it did.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from typing import Any

import boto3
import psycopg2
import psycopg2.extensions
from botocore.config import Config

SCHEMES = ("postgresql+psycopg2://", "postgresql://", "postgres://")


def libpq(uri: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password (which goes to PGPASSWORD instead of the command line)."""
    scheme = next((s for s in SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        raise SystemExit(f"mlflow-backup: only PostgreSQL stores can be backed up, not {uri.split(':', 1)[0]}")
    parts = urllib.parse.urlsplit("postgresql://" + uri[len(scheme) :])
    env = {"PGPASSWORD": urllib.parse.unquote(parts.password)} if parts.password else {}
    user = urllib.parse.quote(urllib.parse.unquote(parts.username or ""), safe="")
    host = parts.hostname or ""
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(("postgresql", netloc, parts.path, parts.query, "")), env


def facts(uri: str, env: dict[str, str]) -> dict[str, object]:
    """The schema revision and the size of what is backed up, to check a restore against."""
    with psycopg2.connect(uri, password=env.get("PGPASSWORD")) as conn, conn.cursor() as cur:
        return counted(cur)


def counted(cur: Any) -> dict[str, object]:
    """facts() in the cursor's transaction (a backup's: the snapshot pg_dump reads)."""
    # The tracking schema's revision; the auth database's table is alembic_version_auth from MLflow 3.6 on.
    revision = []
    for table in ("alembic_version", "alembic_version_auth"):
        cur.execute("select to_regclass(%s)", (table,))
        if cur.fetchone()[0]:
            cur.execute(f"select version_num from {table}")  # noqa: S608 - a name from the list above
            revision += [row[0] for row in cur.fetchall()]
    counts = {}
    for table in ("experiments", "runs", "metrics", "registered_models", "model_versions", "users"):
        cur.execute("select to_regclass(%s)", (table,))
        if cur.fetchone()[0]:
            cur.execute(f"select count(*) from {table}")  # noqa: S608 - a name from the list above
            counts[table] = cur.fetchone()[0]
    return {"alembic_revision": revision, "counts": counts}


class Hashing:
    """pg_dump's stdout as a file object for boto3, counting and hashing what passes."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.size, self.sha256 = stream, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.size += len(data)
        self.sha256.update(data)
        return data


def dump(s3: Any, bucket: str, key: str, uri: str, env: dict[str, str]) -> dict[str, object]:
    """pg_dump into S3, with the row counts of the very snapshot it dumps.

    The server keeps writing while the CronJob runs, so counts read in a transaction of their own would not match
    the dump (a restore then fails its check: seen as metrics 699 restored against 698 counted). This transaction
    exports its snapshot, counts in it, and stays open while `pg_dump --snapshot` reads the same one
    (https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-SNAPSHOT-SYNCHRONIZATION).
    """
    conn = psycopg2.connect(uri, password=env.get("PGPASSWORD"))
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            cur.execute("select pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
            entry = counted(cur)
        proc = subprocess.Popen(
            ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
             f"--dbname={uri}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env},
        )  # fmt: skip
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
        reader.start()
        body = Hashing(proc.stdout)
        s3.upload_fileobj(body, bucket, key)
        code = proc.wait()
        reader.join()
    finally:
        conn.close()
    if code != 0:
        s3.delete_object(Bucket=bucket, Key=key)
        message = b"".join(errors).decode(errors="replace").strip()
        raise SystemExit(f"mlflow-backup: pg_dump failed ({code}): {message[-800:]}")
    return {**entry, "key": key, "bytes": body.size, "sha256": body.sha256.hexdigest()}


def prune(s3: Any, bucket: str, prefix: str, keep: int, current: str) -> list[str]:
    """Delete complete backups beyond the newest `keep`, and incomplete ones (a failed run's) older than `current`."""
    stamps: dict[str, set[str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            stamp, _slash, name = item["Key"][len(prefix) + 1 :].partition("/")
            stamps.setdefault(stamp, set()).add(name)
    complete = sorted((s for s, names in stamps.items() if "manifest.json" in names), reverse=True)
    doomed = complete[keep:] + [s for s, names in stamps.items() if "manifest.json" not in names and s < current]
    for stamp in doomed:
        keys = [{"Key": f"{prefix}/{stamp}/{name}"} for name in sorted(stamps[stamp])]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    return sorted(doomed)


STORES = {"tracking": "MLFLOW_BACKEND_STORE_URI", "auth": "MLFLOW_AUTH_DATABASE_URI"}


def tables(uri: str, env: dict[str, str]) -> int:
    with psycopg2.connect(uri, password=env.get("PGPASSWORD")) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from pg_tables where schemaname = current_schema()")
        return cur.fetchone()[0]


def restore_one(s3: Any, bucket: str, uri: str, env: dict[str, str], entry: dict, *, force: bool) -> dict[str, object]:
    """One database from its dump, in one transaction; its row counts checked against the manifest's."""
    argv = ["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", f"--dbname={uri}"]
    proc = subprocess.Popen(argv + (["--clean", "--if-exists"] if force else []), stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **env})  # fmt: skip
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    reader.start()
    body, digest = s3.get_object(Bucket=bucket, Key=entry["key"])["Body"], hashlib.sha256()
    try:
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
            proc.stdin.write(chunk)
    except BrokenPipeError:
        pass  # pg_restore stopped: its exit code and message say why
    proc.stdin.close()
    code = proc.wait()
    reader.join()
    if code != 0:
        message = b"".join(errors).decode(errors="replace").strip()
        raise SystemExit(f"mlflow-backup: pg_restore failed ({code}); that database is as it was: {message[-800:]}")
    if digest.hexdigest() != entry["sha256"]:
        raise SystemExit(f"mlflow-backup: {entry['key']} does not match its manifest's sha256")
    now = facts(uri, env)
    if now["counts"] != entry["counts"]:
        raise SystemExit(f"mlflow-backup: restored with {now['counts']}, the backup had {entry['counts']}")
    return now


def restore(s3: Any, bucket: str, prefix: str, name: str, *, force: bool, check: bool) -> dict[str, object]:
    """With `check`, only find the backup and check the target databases (nothing is written)."""
    if name == "latest":
        found = sorted(
            item["Key"].split("/")[-2]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            for item in page.get("Contents", []) if item["Key"].endswith("/manifest.json")
        )  # fmt: skip
        if not found:
            raise SystemExit(f"mlflow-backup: no complete backup under s3://{bucket}/{prefix}/")
        name = found[-1]
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}/manifest.json")["Body"].read())
    except s3.exceptions.NoSuchKey:
        raise SystemExit(f"mlflow-backup: no complete backup {name} under s3://{bucket}/{prefix}/") from None
    targets = {}
    for store, entry in manifest["databases"].items():
        if not os.environ.get(STORES[store]):
            raise SystemExit(f"mlflow-backup: backup {name} has the {store} database but {STORES[store]} is not set")
        uri, env = libpq(os.environ[STORES[store]])
        held = tables(uri, env)
        if held and not force:
            raise SystemExit(f"mlflow-backup: the {store} database {urllib.parse.urlsplit(uri).path.lstrip('/')} "
                             f"holds {held} tables; restore into an empty database, or force it (BACKUP_FORCE=true "
                             "replaces what is there)")  # fmt: skip
        targets[store] = (uri, env, entry)
    if check:
        return {"name": name, "databases": sorted(targets), "mlflow_version": manifest.get("mlflow_version", "")}
    restored = {
        store: restore_one(s3, bucket, uri, env, entry, force=force) for store, (uri, env, entry) in targets.items()
    }
    return {"restored": f"s3://{bucket}/{prefix}/{name}/", "databases": restored}


# MLflow 3.13's auth migration: legacy grants become role grants, NO_PERMISSIONS rows are skipped (access then falls
# back to default_permission). docs/research/mlflow-migrations.md, section 3.
DENY_DROPPING = "e5f6a7b8c9d0"
MIGRATIONS = {"tracking": ("store", "db_migrations"), "auth": ("server", "auth", "db", "migrations")}


def pending(store: str, revision: list[str]) -> dict[str, object]:
    """The migrations this image's MLflow would run on a database at `revision` (empty: a new database)."""
    import importlib.util  # noqa: PLC0415 - only this command needs mlflow's files and alembic

    from alembic.script import ScriptDirectory  # noqa: PLC0415
    from alembic.script.revision import RevisionError  # noqa: PLC0415
    from alembic.util import CommandError  # noqa: PLC0415

    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mlflow-backup: this image has no mlflow package")
    script = ScriptDirectory(os.path.join(spec.submodule_search_locations[0], *MIGRATIONS[store]))
    head = script.get_current_head()
    entry: dict[str, object] = {
        "revision": revision[-1] if revision else "",
        "head": head,
        "known": True,
        "pending": [],
    }
    if not revision:
        return entry
    try:
        entry["pending"] = [r.revision for r in script.iterate_revisions(head, revision[-1])][::-1]
    except (
        CommandError,
        RevisionError,
    ):  # a revision this MLflow does not have: the database is newer (or not MLflow's)
        entry["known"] = False
    return entry


def denies(uri: str, env: dict[str, str]) -> list[dict[str, str]]:
    """Every explicit NO_PERMISSIONS grant in the auth database's legacy permission tables."""
    found = []
    with psycopg2.connect(uri, password=env.get("PGPASSWORD")) as conn, conn.cursor() as cur:
        cur.execute(
            "select c.table_name from information_schema.columns c join information_schema.columns u"
            " on u.table_schema = c.table_schema and u.table_name = c.table_name and u.column_name = 'user_id'"
            " where c.table_schema = current_schema() and c.column_name = 'permission'"
            " and c.table_name like '%%_permissions' order by 1"
        )
        for (table,) in cur.fetchall():
            cur.execute(
                f"select u.username, to_jsonb(p) from {table} p join users u on u.id = p.user_id"  # noqa: S608
                " where p.permission = 'NO_PERMISSIONS'"
            )
            for user, row in cur.fetchall():
                resource = {k: str(v) for k, v in row.items() if k not in ("id", "user_id", "permission")}
                found.append({"table": table, "user": user, **resource})
    return found


def schema() -> dict[str, object]:
    report: dict[str, object] = {"databases": {}, "denies_dropped": []}
    for store, variable in STORES.items():
        if not os.environ.get(variable):
            continue
        uri, env = libpq(os.environ[variable])
        entry = pending(store, facts(uri, env)["alembic_revision"])
        report["databases"][store] = entry
        if store == "auth" and DENY_DROPPING in entry["pending"]:
            report["denies_dropped"] = denies(uri, env)
    databases = report["databases"].values()
    report["unknown"] = sorted(s for s, e in report["databases"].items() if not e["known"])
    report["schema_changes"] = any(e["pending"] for e in databases)
    return report


def main() -> int:
    bucket, prefix = os.environ["BACKUP_BUCKET"], os.environ.get("BACKUP_PREFIX", "backups").strip("/")
    keep = int(os.environ.get("BACKUP_KEEP", "7"))
    stamp = os.environ.get("BACKUP_NAME") or datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    s3 = boto3.client("s3", endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None,
                      config=Config(retries={"mode": "standard", "max_attempts": 5}))  # fmt: skip
    if sys.argv[1:] == ["schema"]:
        print(json.dumps(schema()))
        return 0
    if sys.argv[1:2] in (["restore"], ["check"]):
        if len(sys.argv) != 3:
            raise SystemExit("usage: mlflow_backup.py restore|check NAME|latest")
        force = os.environ.get("BACKUP_FORCE", "false").lower() == "true"
        print(json.dumps(restore(s3, bucket, prefix, sys.argv[2], force=force, check=sys.argv[1] == "check")))
        return 0
    stores = {"tracking": os.environ["MLFLOW_BACKEND_STORE_URI"]}
    if os.environ.get("MLFLOW_AUTH_DATABASE_URI"):
        stores["auth"] = os.environ["MLFLOW_AUTH_DATABASE_URI"]
    manifest: dict[str, object] = {"name": stamp, "mlflow_version": os.environ.get("MLFLOW_VERSION", ""),
                                   "databases": {}}  # fmt: skip
    for name, store in stores.items():
        uri, env = libpq(store)
        entry = dump(s3, bucket, f"{prefix}/{stamp}/{name}.dump", uri, env)
        entry["database"] = urllib.parse.urlsplit(uri).path.lstrip("/")
        manifest["databases"][name] = entry
    manifest["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{stamp}/manifest.json", Body=json.dumps(manifest, indent=2).encode(),
                  ContentType="application/json")  # fmt: skip
    removed = prune(s3, bucket, prefix, keep, stamp)
    print(json.dumps({"backup": f"s3://{bucket}/{prefix}/{stamp}/", "removed": removed, **manifest}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
