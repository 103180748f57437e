"""Role mlflow_k8s rendered through playbooks/render.yml, with no cluster: schemas, security checks, secrets.

Two variable sets: the defaults (plus the required connection values) and "everything on" (ingress with TLS,
NetworkPolicy, HPA, basic-auth, CA bundle, extra env). Every manifest is validated against the Kubernetes
OpenAPI schemas of the two newest versions kubernetes-validate ships, and checked by checkov.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from harness.ansible import BIN, ROOT, ansible_env

SECRETS = {
    "mlflow_db_password": "pw-Render/Test@1",
    "mlflow_s3_access_key": "AKIARENDERTEST",
    "mlflow_s3_secret_key": "render-secret-key-value",
}
BASE = {
    "mlflow_postgres_host": "postgres-shared-service.data-platform.svc.cluster.local",
    "mlflow_s3_endpoint_url": "https://minio.minio.svc.cluster.local:9000",
    **SECRETS,
}
EVERYTHING = {
    **BASE,
    "mlflow_k8s_ingress_enabled": True,
    "mlflow_k8s_ingress_class_name": "nginx",
    "mlflow_k8s_ingress_tls_secret_name": "mlflow-tls",
    "mlflow_k8s_ingress_annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "512m"},
    "mlflow_k8s_network_policy_enabled": True,
    "mlflow_k8s_network_policy_egress_cidrs": ["10.0.0.0/8"],
    "mlflow_k8s_hpa_enabled": True,
    "mlflow_k8s_auth_enabled": True,
    "mlflow_k8s_auth_admin_password": "render-admin-password-1",
    "mlflow_k8s_flask_secret_key": "render-flask-secret-key-0123456789",
    "mlflow_k8s_s3_ca_bundle": "-----BEGIN CERTIFICATE-----\nMIIBrender\n-----END CERTIFICATE-----\n",
    "mlflow_k8s_image_pull_secrets": ["ghcr-pull"],
    "mlflow_k8s_node_selector": {"kubernetes.io/os": "linux"},
    "mlflow_k8s_tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    "mlflow_k8s_pod_anti_affinity": "hard",
    "mlflow_k8s_extra_env": {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": 10},
    "mlflow_k8s_cors_allowed_origins": ["https://portal.254carbon.com"],
    "mlflow_k8s_db_sslmode": "verify-full",
    "mlflow_k8s_db_ca_bundle": "-----BEGIN CERTIFICATE-----\nMIIBrenderdb\n-----END CERTIFICATE-----\n",
}
ALL_SECRET_VALUES = [
    *SECRETS.values(),
    EVERYTHING["mlflow_k8s_auth_admin_password"],
    EVERYTHING["mlflow_k8s_flask_secret_key"],
]
# The sandbox's MLflow (scripts/install-sandbox-mlflow.sh): the release the image ships.
MLFLOW_PYTHON = Path("/opt/carbon254-sandbox/mlflow/bin/python")
VALIDATE_VERSIONS = ["1.37.0", "1.36.0"]  # the two newest kubernetes-validate ships (docs/research)


def render(tmp: Path, variables: dict) -> tuple[subprocess.CompletedProcess, dict[str, dict]]:
    tmp.mkdir(parents=True, exist_ok=True)
    vars_file = tmp / "vars.json"
    vars_file.write_text(json.dumps(variables))
    out = tmp / "out"
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), str(ROOT / "playbooks" / "render.yml"), "-e", f"@{vars_file}",
         "-e", f"mlflow_render_dir={out}"],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    files = (
        {p.name: yaml.safe_load(p.read_text()) for p in sorted((out / "mlflow_k8s").glob("*.yaml"))}
        if out.exists()
        else {}
    )
    return proc, files


@pytest.fixture(scope="module", params=["defaults", "everything"])
def rendered(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    proc, files = render(tmp, BASE if request.param == "defaults" else EVERYTHING)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {
        "name": request.param,
        "dir": tmp / "out" / "mlflow_k8s",
        "files": files,
        "output": proc.stdout + proc.stderr,
    }


def by_kind(files: dict[str, dict], kind: str) -> list[dict]:
    return [obj for obj in files.values() if obj["kind"] == kind]


def test_the_expected_objects_are_rendered(rendered):
    kinds = sorted(obj["kind"] for obj in rendered["files"].values())
    expected = [
        "ConfigMap",
        "ConfigMap",  # the backup script
        "CronJob",
        "Deployment",
        "Job",
        "Namespace",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    if rendered["name"] == "everything":
        expected += ["ConfigMap", "HorizontalPodAutoscaler", "Ingress", "Job", "NetworkPolicy"]
    assert kinds == sorted(expected)


@pytest.mark.parametrize("version", VALIDATE_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schema(rendered, version):
    for name, obj in rendered["files"].items():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{name} is invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_checkov_finds_no_failure(rendered, tmp_path):
    """checkov's Kubernetes checks; the skips are justified one by one in tests/checkov.yaml."""
    checkov = ROOT / ".cache" / "checkov-venv" / "bin" / "checkov"
    assert checkov.exists(), "make setup installs checkov into .cache/checkov-venv"
    # CKV2_K8S_6 (pods without a NetworkPolicy) for the defaults only: the policy is opt-in, as the right one
    # depends on the cluster's CNI and where the clients run; the "everything on" set must pass it.
    # (A --skip-check on the command line replaces the config file's list, hence the join.)
    skips = yaml.safe_load((ROOT / "tests" / "checkov.yaml").read_text())["skip-check"]
    extra = ["--skip-check", ",".join([*skips, "CKV2_K8S_6"])] if rendered["name"] == "defaults" else []
    proc = subprocess.run(
        [str(checkov), "--config-file", str(ROOT / "tests" / "checkov.yaml"), "--directory", str(rendered["dir"]),
         "--output", "json", "--quiet", "--compact", *extra],
        capture_output=True, text=True, timeout=600, check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['check_name']} ({c['resource']})" for r in reports
              for c in r.get("results", {}).get("failed_checks", [])]  # fmt: skip
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert failed == [], "\n".join(failed)
    assert passed > 50, proc.stdout[:2000] + proc.stderr[-2000:]


