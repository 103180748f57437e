"""CustomResourceDefinition bundles for the Kubernetes API emulator: `python -m sandbox crds install|remove|list`.

A bundle is a directory of CRD manifests under `sandbox/k8s/crds/<bundle>/` (one CRD per file). Nothing is
installed by `up`: a test or a person installs a bundle when the scenario wants it, so roles can be tested with
and without, say, the Prometheus Operator present. Everything goes through the running emulator's HTTP API with
the bearer token from `facts.json`, as `kubectl apply` would:

- install: GET each CRD; absent → POST; present with another spec, labels or annotations → PUT; identical → no
  request at all (a second install changes nothing, not even a resourceVersion). Then it waits until discovery
  (`/apis/<group>/<version>`) lists every plural and each CRD is `Established`.
- remove: DELETE each CRD (absent is fine; the emulator deletes its custom resources with it) and wait until
  discovery no longer lists the plurals.

Bundles: `prometheus-operator` (ServiceMonitor, PodMonitor, PrometheusRule of monitoring.coreos.com/v1; made by
scripts/gen-prometheus-operator-crds.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .procs import SandboxError, wait_until

BUNDLE_DIR = Path(__file__).resolve().parent / "k8s" / "crds"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def bundles() -> list[str]:
    """The bundles shipped with the sandbox."""
    return sorted(p.name for p in BUNDLE_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def load(bundle: str) -> list[dict]:
    """The CRDs of `bundle`, in file order."""
    directory = BUNDLE_DIR / bundle
    if bundle not in bundles():
        raise SandboxError(f"no CRD bundle {bundle!r}; bundles: {', '.join(bundles())}")
    crds = []
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                crds.append(document)
    return crds


class _Api:
    """Just enough of a client: JSON over HTTP with the sandbox's bearer token."""

    def __init__(self, facts: dict) -> None:
        kube = facts.get("kubernetes", facts)  # the whole facts.json, or its `kubernetes` section
        try:
            self.url, self.token = kube["url"].rstrip("/"), kube["token"]
        except (KeyError, AttributeError) as exc:
            raise SandboxError("the facts name no Kubernetes API (url, token): is the sandbox up?") from exc

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the sandbox's loopback URL
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return exc.code, json.loads(payload)
            except ValueError:
                return exc.code, {"message": payload.decode(errors="replace")}
        except urllib.error.URLError as exc:
            raise SandboxError(f"the Kubernetes API at {self.url} does not answer ({exc.reason}): is it up?") from exc

    def expect(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
        status, answer = self.call(method, path, body)
        if status not in ok:
            message = answer.get("message", answer) if isinstance(answer, dict) else answer
            raise SandboxError(f"{method} {path}: {status} {message}")
        return status, answer


def _served(crd: dict) -> list[tuple[str, str, str]]:
    spec = crd["spec"]
    return [(spec["group"], v["name"], spec["names"]["plural"]) for v in spec["versions"] if v.get("served")]


def _discovered(api: _Api, group: str, version: str) -> set[str]:
    status, answer = api.call("GET", f"/apis/{group}/{version}")
    return {r["name"] for r in answer.get("resources", [])} if status == 200 else set()


def _established(crd: dict) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _same(wanted: dict, current: dict) -> bool:
    """True when applying `wanted` would change nothing: same spec, its labels and annotations all present."""
    if wanted["spec"] != current.get("spec"):
        return False
    for field in ("labels", "annotations"):
        have = current["metadata"].get(field) or {}
        if any(have.get(k) != v for k, v in (wanted["metadata"].get(field) or {}).items()):
            return False
    return True


def install(facts: dict, bundle: str, timeout: float = 30.0) -> dict[str, str]:
    """Create or update the CRDs of `bundle`; wait until their kinds are served.

    Returns each CRD's name → "created", "configured" or "unchanged".
    """
    api = _Api(facts)
    results: dict[str, str] = {}
    for crd in load(bundle):
        name = crd["metadata"]["name"]
        status, current = api.expect("GET", f"{CRDS}/{name}", ok=(200, 404))
        if status == 404:
            api.expect("POST", CRDS, crd)
            results[name] = "created"
        elif _same(crd, current):
            results[name] = "unchanged"
        else:
            metadata = dict(current["metadata"])
            for field in ("labels", "annotations"):
                metadata[field] = {**(metadata.get(field) or {}), **(crd["metadata"].get(field) or {})}
            body = {**crd, "metadata": metadata}
            _, updated = api.expect("PUT", f"{CRDS}/{name}", body)
            changed = updated["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
            results[name] = "configured" if changed else "unchanged"
    crds = load(bundle)

    def served() -> bool:
        for crd in crds:
            _, current = api.expect("GET", f"{CRDS}/{crd['metadata']['name']}")
            if not _established(current):
                return False
            for group, version, plural in _served(crd):
                if plural not in _discovered(api, group, version):
                    return False
        return True

    wait_until(served, timeout, f"the kinds of CRD bundle {bundle!r}", interval=0.1)
    return results


def remove(facts: dict, bundle: str, timeout: float = 30.0) -> dict[str, str]:
    """Delete the CRDs of `bundle` (and so their custom resources); wait until their kinds are gone.

    Returns each CRD's name → "deleted" or "absent".
    """
    api = _Api(facts)
    results: dict[str, str] = {}
    crds = load(bundle)
    for crd in crds:
        name = crd["metadata"]["name"]
        status, _ = api.expect("DELETE", f"{CRDS}/{name}", ok=(200, 202, 404))
        results[name] = "absent" if status == 404 else "deleted"

    def gone() -> bool:
        for crd in crds:
            for group, version, plural in _served(crd):
                if plural in _discovered(api, group, version):
                    return False
        return True

    wait_until(gone, timeout, f"the removal of CRD bundle {bundle!r}", interval=0.1)
    return results


def status(facts: dict) -> dict[str, dict[str, str]]:
    """Each bundle → each of its CRDs → "installed", "different" (another spec is served) or "absent"."""
    api = _Api(facts)
    report: dict[str, dict[str, str]] = {}
    for bundle in bundles():
        report[bundle] = {}
        for crd in load(bundle):
            name = crd["metadata"]["name"]
            code, current = api.expect("GET", f"{CRDS}/{name}", ok=(200, 404))
            report[bundle][name] = "absent" if code == 404 else ("installed" if _same(crd, current) else "different")
    return report
