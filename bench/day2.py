"""Benchmark: backup, upgrade and restore of a realistic MLflow database (~10k runs, ~1M metric points).

On a sandbox of its own (private state directory and ports): site.yml deploys MLflow 3.10.1 (the older image built
from images/mlflow/releases/3.10.1), then --runs runs with --points metric points each (a 'loss' history), 5 params
and 5 tags are written straight into its PostgreSQL tables (MLflow's own schema of that release: the REST API would
take hours for a million points), and checked through the server. Then, side by side in one run:

- playbooks/backup.yml (pg_dump -Fc of both databases to S3) --repeats times: wall time, dump size;
- the upgrade to the current release (site.yml): wall time, the outage the play reports, the migrations it ran
  (3.12's index on metrics and the workspace key rewrites among them);
- playbooks/restore.yml of the newest backup over the live databases (forced) --repeats times: wall time, outage.

    .venv/bin/python bench/day2.py [--runs 10000] [--points 100] [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sandbox_startup import update_doc  # noqa: E402
from harness.ansible import BIN, MLFLOW_VERSION, ansible_env  # noqa: E402
from harness.kube import import_images  # noqa: E402
from harness.stores import query  # noqa: E402
from sandbox.pins import older_mlflow_images  # noqa: E402

HEADING = "## Backup, upgrade and restore of ~10k runs / 1M metric points (bench/day2.py)"
SANDBOX = {"SANDBOX_PG_PORT": "27932", "SANDBOX_S3_PORT": "27933", "SANDBOX_K8S_PORT": "27943",
           "SANDBOX_WEED_PORT_BASE": "27950", "SANDBOX_POD_CIDR": "10.222.0.0/16"}  # fmt: skip
OLDER = "3.10.1"
DB = "mlflow"  # the sandbox inventory's database


def playbook(name: str, env: dict[str, str], **extra: object) -> tuple[float, str]:
    argv = [str(BIN / "ansible-playbook"), f"playbooks/{name}", "-i", "inventories/sandbox"]
    for key, value in extra.items():
        argv += ["-e", json.dumps({key: value})]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    return took, proc.stdout


def load(facts: dict, runs: int, points: int) -> None:
    """runs x points metric rows (and latest_metrics, params, tags) in one experiment, with SQL."""
    (experiment,) = query(facts, "insert into experiments (name, artifact_location, lifecycle_stage, creation_time,"
                          " last_update_time) values ('bench-day2', 'mlflow-artifacts:/bench', 'active', 0, 0)"
                          " returning experiment_id", dbname=DB)[0]  # fmt: skip
    numbers = {"runs": runs, "last": points - 1, "experiment": experiment}
    statements = [
        "insert into runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time,"
        " end_time, source_version, lifecycle_stage, artifact_uri, experiment_id)"
        " select md5('run' || i), 'run-' || i, 'LOCAL', '', '', 'bench', 'FINISHED', 1700000000000 + i,"
        " 1700000001000 + i, '', 'active', 'mlflow-artifacts:/bench/' || md5('run' || i), %(experiment)s"
        " from generate_series(1, %(runs)s) i",
        "insert into metrics (key, value, timestamp, run_uuid, step, is_nan)"
        " select 'loss', 1.0 / (s + 1) + i * 1e-6, 1700000000000 + s, md5('run' || i), s, false"
        " from generate_series(1, %(runs)s) i, generate_series(0, %(last)s) s",
        "insert into latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
        " select 'loss', 1.0 / (%(last)s + 1) + i * 1e-6, 1700000000000 + %(last)s, %(last)s, false,"
        " md5('run' || i) from generate_series(1, %(runs)s) i",
        "insert into params (key, value, run_uuid) select 'p' || k, (i * k)::text, md5('run' || i)"
        " from generate_series(1, %(runs)s) i, generate_series(1, 5) k",
        "insert into tags (key, value, run_uuid) select 't' || k, 'value-' || k, md5('run' || i)"
        " from generate_series(1, %(runs)s) i, generate_series(1, 5) k",
    ]
    for sql in statements:
        query(facts, sql, numbers, dbname=DB)  # type: ignore[arg-type] - psycopg2 takes a mapping too
    query(facts, "analyze", dbname=DB)


def counts(facts: dict) -> dict[str, int]:
    """The benchmark experiment's rows (the verify play logs runs of its own on each site.yml)."""
    mine = "run_uuid in (select run_uuid from runs where experiment_id ="
    mine += " (select experiment_id from experiments where name = 'bench-day2'))"
    return {t: query(facts, f"select count(*) from {t} where {mine}", dbname=DB)[0][0]  # noqa: S608 - fixed names
            for t in ("runs", "metrics", "params", "tags")}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    py = str(BIN / "python")
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-day2-") as tmp:
        state = Path(tmp) / "state"
        env = {**ansible_env(**SANDBOX), "SANDBOX_STATE_DIR": str(state)}
        env.pop("SANDBOX_KEEP", None)
        try:
            subprocess.run([py, "-m", "sandbox", "up"], cwd=ROOT, env=env, capture_output=True, check=True)
            facts = json.loads((state / "facts.json").read_text())
            import_images(facts, sorted(older_mlflow_images()))
            playbook("site.yml", env, mlflow_k8s_version=OLDER)
            started = time.monotonic()
            load(facts, args.runs, args.points)
            result["load_s"] = round(time.monotonic() - started, 1)
            before = counts(facts)
            result["rows"] = before
            result["db_bytes"] = query(facts, f"select pg_database_size('{DB}')")[0][0]
            backups = [playbook("backup.yml", env)[0] for _ in range(args.repeats)]
            took, out = playbook("site.yml", env)
            stop = re.search(r"was stopped for ([0-9.]+) s while the migrations ran \((\d+);", out)
            result["upgrade"] = {"site_s": round(took, 1), "outage_s": float(stop.group(1)) if stop else None,
                                 "migrations": int(stop.group(2)) if stop else None}  # fmt: skip
            assert counts(facts) == before, "the upgrade changed the row counts"
            _, backed_up = playbook("backup.yml", env)
            restores, outages = [], []
            for _ in range(args.repeats):
                took, out = playbook("restore.yml", env, mlflow_k8s_restore_force=True)
                restores.append(took)
                outages.append(float(re.search(r"the server was stopped for ([0-9.]+) s", out).group(1)))
            assert counts(facts) == before, "the restore changed the row counts"
            dump = re.findall(r'"bytes": (\d+)', backed_up)
            result.update(backup_s=backups, restore_s=restores, restore_outage_s=outages,
                          dump_bytes=int(dump[0]) if dump else None)  # fmt: skip
        finally:
            subprocess.run([py, "-m", "sandbox", "down", "--purge"], cwd=ROOT, env=env, capture_output=True,
                           check=False)  # fmt: skip
    print(json.dumps(result, indent=1))
    upgrade = result["upgrade"]
    rows = result["rows"]
    lines = [
        HEADING,
        "",
        f"{time.strftime('%Y-%m-%d')}, this 2-core machine (shared); the sandbox inventory (2 replicas, basic-auth); "
        f"MLflow {OLDER} with {rows['runs']:,} runs, {rows['metrics']:,} metric points, {rows['params']:,} params and "
        f"{rows['tags']:,} tags (database {result['db_bytes'] / 2**20:.0f} MiB), written with SQL in "
        f"{result['load_s']} s; medians (min-max) of {args.repeats}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| playbooks/backup.yml (pg_dump -Fc of both databases to S3) | {statistics.median(backups):.1f} s "
        f"({min(backups):.1f}-{max(backups):.1f}) |",
        f"| upgrade {OLDER} → {MLFLOW_VERSION} with site.yml (backup, schema check, migration, rollout, verify) | "
        f"{upgrade['site_s']:.1f} s |",
        f"| &nbsp; server stopped (scaled to zero) while {upgrade['migrations']} migrations ran | "
        f"{upgrade['outage_s']} s |",
        f"| playbooks/restore.yml of that database (forced over it) | {statistics.median(restores):.1f} s "
        f"({min(restores):.1f}-{max(restores):.1f}) |",
        f"| &nbsp; server stopped during the restore | {statistics.median(outages):.1f} s |",
        "",
        "Row counts were the same after the upgrade and after each restore (the script checks)."
        + (f" The tracking database's dump: {result['dump_bytes'] / 2**20:.0f} MiB." if result["dump_bytes"] else ""),
        "",
    ]
    if args.write:
        update_doc(lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
