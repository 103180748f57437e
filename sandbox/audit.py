"""The requests the sandbox's API server received, from its own audit log (kube-apiserver --audit-log-path).

The audit policy (sandbox/kubecluster.py) keeps every request but those of the node and the control plane
themselves (service accounts included, but kube-system's), at the Metadata level: who, which verb, which resource,
dry run or not, the answer's status. Tests use it to prove that a role sent no write, or no request at all.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
HTTP_METHOD = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETE",
               "get": "GET", "list": "GET", "watch": "GET"}  # fmt: skip


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def entries(audit_log: str | Path, since: float = 0.0, user: str | None = "kubernetes-admin") -> list[dict]:
    """Requests received at or after `since` (epoch seconds), oldest first, by `user` (None: anyone logged).

    Each: time, verb, method, path, namespace, resource, name, dry_run, code, user.
    """
    path = Path(audit_log)
    found = []
    # The log rotates at 100 MB (one backup is kept, named with a timestamp); a test run stays far below.
    for file in [*sorted(path.parent.glob(path.stem + "-*" + path.suffix)), path]:
        if not file.exists():
            continue
        for line in file.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            received = _epoch(event["requestReceivedTimestamp"])
            who = event.get("user", {}).get("username")
            if received < since or (user is not None and who != user):
                continue
            uri = urlsplit(event.get("requestURI", ""))
            ref = event.get("objectRef", {})
            found.append({
                "time": received,
                "verb": event.get("verb"),
                "method": HTTP_METHOD.get(event.get("verb", ""), event.get("verb", "").upper()),
                "path": uri.path,
                "namespace": ref.get("namespace"),
                "resource": ref.get("resource"),
                "name": ref.get("name"),
                "dry_run": "All" in parse_qs(uri.query).get("dryRun", []),
                "code": event.get("responseStatus", {}).get("code"),
                "user": who,
            })  # fmt: skip
    return sorted(found, key=lambda entry: entry["time"])


def writes(
    audit_log: str | Path, since: float, namespace: str | None = None, user: str | None = "kubernetes-admin"
) -> list[str]:
    """`user`'s writes since `since` (dry runs excluded), as "METHOD path", in namespace `namespace` if given."""
    return [
        f"{entry['method']} {entry['path']}"
        for entry in entries(audit_log, since, user)
        if entry["verb"] in WRITE_VERBS
        and not entry["dry_run"]
        and (namespace is None or entry["namespace"] == namespace)
    ]
