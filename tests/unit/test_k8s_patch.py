"""The API-server emulator's patch formats: JSON merge patch, JSON patch and Kubernetes strategic merge patch."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from sandbox.k8s.patch import PatchError, json_merge_patch, json_patch, strategic_merge_patch

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
DIRECTIVE_PREFIXES = ("$patch", "$retainKeys", "$setElementOrder/", "$deleteFromPrimitiveList/")


@pytest.fixture(scope="module")
def definitions() -> dict[str, dict]:
    """The real Kubernetes definitions shipped with kubernetes-validate."""
    path = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.37.0-local" / "_definitions.json"
    return json.loads(path.read_text())["$defs"]


@pytest.fixture
def deployment() -> dict:
    """A Deployment with two containers, env, ports, args, labels, finalizers and a RollingUpdate strategy."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app:1",
                            "args": ["--one", "--two"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
                        },
                        {"name": "sidecar", "image": "side:1", "env": [{"name": "S", "value": "s"}]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def containers(obj: dict) -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec(obj)["containers"]}


def template_patch(**pod_spec_fields: Any) -> dict:
    return {"spec": {"template": {"spec": pod_spec_fields}}}


def directive_keys(value: Any) -> list[str]:
    """Every directive key anywhere in `value`."""
    if isinstance(value, dict):
        found = [k for k in value if k.startswith(DIRECTIVE_PREFIXES)]
        return found + [k for v in value.values() for k in directive_keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in directive_keys(v)]
    return []


# --- JSON merge patch (RFC 7386) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": 3}, {"a": 3}),
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"a": 1}, {"zzz": None}, {"a": 1}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": None, "d": 4}}, {"a": {"b": 1, "d": 4}}),
        ({"a": {"b": 1}}, {"a": {"x": {"y": None, "z": 1}}}, {"a": {"b": 1, "x": {"z": 1}}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": {"b": 1}}, {"a": "scalar"}, {"a": "scalar"}),
        ({"a": 1}, ["whole", "list"], ["whole", "list"]),
        ({"a": 1}, "text", "text"),
        (["not", "a", "map"], {"a": 1}, {"a": 1}),
        (None, {"a": {"b": None, "c": 1}}, {"a": {"c": 1}}),
    ],
)
def test_json_merge_patch(target, patch, expected):
    assert json_merge_patch(target, patch) == expected


def test_json_merge_patch_never_mutates_and_shares_nothing():
    target = {"a": {"b": [1, 2]}, "keep": {"x": 1}}
    patch = {"a": {"c": {"d": [3]}}, "keep": None}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = json_merge_patch(target, patch)
    assert result == {"a": {"b": [1, 2], "c": {"d": [3]}}}
    assert (target, patch) == (target_before, patch_before)
    result["a"]["b"].append(9)
    result["a"]["c"]["d"].append(9)
    assert (target, patch) == (target_before, patch_before)


