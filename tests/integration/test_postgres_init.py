"""postgres_init against the sandbox's real PostgreSQL 15."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import errors

from harness.ansible import run_role
from harness.evidence import record
from harness.stores import query

pytestmark = pytest.mark.integration


def login(facts: dict, user: str, password: str, dbname: str):
    pg = facts["postgres"]
    conn = psycopg2.connect(
        host=pg["host"], port=pg["port"], user=user, password=password, dbname=dbname, connect_timeout=5
    )
    conn.autocommit = True
    return conn


def snapshot(facts: dict, user: str, databases: list[str]) -> dict:
    """Everything the role promises about its objects, with the names replaced by placeholders."""
    role = query(
        facts,
        "select rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, "
        "rolconnlimit, left(rolpassword, 14) from pg_authid where rolname = %s",
        (user,),
    )
    state: dict = {"role": role}
    for index, db in enumerate(databases):
        [(owner, encoding, acl)] = query(
            facts,
            "select pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datacl::text from pg_database "
            "where datname = %s",
            (db,),
        )
        [(schema_acl,)] = query(facts, "select nspacl::text from pg_namespace where nspname = 'public'", dbname=db)
        state[f"db{index}"] = {
            "owner": owner.replace(user, "<user>"),
            "encoding": encoding,
            "acl": acl.replace(user, "<user>"),
            "public_schema_acl": schema_acl.replace(user, "<user>"),
        }
    return state


def role_exists(facts: dict, name: str) -> bool:
    return bool(query(facts, "select 1 from pg_roles where rolname = %s", (name,)))


def db_exists(facts: dict, name: str) -> bool:
    return bool(query(facts, "select 1 from pg_database where datname = %s", (name,)))


@pytest.fixture
def names(sandbox_facts: dict):
    """Unique role/database names per test; dropped afterwards whatever happened."""
    suffix = uuid.uuid4().hex[:8]
    made = {"user": f"mlf_{suffix}", "db": f"mlf_{suffix}", "auth_db": f"mlf_{suffix}_auth"}
    yield made
    for db in (made["db"], made["auth_db"]):
        query(sandbox_facts, f"drop database if exists {db} with (force)")
    query(sandbox_facts, f"drop role if exists {made['user']}")


def role_vars(facts: dict, names: dict, **overrides: object) -> dict:
    pg = facts["postgres"]
    return {
        "postgres_init_login_host": pg["host"],
        "postgres_init_login_port": pg["port"],
        "postgres_init_login_user": pg["admin_user"],
        "postgres_init_login_password": pg["admin_password"],
        "postgres_init_db_name": names["db"],
        "postgres_init_db_user": names["user"],
        "postgres_init_db_password": "first-Password-1",
        **overrides,
    }


def test_check_mode_then_converge_least_privilege_and_idempotence(sandbox_facts, names):
    variables = role_vars(sandbox_facts, names)

    check = run_role("postgres_init", variables, check=True, diff=True)
    assert not check.failed, check.output
    assert check.changed >= 2  # the role and the database would be created
    assert not role_exists(sandbox_facts, names["user"])
    assert not db_exists(sandbox_facts, names["db"])

    first = run_role("postgres_init", variables)
    assert not first.failed, first.output
    assert first.changed >= 2

    state = snapshot(sandbox_facts, names["user"], [names["db"]])
    # LOGIN only: not superuser, cannot create roles, databases, replicate or bypass RLS; SCRAM password.
    assert state["role"] == [(False, True, False, False, True, False, False, -1, "SCRAM-SHA-256$")]
    db_state = state["db0"]
    assert db_state["owner"] == "<user>"
    assert db_state["encoding"] == "UTF8"
    # No entry for PUBLIC (an ACL item starting with "=") on the database or the public schema.
    assert db_state["acl"] == "{<user>=CTc/<user>}"
    assert not [item for item in db_state["public_schema_acl"].strip("{}").split(",") if item.startswith("=")]
    assert "<user>=UC/" in db_state["public_schema_acl"]

    conn = login(sandbox_facts, names["user"], "first-Password-1", names["db"])
    try:
        with conn.cursor() as cur:
            cur.execute("create table public.experiments_probe (id int primary key)")
            cur.execute("insert into public.experiments_probe values (1)")
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute("create database should_not_exist")
            with pytest.raises(errors.InsufficientPrivilege):
                cur.execute("create role should_not_exist")
    finally:
        conn.close()

    # PUBLIC cannot connect: a plain role without grants is refused.
    outsider = f"out_{names['user']}"
    query(sandbox_facts, f"create role {outsider} login password 'outsider-pw'")
    try:
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            login(sandbox_facts, outsider, "outsider-pw", names["db"])
    finally:
        query(sandbox_facts, f"drop role {outsider}")

    second = run_role("postgres_init", variables)
    assert not second.failed, second.output
    assert second.changed == 0, second.changed_tasks()
    assert snapshot(sandbox_facts, names["user"], [names["db"]]) == state

    check_again = run_role("postgres_init", variables, check=True, diff=True)
    assert not check_again.failed, check_again.output
    assert check_again.changed == 0, check_again.changed_tasks()


def test_password_change_rotates_it(sandbox_facts, names):
    assert not run_role("postgres_init", role_vars(sandbox_facts, names)).failed
    rotated = run_role("postgres_init", role_vars(sandbox_facts, names, postgres_init_db_password="second-Password-2"))
    assert not rotated.failed, rotated.output
    assert rotated.changed == 1, rotated.changed_tasks()

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        login(sandbox_facts, names["user"], "first-Password-1", names["db"])
    login(sandbox_facts, names["user"], "second-Password-2", names["db"]).close()


def test_drifted_grants_and_owner_are_put_back(sandbox_facts, names):
    """A re-run skips the grant modules when the catalog already holds what they set; drift must still be fixed."""
    variables = role_vars(sandbox_facts, names)
    assert not run_role("postgres_init", variables).failed
    state = snapshot(sandbox_facts, names["user"], [names["db"]])
    admin = sandbox_facts["postgres"]["admin_user"]
    db, user = names["db"], names["user"]
    query(sandbox_facts, f"alter database {db} owner to {admin}")
    query(sandbox_facts, f"grant connect, temporary on database {db} to public")
    query(sandbox_facts, "grant usage, create on schema public to public", dbname=db)
    query(sandbox_facts, f"revoke create on schema public from {user}", dbname=db)
    assert snapshot(sandbox_facts, user, [db]) != state

    check = run_role("postgres_init", variables, check=True, diff=True)
    assert not check.failed, check.output
    assert check.changed == 4, check.changed_tasks()  # owner, database grants, schema grant, schema revoke

    fixed = run_role("postgres_init", variables)
    assert not fixed.failed, fixed.output
    assert fixed.changed == 4, fixed.changed_tasks()
    assert snapshot(sandbox_facts, user, [db]) == state
    assert run_role("postgres_init", variables).changed == 0


def test_auth_database_is_optional(sandbox_facts, names):
    assert not run_role("postgres_init", role_vars(sandbox_facts, names)).failed
    assert not db_exists(sandbox_facts, names["auth_db"])

    variables = role_vars(
        sandbox_facts, names, postgres_init_auth_db_enabled=True, postgres_init_auth_db_name=names["auth_db"]
    )
    result = run_role("postgres_init", variables)
    assert not result.failed, result.output
    state = snapshot(sandbox_facts, names["user"], [names["db"], names["auth_db"]])
    assert state["db1"] == state["db0"]
    login(sandbox_facts, names["user"], "first-Password-1", names["auth_db"]).close()
    assert run_role("postgres_init", variables).changed == 0


def test_rendered_sql_creates_the_same_state(sandbox_facts, names, tmp_path: Path):
    sql_file = tmp_path / "mlflow-backend-db.sql"
    # Render only: an unreachable server proves no connection is attempted.
    render = run_role(
        "postgres_init",
        role_vars(
            sandbox_facts, names, postgres_init_apply=False, postgres_init_login_port=1,
            postgres_init_sql_path=str(sql_file), postgres_init_auth_db_enabled=True,
            postgres_init_auth_db_name=names["auth_db"], postgres_init_db_password="",
        ),
    )  # fmt: skip
    assert not render.failed, render.output
    text = sql_file.read_text()
    assert "first-Password-1" not in text
    assert not role_exists(sandbox_facts, names["user"])

    pg = sandbox_facts["postgres"]
    psql = [
        "psql", "-X", "-q", "-h", pg["host"], "-p", str(pg["port"]), "-U", pg["admin_user"], "-d", "postgres",
        "-f", str(sql_file),
    ]  # fmt: skip
    env = {"PGPASSWORD": pg["admin_password"], "PATH": "/usr/bin:/bin"}
    missing = subprocess.run(psql, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "mlflow_password" in missing.stderr
    for _ in range(2):  # the script is safe to run twice
        ran = subprocess.run(
            [*psql, "-v", "mlflow_password=first-Password-1"], env=env, capture_output=True, text=True, check=False
        )
        assert ran.returncode == 0, ran.stderr
    by_script = snapshot(sandbox_facts, names["user"], [names["db"], names["auth_db"]])

    # Now let the role manage the very same objects: it must find nothing to change.
    variables = role_vars(
        sandbox_facts, names, postgres_init_auth_db_enabled=True, postgres_init_auth_db_name=names["auth_db"]
    )
    result = run_role("postgres_init", variables)
    assert not result.failed, result.output
    assert result.changed == 0, result.changed_tasks()
    assert snapshot(sandbox_facts, names["user"], [names["db"], names["auth_db"]]) == by_script


def test_absent_needs_force_drop(sandbox_facts, names):
    assert not run_role("postgres_init", role_vars(sandbox_facts, names)).failed

    refused = run_role("postgres_init", role_vars(sandbox_facts, names, postgres_init_state="absent"))
    assert refused.failed
    assert any("postgres_init_force_drop" in msg for msg in refused.failure_messages()), refused.output
    assert db_exists(sandbox_facts, names["db"])

    check = run_role(
        "postgres_init",
        role_vars(sandbox_facts, names, postgres_init_state="absent", postgres_init_force_drop=True),
        check=True,
    )
    assert check.changed == 2 and db_exists(sandbox_facts, names["db"])

    dropped = run_role(
        "postgres_init", role_vars(sandbox_facts, names, postgres_init_state="absent", postgres_init_force_drop=True)
    )
    assert not dropped.failed, dropped.output
    assert not db_exists(sandbox_facts, names["db"]) and not role_exists(sandbox_facts, names["user"])


def test_admin_without_create_rights_is_refused(sandbox_facts, names):
    weak = f"weak_{names['user']}"
    query(sandbox_facts, f"create role {weak} login password 'weak-pw'")
    try:
        result = run_role(
            "postgres_init",
            role_vars(sandbox_facts, names, postgres_init_login_user=weak, postgres_init_login_password="weak-pw"),
        )
    finally:
        query(sandbox_facts, f"drop role {weak}")
    assert result.failed
    assert any("CREATEROLE and CREATEDB" in msg and weak in msg for msg in result.failure_messages())
    assert not role_exists(sandbox_facts, names["user"])


BAD_INPUTS = [
    pytest.param({"postgres_init_login_port": "five"}, "postgres_init_login_port", id="port-not-an-int"),
    pytest.param({"postgres_init_login_port": 70000}, "postgres_init_login_port must be between 1 and 65535", id="port-range"),
    pytest.param({"postgres_init_db_password": ""}, "postgres_init_db_password is empty", id="empty-password"),
    pytest.param({"postgres_init_db_user": "MLflow-User"}, "postgres_init_db_user", id="invalid-role-name"),
    pytest.param({"postgres_init_db_name": "pg_mlflow"}, "postgres_init_db_name", id="invalid-db-name"),
    pytest.param({"postgres_init_auth_db_enabled": "maybe"}, "postgres_init_auth_db_enabled", id="bool-not-a-bool"),
    pytest.param({"postgres_init_login_port": 1}, "cannot connect to PostgreSQL at 127.0.0.1:1", id="unreachable"),
    pytest.param({"postgres_init_login_password": "wrong"}, "password authentication failed", id="wrong-admin-password"),
    pytest.param({"postgres_init_ssl_mode": "always"}, "postgres_init_ssl_mode", id="ssl-mode-choice"),
    pytest.param({"postgres_init_login_port": 0}, "postgres_init_login_port must be between 1 and 65535", id="port-zero"),
    pytest.param({"postgres_init_db_user_conn_limit": -5}, "postgres_init_db_user_conn_limit must be -1 (no limit) or more", id="conn-limit"),
    pytest.param({"postgres_init_db_encoding": "UTF 8"}, "postgres_init_db_encoding", id="encoding-name"),
    pytest.param({"postgres_init_connect_timeout": 0}, "postgres_init_connect_timeout must be a positive number", id="timeout-zero"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS)
def test_bad_input_fails_before_any_change(sandbox_facts, names, overrides, message, request):
    result = run_role("postgres_init", role_vars(sandbox_facts, names, **overrides))
    assert result.failed
    messages = result.failure_messages()
    assert any(message in msg for msg in messages), messages
    assert not role_exists(sandbox_facts, names["user"])
    assert not db_exists(sandbox_facts, names["db"])
    assert "first-Password-1" not in result.output
    record("input", role="postgres_init", case=request.node.callspec.id, given=overrides, refused_with=message,
           proof="no login role, no database in the catalog")  # fmt: skip
