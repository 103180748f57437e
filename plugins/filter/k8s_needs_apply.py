# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Filter ``k8s_needs_apply``: whether applying a manifest would change the object in the cluster.

kubernetes.core's client-side apply sends a PATCH for every object that holds a list (containers, ports, ...),
even when nothing changed, because its list merge returns the whole list (module_utils/apply.py, `list_merge`).
The server then changes nothing, but it is still a write on every run. This filter lets a role read first and
apply only what differs: the object is missing, was last applied from another definition (the
``kubectl.kubernetes.io/last-applied-configuration`` annotation apply keeps), or drifted from it in the cluster.
"""

from __future__ import annotations

import json

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _contains(actual: object, desired: object) -> bool:
    """Every field of `desired` is in `actual` with the same value; the server may have added defaults."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(_contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return actual == desired


def k8s_needs_apply(desired: dict, found: object) -> bool:
    """True unless `found` (an object, or the `resources` list of k8s_info) already matches `desired`."""
    if isinstance(found, list):
        found = found[0] if found else None
    if not found:
        return True
    annotations = (found.get("metadata") or {}).get("annotations") or {}
    last_applied = annotations.get(LAST_APPLIED)
    if last_applied is None:
        return True
    if json.loads(last_applied) != json.loads(json.dumps(desired)):
        return True
    return not _contains(found, desired)


class FilterModule:
    """Kubernetes apply helpers for carbon254.mlflow roles."""

    def filters(self) -> dict:
        """Map filter names to functions."""
        return {"k8s_needs_apply": k8s_needs_apply}