# --- JSON patch (RFC 6902) --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "operations", "expected"),
    [
        ({"a": 1}, [{"op": "add", "path": "/b", "value": {"c": 2}}], {"a": 1, "b": {"c": 2}}),
        ({"a": 1}, [{"op": "add", "path": "/a", "value": None}], {"a": None}),
        ({"l": [1, 3]}, [{"op": "add", "path": "/l/1", "value": 2}], {"l": [1, 2, 3]}),
        ({"l": [1, 2]}, [{"op": "add", "path": "/l/2", "value": 3}], {"l": [1, 2, 3]}),
        ({"l": [1, 2]}, [{"op": "add", "path": "/l/-", "value": 3}], {"l": [1, 2, 3]}),
        ({"a": 1}, [{"op": "add", "path": "", "value": [1]}], [1]),
        ({"a": 1, "b": 2}, [{"op": "remove", "path": "/a"}], {"b": 2}),
        ({"l": [1, 2, 3]}, [{"op": "remove", "path": "/l/0"}], {"l": [2, 3]}),
        ({"a": {"b": 1}}, [{"op": "replace", "path": "/a/b", "value": [2]}], {"a": {"b": [2]}}),
        ({"l": [1, 2]}, [{"op": "replace", "path": "/l/1", "value": 9}], {"l": [1, 9]}),
        ({"a": 1}, [{"op": "replace", "path": "", "value": {"z": 0}}], {"z": 0}),
        ({"a": {"b": 1}, "c": {}}, [{"op": "move", "from": "/a/b", "path": "/c/d"}], {"a": {}, "c": {"d": 1}}),
        ({"l": [1, 2, 3]}, [{"op": "move", "from": "/l/0", "path": "/l/-"}], {"l": [2, 3, 1]}),
        ({"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
        ({"a": {"b": [1]}}, [{"op": "copy", "from": "/a", "path": "/c"}], {"a": {"b": [1]}, "c": {"b": [1]}}),
        ({"a": {"b": 1}}, [{"op": "test", "path": "/a", "value": {"b": 1}}], {"a": {"b": 1}}),
        ({"n": 1}, [{"op": "test", "path": "/n", "value": 1.0}], {"n": 1}),
        ({"a/b": 1, "m~n": 2}, [{"op": "replace", "path": "/a~1b", "value": 3}], {"a/b": 3, "m~n": 2}),
        ({"a/b": 1, "m~n": 2}, [{"op": "remove", "path": "/m~0n"}], {"a/b": 1}),
        ({"~1": 1}, [{"op": "test", "path": "/~01", "value": 1}], {"~1": 1}),
        ({"": {"x": 1}}, [{"op": "add", "path": "//y", "value": 2}], {"": {"x": 1, "y": 2}}),
    ],
)
def test_json_patch_operations(target, operations, expected):
    assert json_patch(target, operations) == expected


def test_json_patch_applies_operations_in_sequence():
    operations = [
        {"op": "add", "path": "/metadata/labels/tier", "value": "db"},
        {"op": "test", "path": "/metadata/labels/tier", "value": "db"},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec"},
        {"op": "remove", "path": "/metadata/labels/app"},
    ]
    result = json_patch({"metadata": {"labels": {"app": "x"}}}, operations)
    assert result == {"metadata": {"labels": {"tier": "db"}}, "spec": {"app": "x", "tier": "db"}}


@pytest.mark.parametrize(
    ("target", "operation"),
    [
        ({"a": 1}, {"op": "test", "path": "/a", "value": 2}),
        ({"a": 1}, {"op": "test", "path": "/a", "value": True}),
        ({"a": None}, {"op": "test", "path": "/b", "value": None}),
        ({"a": 1}, {"op": "remove", "path": "/b"}),
        ({"a": 1}, {"op": "replace", "path": "/b", "value": 1}),
        ({"a": 1}, {"op": "add", "path": "/missing/child", "value": 1}),
        ({"l": [1]}, {"op": "add", "path": "/l/2", "value": 1}),
        ({"l": [1]}, {"op": "add", "path": "/l/01", "value": 1}),
        ({"l": [1]}, {"op": "remove", "path": "/l/1"}),
        ({"l": [1]}, {"op": "remove", "path": "/l/-"}),
        ({"l": [1]}, {"op": "replace", "path": "/l/-1", "value": 0}),
        ({"a": {"b": 1}}, {"op": "move", "from": "/a", "path": "/a/c"}),
        ({"a": 1}, {"op": "move", "from": "/b", "path": "/c"}),
        ({"a": 1}, {"op": "copy", "from": "/b", "path": "/c"}),
        ({"a": 1}, {"op": "add", "path": "a", "value": 1}),
        ({"a": 1}, {"op": "add", "path": "/~2", "value": 1}),
        ({"a": 1}, {"op": "add", "path": "/b"}),
        ({"a": 1}, {"op": "copy", "path": "/b"}),
        ({"a": 1}, {"op": "frobnicate", "path": "/a"}),
        ({"a": 1}, {"path": "/a"}),
        ({"a": "text"}, {"op": "add", "path": "/a/b", "value": 1}),
    ],
)
def test_json_patch_failures_are_422(target, operation):
    before = copy.deepcopy(target)
    with pytest.raises(PatchError) as raised:
        json_patch(target, [operation])
    assert raised.value.code == 422
    assert target == before


@pytest.mark.parametrize("operations", [{"op": "add", "path": "/a", "value": 1}, "[]", None, [["add"]], [1]])
def test_json_patch_malformed_documents_are_400(operations):
    with pytest.raises(PatchError) as raised:
        json_patch({"a": 1}, operations)
    assert raised.value.code == 400
    assert isinstance(raised.value, ValueError)


def test_json_patch_failure_leaves_target_untouched_even_after_earlier_ops():
    target = {"a": [1, 2]}
    with pytest.raises(PatchError):
        json_patch(target, [{"op": "remove", "path": "/a/0"}, {"op": "test", "path": "/a/0", "value": 1}])
    assert target == {"a": [1, 2]}


def test_json_patch_never_mutates_and_shares_nothing():
    value = {"deep": [1]}
    target = {"a": {"b": [1, 2]}}
    operations = [{"op": "add", "path": "/v", "value": value}, {"op": "add", "path": "/a/b/-", "value": 3}]
    target_before, operations_before = copy.deepcopy(target), copy.deepcopy(operations)
    result = json_patch(target, operations)
    assert result == {"a": {"b": [1, 2, 3]}, "v": {"deep": [1]}}
    result["v"]["deep"].append(2)
    assert (target, operations) == (target_before, operations_before)


# --- strategic merge patch ----------------------------------------------------------------------------------------


def test_patching_one_container_image_keeps_the_other_containers_and_their_env(definitions, deployment):
    result = strategic_merge_patch(
        deployment, template_patch(containers=[{"name": "app", "image": "app:2"}]), definitions, DEPLOYMENT
    )
    assert [c["name"] for c in pod_spec(result)["containers"]] == ["app", "sidecar"]
    app = containers(result)["app"]
    assert app["image"] == "app:2"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert app["args"] == ["--one", "--two"]
    assert containers(result)["sidecar"] == {"name": "sidecar", "image": "side:1", "env": [{"name": "S", "value": "s"}]}


def test_adding_an_env_entry_by_name_keeps_existing_entries(definitions, deployment):
    patch = template_patch(
        containers=[{"name": "app", "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "x"}]}]
    )
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    env = containers(result)["app"]["env"]
    assert {e["name"]: e["value"] for e in env} == {"A": "1", "B": "x", "C": "3"}
    # apimachinery's mergeSortedSlice: patch items keep the patch order (C, B); live-only A goes before B, which
    # follows it in the live list, but not before C, which the live list does not know.
    assert [e["name"] for e in env] == ["C", "A", "B"]
    assert containers(result)["sidecar"]["env"] == [{"name": "S", "value": "s"}]


def test_new_list_item_without_set_element_order_goes_first_like_kubernetes(definitions, deployment):
    # As the "Update API Objects in Place Using kubectl patch" page shows: the added redis container comes first.
    result = strategic_merge_patch(
        deployment, template_patch(containers=[{"name": "redis", "image": "redis"}]), definitions, DEPLOYMENT
    )
    assert [c["name"] for c in pod_spec(result)["containers"]] == ["redis", "app", "sidecar"]
    assert containers(result)["redis"] == {"name": "redis", "image": "redis"}


def test_patch_list_order_wins_for_items_it_names(definitions, deployment):
    patch = template_patch(containers=[{"name": "sidecar", "image": "side:2"}, {"name": "app", "image": "app:2"}])
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert [(c["name"], c["image"]) for c in pod_spec(result)["containers"]] == [
        ("sidecar", "side:2"),
        ("app", "app:2"),
    ]


def test_set_element_order_reorders_and_is_dropped(definitions, deployment):
    patch = template_patch(
        **{
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "app:3"}],
        }
    )
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert [(c["name"], c["image"]) for c in pod_spec(result)["containers"]] == [
        ("sidecar", "side:1"),
        ("app", "app:3"),
    ]
    assert directive_keys(result) == []


def test_set_element_order_alone_reorders_primitives(definitions, deployment):
    patch = {"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}
    assert strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)["metadata"]["finalizers"] == ["b", "a"]


def test_set_element_order_contradicting_the_patch_list_is_rejected(definitions, deployment):
    patch = template_patch(
        **{
            "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "s"}, {"name": "app", "image": "a"}],
        }
    )
    with pytest.raises(PatchError):
        strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)


