"""Conformance of the Kubernetes API server emulator, through the official Python client and raw HTTP."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from sandbox.k8s.apiserver import ApiServer, kubeconfig
from sandbox.k8s.store import Store

TOKEN = "test-token"


@pytest.fixture
def api(tmp_path: Path):
    server = ApiServer(("127.0.0.1", 0), Store(), TOKEN)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig(url, TOKEN)))
    api_client = config.new_client_from_config(config_file=str(path))
    yield {"url": url, "server": server, "client": api_client, "kubeconfig": path}
    server.shutdown()
    server.server_close()


def call(
    api: dict,
    method: str,
    path: str,
    body: object = None,
    content_type: str = "application/json",
    *,
    token: str | None = TOKEN,
) -> tuple[int, dict, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(api["url"] + path, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def deployment(name: str = "web", replicas: object = 2, containers: list | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": containers
                    if containers is not None
                    else [
                        {
                            "name": "app",
                            "image": "nginx:1.25",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        },
                        {"name": "sidecar", "image": "busybox:1.36"},
                    ]
                },
            },
        },
    }


def test_discovery_serves_the_pinned_version_and_required_groups(api):
    status, version, _ = call(api, "GET", "/version")
    assert status == 200 and version["gitVersion"] == "v1.37.0"
    assert client.VersionApi(api["client"]).get_code().git_version == "v1.37.0"  # typed client: strict fields
    assert client.CoreApi(api["client"]).get_api_versions().versions == ["v1"]
    _, groups, _ = call(api, "GET", "/apis")
    served = {g["name"]: [v["version"] for v in g["versions"]] for g in groups["groups"]}
    for group, version in [
        ("apps", "v1"),
        ("batch", "v1"),
        ("networking.k8s.io", "v1"),
        ("policy", "v1"),
        ("autoscaling", "v2"),
        ("rbac.authorization.k8s.io", "v1"),
        ("apiextensions.k8s.io", "v1"),
    ]:
        assert version in served[group], group
    _, core, _ = call(api, "GET", "/api/v1")
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["namespaced"] and pods["kind"] == "Pod" and "create" in pods["verbs"]
    assert any(r["name"] == "pods/status" for r in core["resources"])
    namespaces = next(r for r in core["resources"] if r["name"] == "namespaces")
    assert namespaces["namespaced"] is False
    dc = dynamic.DynamicClient(api["client"])
    assert dc.resources.get(api_version="apps/v1", kind="Deployment").namespaced


def test_requests_need_the_token(api):
    status, body, _ = call(api, "GET", "/api/v1/namespaces", token=None)
    assert status == 401 and body["reason"] == "Unauthorized"
    assert call(api, "GET", "/api/v1/namespaces", token="wrong")[0] == 401


def test_crud_conflicts_selectors_and_generation(api):
    core = client.CoreV1Api(api["client"])
    apps = client.AppsV1Api(api["client"])
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"tier": "a"}},
        "data": {"k": "v"},
    }
    created = core.create_namespaced_config_map("default", cm)
    assert created.metadata.uid and created.metadata.resource_version and created.metadata.creation_timestamp
    assert created.metadata.generation is None  # ConfigMaps have no generation
    with pytest.raises(ApiException) as dup:
        core.create_namespaced_config_map("default", cm)
    assert dup.value.status == 409 and json.loads(dup.value.body)["reason"] == "AlreadyExists"
    core.create_namespaced_config_map("default", {**cm, "metadata": {"name": "other", "labels": {"tier": "b"}}})
    assert [c.metadata.name for c in core.list_namespaced_config_map("default", label_selector="tier=a").items] == [
        "cfg"
    ]
    assert [
        c.metadata.name for c in core.list_namespaced_config_map("default", label_selector="tier notin (a)").items
    ] == ["other"]
    assert [
        c.metadata.name for c in core.list_namespaced_config_map("default", field_selector="metadata.name=other").items
    ] == ["other"]

    stale = created.to_dict()
    core.replace_namespaced_config_map("cfg", "default", {**cm, "data": {"k": "v2"}})
    stale_body = {**cm, "metadata": {**cm["metadata"], "resourceVersion": created.metadata.resource_version}}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("cfg", "default", stale_body)
    assert conflict.value.status == 409 and "the object has been modified" in conflict.value.body
    assert stale["metadata"]["uid"] == core.read_namespaced_config_map("cfg", "default").metadata.uid

    dep = apps.create_namespaced_deployment("default", deployment())
    assert dep.metadata.generation == 1 and dep.spec.strategy.type == "RollingUpdate"  # server-side defaults
    labelled = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"extra": "x"}}})
    assert labelled.metadata.generation == 1  # metadata only: no new generation
    scaled = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2
    unchanged = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert unchanged.metadata.resource_version == scaled.metadata.resource_version  # no-op writes nothing

    apps.delete_namespaced_deployment("web", "default")
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("web", "default")
    assert gone.value.status == 404


def test_strategic_merge_keeps_other_containers_and_env(api):
    apps = client.AppsV1Api(api["client"])
    apps.create_namespaced_deployment("default", deployment())
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "env": [{"name": "C", "value": "3"}]}]}
            }
        }
    }
    patched = apps.patch_namespaced_deployment("web", "default", patch)  # strategic merge by default
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert set(containers) == {"app", "sidecar"}
    assert containers["app"].image == "nginx:1.27"
    assert {e.name: e.value for e in containers["app"].env} == {"A": "1", "B": "2", "C": "3"}
    # The same document as a JSON merge patch replaces the whole list, as on a real server.
    status, merged, _ = call(
        api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", patch, "application/merge-patch+json"
    )
    assert status == 200 and [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["app"]
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 5}]
    status, jp, _ = call(
        api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", ops, "application/json-patch+json"
    )
    assert status == 200 and jp["spec"]["replicas"] == 5
    ops = [{"op": "test", "path": "/spec/replicas", "value": 1}]
    assert (
        call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", ops, "application/json-patch+json")[0]
        == 422
    )


def test_errors_like_the_real_server(api):
    path = "/apis/apps/v1/namespaces/default/deployments"
    status, body, _ = call(api, "POST", path, deployment(replicas="two"))
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"].startswith(
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string'
    )
    assert "spec.replicas" in body["message"]

    status, body, _ = call(api, "POST", path, deployment(name="Bad_Name"))
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert 'Deployment.apps "Bad_Name" is invalid' in body["message"]

    status, body, _ = call(api, "POST", path, deployment(containers=[]))
    assert status == 422
    assert {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.template.spec.containers",
    } in body["details"]["causes"]

    status, body, _ = call(api, "POST", "/apis/apps/v1/namespaces/nowhere/deployments", deployment())
    assert status == 404 and body["message"] == 'namespaces "nowhere" not found'
    assert call(api, "GET", "/apis/apps/v1/namespaces/default/widgets")[0] == 404
    assert call(api, "GET", "/apis/nosuch.example.com/v1")[0] == 404

    status, _, headers = call(
        api, "POST", path, {**deployment(name="warned"), "spec": {**deployment()["spec"], "bogus": 1}}
    )
    assert status == 201 and headers.get("Warning") == '299 - "unknown field \\"spec.bogus\\""'
    status, body, _ = call(
        api,
        "POST",
        path + "?fieldValidation=Strict",
        {**deployment(name="strict"), "spec": {**deployment()["spec"], "bogus": 1}},
    )
    assert status == 400 and "strict decoding error" in body["message"]


def test_dry_run_persists_nothing(api):
    path = "/api/v1/namespaces/default/configmaps"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"a": "b"}}
    status, body, _ = call(api, "POST", path + "?dryRun=All", cm)
    assert status == 201 and body["metadata"]["name"] == "dry"
    assert call(api, "GET", path + "/dry")[0] == 404
    call(api, "POST", path, cm)
    assert call(api, "DELETE", path + "/dry?dryRun=All")[0] == 200
    assert call(api, "GET", path + "/dry")[0] == 200
    summary = api["server"].log.summary()
    assert summary["writes"] == 1  # only the real create; dry runs are not writes


def test_cascading_deletes(api):
    core = client.CoreV1Api(api["client"])
    core.create_namespace({"metadata": {"name": "team"}})
    owner = core.create_namespaced_config_map("team", {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map("team", {"metadata": {"name": "owned", "ownerReferences": [ref]}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "orphan", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("orphan", "team", propagation_policy="Orphan")
    core.delete_namespaced_config_map("owner", "team")
    assert [c.metadata.name for c in core.list_namespaced_config_map("team").items] == []
    core.create_namespaced_secret("team", {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    core.delete_namespace("team")
    assert call(api, "GET", "/api/v1/namespaces/team/secrets/s")[0] == 404
    assert call(api, "GET", "/api/v1/namespaces/team")[0] == 404


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "port": {"x-kubernetes-int-or-string": True},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_custom_resource_definitions(api):
    assert call(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)[0] == 201
    _, discovery, _ = call(api, "GET", "/apis/example.com/v1")
    assert [r["kind"] for r in discovery["resources"]] == ["Widget"]
    path = "/apis/example.com/v1/namespaces/default/widgets"
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 2, "port": "http"},
    }
    status, body, headers = call(api, "POST", path, {**widget, "spec": {**widget["spec"], "colour": "red"}})
    assert status == 201 and "colour" not in body["spec"]  # pruned like a structural schema
    assert "spec.colour" in headers.get("Warning", "")
    status, body, _ = call(api, "POST", path, {**widget, "metadata": {"name": "bad"}, "spec": {"size": 0}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.size"
    status, body, _ = call(api, "POST", path, {**widget, "metadata": {"name": "nosize"}, "spec": {}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.size"
    # Strategic merge is not defined for custom resources: 415, so clients fall back to merge patch.
    assert call(api, "PATCH", path + "/w", {"spec": {"size": 3}}, "application/strategic-merge-patch+json")[0] == 415
    assert call(api, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")[0] == 200
    assert call(api, "GET", path)[0] == 404


def test_server_side_apply(api):
    path = "/api/v1/namespaces/default/configmaps/applied"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1", "b": "2"}}
    status, body, _ = call(api, "PATCH", path + "?fieldManager=one", cm, "application/apply-patch+yaml")
    assert status == 201 and body["data"] == {"a": "1", "b": "2"}
    again = call(api, "PATCH", path + "?fieldManager=one", cm, "application/apply-patch+yaml")[1]
    assert again["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    status, body, _ = call(
        api, "PATCH", path + "?fieldManager=one", {**cm, "data": {"a": "1"}}, "application/apply-patch+yaml"
    )
    assert status == 200 and body["data"] == {"a": "1"}  # a field the manager stopped applying is removed
    status, body, _ = call(
        api, "PATCH", path + "?fieldManager=two", {**cm, "data": {"a": "9"}}, "application/apply-patch+yaml"
    )
    assert status == 409 and 'conflict with "one"' in body["message"]
    status, body, _ = call(
        api, "PATCH", path + "?fieldManager=two&force=true", {**cm, "data": {"a": "9"}}, "application/apply-patch+yaml"
    )
    assert status == 200 and body["data"] == {"a": "9"}
    assert call(api, "PATCH", path, cm, "application/apply-patch+yaml")[0] == 400  # fieldManager is required


def test_request_log_counts_by_verb_and_resource(api):
    core = client.CoreV1Api(api["client"])
    api["server"].log.clear()
    core.create_namespaced_config_map("default", {"metadata": {"name": "counted"}})
    core.read_namespaced_config_map("counted", "default")
    core.list_namespaced_config_map("default")
    status, summary, _ = call(api, "GET", "/sandbox/requests")
    assert status == 200
    assert summary["counts"] == {"create configmaps": 1, "get configmaps": 1, "list configmaps": 1}
    assert summary["writes"] == 1
