"""Fixtures shared by every test directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox import Sandbox  # noqa: E402


@pytest.fixture(scope="session")
def sandbox_facts() -> dict:
    """Connection facts of the shared sandbox (default state dir and ports).

    Reuses a running sandbox (as `make test` starts one for all stages); otherwise starts it and stops it again
    when the session ends, whatever the tests did.
    """
    box = Sandbox()
    result = box.up()
    try:
        yield box.facts()
    finally:
        if result.started:
            box.down()