def test_patch_delete_directive_removes_a_container(definitions, deployment):
    patch = template_patch(containers=[{"name": "sidecar", "$patch": "delete"}])
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert [c["name"] for c in pod_spec(result)["containers"]] == ["app"]
    assert containers(result)["app"] == containers(deployment)["app"]


def test_patch_delete_needs_the_merge_key(definitions, deployment):
    with pytest.raises(PatchError):
        strategic_merge_patch(deployment, template_patch(containers=[{"$patch": "delete"}]), definitions, DEPLOYMENT)


@pytest.mark.parametrize(
    "items",
    [
        [{"name": "only", "image": "only:1"}, {"$patch": "replace"}],
        [{"$patch": "replace"}, {"name": "only", "image": "only:1"}],
        [{"name": "only", "image": "only:1"}, {"name": "ignored", "$patch": "replace"}],
    ],
)
def test_patch_replace_directive_replaces_the_containers_list(definitions, deployment, items):
    result = strategic_merge_patch(deployment, template_patch(containers=items), definitions, DEPLOYMENT)
    assert pod_spec(result)["containers"] == [{"name": "only", "image": "only:1"}]


def test_replace_directive_alone_empties_the_list(definitions, deployment):
    result = strategic_merge_patch(deployment, template_patch(volumes=[{"$patch": "replace"}]), definitions, DEPLOYMENT)
    assert pod_spec(result)["volumes"] == []


