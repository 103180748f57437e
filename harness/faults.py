"""Faults injected for real into the sandbox's services: a store stopped, then started again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox import Sandbox, SandboxConfig


@contextmanager
def stopped(facts: dict, name: str) -> Iterator[None]:
    """The sandbox's `name` service (postgres, s3) stopped; started again (`up`, data kept) whatever happens inside."""
    sandbox = Sandbox(SandboxConfig(state_dir=Path(facts["state_dir"])))
    assert sandbox.service(name).stop(), f"the sandbox's {name} was not running"
    try:
        yield
    finally:
        sandbox.up()
