"""The time_zone test plugin: IANA names known, anything else refused."""

from __future__ import annotations

import pytest
from ansible_collections.carbon254.mlflow.plugins.test import time_zone as plugin


@pytest.mark.parametrize("name", ["Etc/UTC", "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_known_zones(name):
    assert plugin.time_zone(name)


@pytest.mark.parametrize("name", ["Mars/Olympus", "utc+2", "", " Etc/UTC", "Europe/Berlin ", None, 3])
def test_unknown_or_malformed(name):
    assert not plugin.time_zone(name)


def test_without_a_database_any_name_passes(monkeypatch):
    monkeypatch.setattr(plugin, "_zones", frozenset)
    assert plugin.time_zone("Mars/Olympus")
    assert not plugin.time_zone("")


def test_registered_as_a_jinja_test():
    assert plugin.TestModule().tests()["time_zone"] is plugin.time_zone