def test_no_secret_value_outside_the_secret(rendered):
    for name, obj in rendered["files"].items():
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        leaked = [value for value in ALL_SECRET_VALUES if value in text]
        assert leaked == [], f"{name} carries secret values"
    assert not any(value in rendered["output"] for value in ALL_SECRET_VALUES), "a secret value reached the output"


def test_secret_holds_the_url_encoded_backend_uri(rendered):
    (secret,) = by_kind(rendered["files"], "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["MLFLOW_BACKEND_STORE_URI"].startswith(
        "postgresql+psycopg2://mlflow:pw-Render%2FTest%401@postgres-shared-service.data-platform.svc.cluster.local:5432/mlflow"
    )
    assert data["AWS_SECRET_ACCESS_KEY"] == SECRETS["mlflow_s3_secret_key"]
    if rendered["name"] == "everything":
        query = "?sslmode=verify-full&sslrootcert=/etc/mlflow/db-ca/ca.crt"
        assert data["MLFLOW_BACKEND_STORE_URI"].endswith(query)
        assert data["MLFLOW_AUTH_DATABASE_URI"].endswith("/mlflow_auth" + query)
        # configparser interpolation: the URL-encoded '%' is doubled in the ini.
        assert "pw-Render%%2FTest%%401@" in data["basic_auth.ini"]
        assert data["MLFLOW_AUTH_ADMIN_PASSWORD"] == EVERYTHING["mlflow_k8s_auth_admin_password"]
        assert mlflow_reads_auth_ini(data["basic_auth.ini"], rendered["dir"].parents[1]) == {
            "auth_cache_ttl_seconds": 60,
            "auth_cache_max_size": 10000,
            "default_permission": "READ",
        }
    (config,) = [c for c in by_kind(rendered["files"], "ConfigMap") if c["metadata"]["name"] == "mlflow-config"]
    assert not set(config["data"]) & set(data)


def mlflow_reads_auth_ini(ini: str, where: Path) -> dict:
    """The settings MLflow's own basic-auth config reader (the deployed release) takes from the rendered ini."""
    path = where / "basic_auth.ini"
    path.write_text(ini)
    code = (
        "import json; from mlflow.server.auth.config import read_auth_config as r; c = r(); "
        "print(json.dumps({k: getattr(c, k) for k in ('auth_cache_ttl_seconds', 'auth_cache_max_size', "
        "'default_permission')}))"
    )
    proc = subprocess.run([str(MLFLOW_PYTHON), "-c", code], env={"MLFLOW_AUTH_CONFIG_PATH": str(path)},
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_deployment_is_hardened(rendered):
    (deployment,) = by_kind(rendered["files"], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
    assert "--serve-artifacts" in container["args"]
    assert any(a.startswith("--expose-prometheus=") for a in container["args"])
    # A replaced pod keeps serving while the Service forgets it (no request dropped in a rollout).
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 10}}
    assert pod["terminationGracePeriodSeconds"] == 40
    if rendered["name"] == "everything":
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        assert "--app-name=basic-auth" in container["args"]
        assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    else:
        assert deployment["spec"]["replicas"] == 2


