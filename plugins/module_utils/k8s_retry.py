# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Which Kubernetes API failures are worth retrying: the ones an API server gives while it restarts, is replaced
behind a load balancer or sheds load (API Priority and Fairness answers 429 with Retry-After), and the connection
failures of the same moments. Anything else (403, 404, 409, 422, a bad kubeconfig) fails at once.

Shared by the ``k8s_read`` lookup (exceptions) and the ``k8s_transient`` test (kubernetes.core module results).
"""

from __future__ import annotations

import re

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
# HTTP reason phrases kubernetes.core puts in a failed module's `reason`.
TRANSIENT_REASONS = frozenset(
    {"Too Many Requests", "Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout"}
)
# Connection failures as urllib3 and the kubernetes client word them, and the Status body's code.
_TRANSIENT_TEXT = re.compile(
    r"Connection refused|Connection reset|Connection aborted|RemoteDisconnected|Max retries exceeded"
    r"|Read timed out|timed out|EOF occurred|\"code\":\s*(?:429|500|502|503|504)\b"
    r"|\((?:429|500|502|503|504)\)"
)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception (or one it was raised from) carries, if any."""
    seen = 0
    while exc is not None and seen < 5:
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            return status
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def transient_exception(exc: BaseException) -> bool:
    """True for an API error with a transient status, or a connection-level failure (no status at all)."""
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    current, seen = exc, 0
    while current is not None and seen < 5:
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        module = type(current).__module__ or ""
        if module.startswith("urllib3"):  # MaxRetryError, ProtocolError, NewConnectionError, ReadTimeoutError
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return bool(_TRANSIENT_TEXT.search(str(exc)))


def transient_result(result: object) -> bool:
    """True for a failed kubernetes.core module result whose failure is transient (see the module's docstring)."""
    if not isinstance(result, dict) or not result.get("failed"):
        return False
    if result.get("status") in TRANSIENT_STATUS or result.get("reason") in TRANSIENT_REASONS:
        return True
    return bool(_TRANSIENT_TEXT.search(str(result.get("msg", ""))))
