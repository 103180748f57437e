# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Lookup ``k8s_read``: kubernetes.core's ``k8s`` lookup, retried while the API server is briefly unavailable."""

from __future__ import annotations

# ruff: noqa: E402 - the documentation comes first, as ansible-doc and validate-modules expect

DOCUMENTATION = r"""
name: k8s_read
version_added: 0.1.0
short_description: Read Kubernetes objects, retrying transient API errors
description:
  - Runs the M(kubernetes.core.k8s) lookup (C(kubernetes.core.k8s)) with the same options and returns what it returns
    (the object, or the list of objects; an empty list when the object does not exist).
  - A read that fails with HTTP 429, 500, 502, 503 or 504, or cannot reach the API server (refused, reset, timed
    out), is tried again up to O(retries) times, O(delay) seconds apart (longer when a 429 asks for it with
    Retry-After). Any other error, and the last transient one, fails the task with the API server named.
  - Ansible retries a task (C(until)) only after its arguments are templated, so a lookup that fails stops the
    play at once; the roles of this collection read through this lookup instead.
author:
  - carbon254 platform team (@carbon254)
options:
  retries:
    description: How many times a transient failure is retried.
    type: int
    default: 10
  delay:
    description: Seconds between tries.
    type: float
    default: 3
  _extra:
    description: Every option of the C(kubernetes.core.k8s) lookup (kind, api_version, resource_name, namespace,
      label_selector, kubeconfig, context, ...).
    type: raw
notes:
  - Built on the C(kubernetes.core.k8s) lookup, not a client of its own.
"""

EXAMPLES = r"""
- name: Read the namespace, riding out an API server restart
  ansible.builtin.set_fact:
    namespace: "{{ query('carbon254.mlflow.k8s_read', api_version='v1', kind='Namespace', resource_name='mlflow',
                   retries=10, delay=3) }}"
"""

RETURN = r"""
_list:
  description: The objects read, as the C(kubernetes.core.k8s) lookup returns them.
  type: list
  elements: dict
"""

import time

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display
from ansible_collections.carbon254.mlflow.plugins.module_utils.k8s_retry import status_of, transient_exception

try:
    from ansible_collections.kubernetes.core.plugins.lookup.k8s import KubernetesLookup
except ImportError as exc:  # kubernetes.core is a dependency (galaxy.yml); said at run time, not at import
    KubernetesLookup = None
    KUBERNETES_CORE_ERROR: ImportError | None = exc
else:
    KUBERNETES_CORE_ERROR = None

display = Display()
MAX_RETRY_AFTER = 30.0


def _retry_after(exc: BaseException) -> float:
    headers = getattr(exc, "headers", None) or {}
    try:
        return min(float(headers.get("Retry-After", 0)), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return 0.0


def _what(kwargs: dict) -> str:
    name = "/".join(str(kwargs[key]) for key in ("namespace", "resource_name") if kwargs.get(key))
    return f"{kwargs.get('kind', 'object')} {name}".strip()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if KubernetesLookup is None:
            raise AnsibleError(f"k8s_read needs the kubernetes.core collection: {KUBERNETES_CORE_ERROR}")
        retries = int(kwargs.pop("retries", 10))
        delay = float(kwargs.pop("delay", 3))
        if retries < 0 or delay < 0:
            raise AnsibleError("k8s_read: retries and delay must not be negative")
        attempt = 0
        while True:
            try:
                return KubernetesLookup().run(terms, variables=variables, **kwargs)
            except AnsibleError:
                raise
            except Exception as exc:  # classified below; everything else is raised again
                if not transient_exception(exc):
                    raise
                status = status_of(exc)
                cause = f"HTTP {status}" if status else type(exc).__name__
                if attempt >= retries:
                    raise AnsibleError(
                        f"the Kubernetes API did not answer reading {_what(kwargs)}: {cause} on each of "
                        f"{attempt + 1} tries, {delay:g}s apart (last: {str(exc).strip()[:300]})"
                    ) from exc
                attempt += 1
                display.v(f"k8s_read: {_what(kwargs)}: {cause}, try {attempt + 1} of {retries + 1}")
                time.sleep(max(delay, _retry_after(exc)))