def test_placement_weighs_one_revision_and_a_lost_nodes_pod_is_replaced_after_a_minute(rendered):
    (deployment,) = by_kind(rendered["files"], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]
    (term,) = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [
        t["podAffinityTerm"] for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]
    ]
    # A rolling update's pods weigh each other only: with hard anti-affinity on as many nodes as replicas the
    # surge pod could otherwise never be placed.
    assert term["matchLabelKeys"] == ["pod-template-hash"]
    assert "pod-template-hash" not in term["labelSelector"]["matchLabels"]  # the API server refuses both
    assert [c["matchLabelKeys"] for c in pod["topologySpreadConstraints"]] == [["pod-template-hash"]]
    lost = {t["key"]: t for t in pod["tolerations"] if t.get("effect") == "NoExecute"}
    assert set(lost) == {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}
    assert {t["tolerationSeconds"] for t in lost.values()} == {60} and {t["operator"] for t in lost.values()} == {
        "Exists"
    }
    if rendered["name"] == "everything":  # the user's own toleration is kept, first
        assert pod["tolerations"][0] == EVERYTHING["mlflow_k8s_tolerations"][0]
    for job in by_kind(rendered["files"], "Job"):  # a migration is not a replica: no eviction policy of ours
        assert all(t.get("effect") != "NoExecute" for t in job["spec"]["template"]["spec"].get("tolerations", []))


