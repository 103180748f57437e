# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Filter ``k8s_quantity``: a Kubernetes resource quantity (``500m``, ``1Gi``, ``2e3``) as a number."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from ansible.errors import AnsibleFilterError

# Suffixes of resource.Quantity (k8s.io/apimachinery/pkg/api/resource): binary SI, decimal SI, and exponents.
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal("1e3"),
            "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


def k8s_quantity(value: object) -> float:
    """Return the quantity as a float in base units (cores or bytes); raise on anything Kubernetes would refuse."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise AnsibleFilterError(f"k8s_quantity: {text!r} is not a Kubernetes quantity (e.g. 500m, 1, 1Gi, 512Mi)")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the pattern already guarantees a number
        raise AnsibleFilterError(f"k8s_quantity: {text!r} is not a number") from exc
    suffix = match.group(2) or ""
    if suffix in _BINARY:
        return float(number * _BINARY[suffix])
    if suffix in _DECIMAL:
        return float(number * _DECIMAL[suffix])
    return float(number * (Decimal(10) ** int(suffix[1:])))


class FilterModule:
    """Kubernetes helpers for carbon254.mlflow roles."""

    def filters(self) -> dict:
        """Map filter names to functions."""
        return {"k8s_quantity": k8s_quantity}