def test_ports_merge_by_container_port(definitions, deployment):
    patch = template_patch(
        containers=[{"name": "app", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 8080}]}]
    )
    ports = containers(strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT))["app"]["ports"]
    assert sorted(ports, key=lambda p: p["containerPort"]) == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"},
        {"containerPort": 443},
        {"containerPort": 8080},
    ]


def test_finalizers_merge_as_a_set(definitions, deployment):
    patch = {"metadata": {"finalizers": ["b", "c", "c"]}}
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert result["metadata"]["finalizers"] == ["a", "b", "c"]


def test_delete_from_primitive_list_removes_finalizers(definitions, deployment):
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert result["metadata"]["finalizers"] == ["b"]
    assert "$deleteFromPrimitiveList/finalizers" not in result["metadata"]


def test_delete_from_primitive_list_of_an_absent_list_adds_nothing(definitions, deployment):
    del deployment["metadata"]["finalizers"]
    result = strategic_merge_patch(
        deployment, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, definitions, DEPLOYMENT
    )
    assert "finalizers" not in result["metadata"]


def test_list_without_merge_strategy_is_replaced(definitions, deployment):
    patch = template_patch(containers=[{"name": "app", "args": ["--three"]}])
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert containers(result)["app"]["args"] == ["--three"]
    assert containers(result)["app"]["image"] == "app:1"


def test_null_deletes_a_label_and_other_keys(definitions, deployment):
    patch = {"metadata": {"labels": {"tier": None, "new": "yes"}}, "spec": {"replicas": None, "absent": None}}
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert result["metadata"]["labels"] == {"app": "web", "new": "yes"}
    assert "replicas" not in result["spec"]
    assert "absent" not in result["spec"]


def test_unknown_fields_merge_like_merge_patch(definitions, deployment):
    deployment["spec"]["x-extra"] = {"keep": 1, "drop": 2, "list": [1, 2]}
    patch = {"spec": {"x-extra": {"drop": None, "list": [3], "new": {"n": 1, "gone": None}}}}
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert result["spec"]["x-extra"] == {"keep": 1, "list": [3], "new": {"n": 1}}


def test_without_schema_maps_merge_and_lists_are_replaced():
    target = {"spec": {"items": [{"name": "a", "v": 1}], "finalizers": ["x"], "map": {"a": 1, "b": 2}}}
    patch = {
        "spec": {
            "items": [{"name": "a", "w": 2, "$patch": "delete", "$setElementOrder/x": [], "sub": {"$retainKeys": []}}],
            "finalizers": ["y"],
            "map": {"a": None, "c": 3},
        }
    }
    expected = {"spec": {"items": [{"name": "a", "w": 2, "sub": {}}], "finalizers": ["y"], "map": {"b": 2, "c": 3}}}
    assert strategic_merge_patch(target, patch, {}, None) == expected
    assert strategic_merge_patch(target, patch, {}, "com.example.v1.Unknown") == expected


def test_retain_keys_switches_rolling_update_to_recreate(definitions, deployment):
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    assert result["spec"]["replicas"] == 2


def test_without_retain_keys_rolling_update_survives(definitions, deployment):
    result = strategic_merge_patch(deployment, {"spec": {"strategy": {"type": "Recreate"}}}, definitions, DEPLOYMENT)
    assert result["spec"]["strategy"] == {"type": "Recreate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_retain_keys_must_list_every_field_the_patch_sets(definitions, deployment):
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}}
    with pytest.raises(PatchError) as raised:
        strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert raised.value.code == 400


def test_retain_keys_inside_a_merged_volume_switches_its_source(definitions, deployment):
    patch = template_patch(
        volumes=[{"name": "data", "$retainKeys": ["name", "configMap"], "configMap": {"name": "cm"}}]
    )
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert pod_spec(result)["volumes"] == [{"name": "data", "configMap": {"name": "cm"}}]


def test_map_replace_directive_replaces_the_map(definitions, deployment):
    patch = {"metadata": {"labels": {"$patch": "replace", "only": "this"}}}
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert result["metadata"]["labels"] == {"only": "this"}