def test_the_users_tolerations_win_over_the_node_lost_eviction(tmp_path):
    """__mlflow_k8s_server_tolerations as Ansible evaluates it, for the cases the fixtures do not render (a render
    each would cost about 25 s), and in the same order whatever Python's string hash seed: `difference` once
    ordered them through a set, so each run's order differed and re-runs rolled the pods (molecule's idempotence)."""
    unreachable = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": 5}  # fmt: skip
    cases = [
        ([], 0, None),  # the cluster's default (300 s by the DefaultTolerationSeconds admission plugin)
        ([unreachable], 60, {"node.kubernetes.io/unreachable": 5, "node.kubernetes.io/not-ready": 60}),  # theirs wins
        ([{"operator": "Exists"}], 60, {}),  # tolerates every taint for ever: nothing of ours beside it
    ]
    ordered = ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"]
    tasks = [{"ansible.builtin.include_vars": str(ROOT / "roles" / "mlflow_k8s" / "vars" / "main.yml")},
             {"ansible.builtin.assert": {"that": [f"__mlflow_k8s_server_tolerations | map(attribute='key') == {ordered}"]},
              "vars": {"mlflow_k8s_tolerations": [], "mlflow_k8s_node_lost_eviction_seconds": 60}}]  # fmt: skip
    for tolerations, seconds, expected in cases:
        check = ("__mlflow_k8s_server_tolerations == []" if expected is None else
                 "__mlflow_k8s_server_tolerations | selectattr('key', 'defined') | items2dict('key', "
                 f"'tolerationSeconds') == {expected!r}")  # fmt: skip
        tasks.append({"ansible.builtin.assert": {"that": [check]},
                      "vars": {"mlflow_k8s_tolerations": tolerations, "mlflow_k8s_node_lost_eviction_seconds": seconds}})  # fmt: skip
    play = [{"hosts": "localhost", "gather_facts": False, "vars": {"mlflow_k8s_name": "mlflow"}, "tasks": tasks}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    for seed in ("0", "1", "2", "3"):
        proc = subprocess.run([str(BIN / "ansible-playbook"), str(tmp_path / "play.yml")],
                              env={**ansible_env(), "PYTHONHASHSEED": seed}, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        assert proc.returncode == 0, (seed, proc.stdout[-2000:])


def test_server_pods_carry_the_guides_app_label_outside_the_selector(rendered):
    # The deployment guide selects `app=mlflow` (kubectl get pods -l app=mlflow, its scrape rule's keep on
    # __meta_kubernetes_pod_label_app); a selector is immutable, so the label is on the pods only.
    (deployment,) = by_kind(rendered["files"], "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "mlflow"
    assert "app" not in deployment["spec"]["selector"]["matchLabels"]
    (service,) = by_kind(rendered["files"], "Service")
    assert "app" not in service["spec"]["selector"]
    for job in by_kind(rendered["files"], "Job"):
        assert "app" not in job["spec"]["template"]["metadata"].get("labels", {}), "migrations are not the server"


def test_pods_trust_the_given_cas(rendered):
    """The CA ConfigMap carries the S3 and PostgreSQL CAs; the server and every migration pod mount what they use."""
    cas = [c for c in by_kind(rendered["files"], "ConfigMap") if c["metadata"]["name"] == "mlflow-ca"]
    pods = [
        obj["spec"]["template"]["spec"] for obj in rendered["files"].values() if obj["kind"] in ("Deployment", "Job")
    ]
    if rendered["name"] == "defaults":
        assert cas == []
        assert all(not [v for v in pod["volumes"] if "configMap" in v] for pod in pods)
        return
    (ca,) = cas
    (cronjob,) = by_kind(rendered["files"], "CronJob")
    backup = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {m["name"]: m["mountPath"] for m in backup["containers"][0]["volumeMounts"]}["db-ca"] == "/etc/mlflow/db-ca"
    assert {v["name"]: v for v in backup["volumes"]}["db-ca"]["configMap"]["name"] == "mlflow-ca"
    assert ca["data"] == {"ca.crt": EVERYTHING["mlflow_k8s_s3_ca_bundle"],
                          "postgres-ca.crt": EVERYTHING["mlflow_k8s_db_ca_bundle"]}  # fmt: skip
    assert len(pods) == 3  # the server, the tracking and the auth migrations
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["db-ca"]["configMap"] == {
            "name": "mlflow-ca",
            "items": [{"key": "postgres-ca.crt", "path": "ca.crt"}],
        }
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["db-ca"] == "/etc/mlflow/db-ca"


def test_config_checksum_follows_the_config_and_nothing_else(tmp_path):
    _, first = render(tmp_path / "a", BASE)
    _, same = render(tmp_path / "b", BASE)
    _, other = render(tmp_path / "c", {**BASE, "mlflow_k8s_log_level": "DEBUG"})

    def sums(files):
        (deployment,) = by_kind(files, "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]

    assert sums(first) == sums(same)
    assert sums(first)["checksum/config"] != sums(other)["checksum/config"]
    assert sums(first)["checksum/secret"] == sums(other)["checksum/secret"]


def test_missing_secrets_are_left_out_with_a_note(tmp_path):
    proc, files = render(tmp_path, {k: v for k, v in BASE.items() if k not in SECRETS})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_kind(files, "Secret") == []
    notes = (tmp_path / "out" / "mlflow_k8s" / "NOTES.md").read_text()
    assert "mlflow_k8s_db_password" in notes and "mlflow_k8s_s3_secret_key" in notes
    (deployment,) = by_kind(files, "Deployment")
    assert "checksum/secret" not in deployment["spec"]["template"]["metadata"]["annotations"]


def test_image_containerfile_sandbox_and_role_agree():
    """The role's default image is the one the sandbox builds from the Containerfile, with the same user."""
    from sandbox.pins import mlflow_image  # noqa: PLC0415

    defaults = yaml.safe_load((ROOT / "roles" / "mlflow_k8s" / "defaults" / "main.yml").read_text())
    version = defaults["mlflow_k8s_version"].split("default('")[1].split("'")[0]
    assert mlflow_image() == f"{defaults['mlflow_k8s_image_repository']}:{version}"
    containerfile = (ROOT / "images" / "mlflow" / "Containerfile").read_text()
    user = defaults["mlflow_k8s_run_as_user"]
    assert f"USER {user}:{user}" in containerfile
    assert 'ENTRYPOINT ["mlflow"]' in containerfile
    assert f"ARG MLFLOW_VERSION={version}" in containerfile
    pins = (ROOT / "images" / "mlflow" / "requirements.txt").read_text().splitlines()
    assert f"mlflow=={version}" in pins
    for package in ("psycopg2-binary==", "boto3==", "prometheus_flask_exporter==", "Flask-WTF=="):
        assert any(line.startswith(package) for line in pins), package


def test_backup_cronjob_runs_the_shipped_script_as_the_server_does(rendered):
    """The backup pod: the server's image, pod security, ConfigMap and Secret; the script from the role's files."""
    (cronjob,) = by_kind(rendered["files"], "CronJob")
    (deployment,) = by_kind(rendered["files"], "Deployment")
    script = next(c for c in by_kind(rendered["files"], "ConfigMap") if c["metadata"]["name"] == "mlflow-backup")
    assert script["data"]["mlflow_backup.py"] == (ROOT / "roles/mlflow_k8s/files/mlflow_backup.py").read_text()
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid" and cronjob["spec"]["timeZone"] == "Etc/UTC"
    pod, server = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == server["securityContext"] and pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["image"] == server["containers"][0]["image"]
    assert container["envFrom"] == server["containers"][0]["envFrom"]
    assert container["securityContext"] == server["containers"][0]["securityContext"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BACKUP_BUCKET"] == "mlflow-artifacts" and env["BACKUP_KEEP"] == "7"
    assert env["BACKUP_PREFIX"] == f"mlflow-backups/{cronjob['metadata']['namespace']}/mlflow"
    labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "backup" and "app" not in labels  # not the server's pods
