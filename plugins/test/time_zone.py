# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Test ``time_zone``: a name in the IANA time zone database, as a CronJob's ``spec.timeZone`` needs."""

from __future__ import annotations

import functools
import zoneinfo


@functools.lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(name: object) -> bool:
    """True for a zone the controller's database knows (e.g. Etc/UTC, Europe/Berlin); without a database here
    (no tzdata), true for any non-empty name, which the Kubernetes API server then checks against its own."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        return False
    zones = _zones()
    return name in zones if zones else True


class TestModule:
    """Time zone tests for carbon254.mlflow roles."""

    def tests(self) -> dict:
        return {"time_zone": time_zone}