def test_map_delete_directive_deletes_the_key(definitions, deployment):
    patch = {
        "spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}},
        "metadata": {"labels": {"$patch": "delete"}},
    }
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert result["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert "labels" not in result["metadata"]


def test_unknown_map_directive_is_rejected(definitions, deployment):
    with pytest.raises(PatchError) as raised:
        strategic_merge_patch(deployment, {"metadata": {"labels": {"$patch": "merge"}}}, definitions, DEPLOYMENT)
    assert raised.value.code == 400


def test_replace_strategy_map_is_replaced(definitions):
    pdb = {"spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1}}
    patch = {"spec": {"selector": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}}}
    result = strategic_merge_patch(pdb, patch, definitions, "io.k8s.api.policy.v1.PodDisruptionBudget")
    assert result["spec"] == {"selector": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}, "minAvailable": 1}


def test_merge_list_item_without_merge_key_is_rejected(definitions, deployment):
    with pytest.raises(PatchError):
        strategic_merge_patch(deployment, template_patch(containers=[{"image": "nameless"}]), definitions, DEPLOYMENT)


def test_dollar_fields_that_are_not_directives_survive(definitions):
    crd = {"spec": {"group": "g", "versions": [{"name": "v0"}]}}
    versions = [{"name": "v1", "schema": {"openAPIV3Schema": {"$ref": "#/x", "$schema": "s", "type": "object"}}}]
    result = strategic_merge_patch(
        crd,
        {"spec": {"versions": versions}},
        definitions,
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    )
    assert result == {"spec": {"group": "g", "versions": versions}}
    assert strategic_merge_patch({"a": {"x": 1}}, {"a": {"$ref": "r"}}, {}, None) == {"a": {"x": 1, "$ref": "r"}}


def test_top_level_delete_directive_empties_the_object(definitions, deployment):
    assert strategic_merge_patch(deployment, {"$patch": "delete"}, definitions, DEPLOYMENT) == {}


def test_non_object_patch_is_malformed(definitions, deployment):
    with pytest.raises(PatchError) as raised:
        strategic_merge_patch(deployment, ["not", "a", "map"], definitions, DEPLOYMENT)  # type: ignore[arg-type]
    assert raised.value.code == 400


def test_directives_never_reach_the_result_even_in_new_subtrees(definitions, deployment):
    del pod_spec(deployment)["volumes"]
    patch = {
        "metadata": {"annotations": {"$patch": "replace", "a": "1"}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {
                "spec": {
                    "volumes": [{"name": "gone", "$patch": "delete"}, {"name": "v", "emptyDir": {}}],
                    "containers": [
                        {
                            "name": "new",
                            "image": "n",
                            "env": [{"name": "E", "value": "e"}, {"name": "X", "$patch": "delete"}],
                        },
                        {"name": "app", "args": [], "$setElementOrder/env": [{"name": "B"}, {"name": "A"}]},
                    ],
                    "$setElementOrder/containers": [{"name": "new"}, {"name": "app"}, {"name": "sidecar"}],
                }
            },
        },
    }
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert directive_keys(result) == []
    assert result["metadata"]["annotations"] == {"a": "1"}
    assert pod_spec(result)["volumes"] == [{"name": "v", "emptyDir": {}}]
    assert [c["name"] for c in pod_spec(result)["containers"]] == ["new", "app", "sidecar"]
    assert containers(result)["new"]["env"] == [{"name": "E", "value": "e"}]
    assert [e["name"] for e in containers(result)["app"]["env"]] == ["B", "A"]


def test_strategic_merge_patch_never_mutates_its_inputs(definitions, deployment):
    patch = {
        "metadata": {"labels": {"tier": None}, "finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": template_patch(
                containers=[
                    {"name": "app", "env": [{"name": "A", "$patch": "delete"}]},
                    {"name": "sidecar", "$patch": "delete"},
                ]
            )["spec"]["template"],
        },
    }
    deployment_before, patch_before = copy.deepcopy(deployment), copy.deepcopy(patch)
    result = strategic_merge_patch(deployment, patch, definitions, DEPLOYMENT)
    assert (deployment, patch) == (deployment_before, patch_before)
    assert containers(result)["app"]["env"] == [{"name": "B", "value": "2"}]
    containers(result)["app"]["ports"].append({"containerPort": 1})
    result["metadata"]["finalizers"].append("z")
    assert deployment == deployment_before
