"""A client that keeps working while the cluster is disrupted: what the HA tests count failed requests with.

`Poller` calls one request function over and over in a thread (no retries: a request that fails is counted as
failed, as a user's script would see it) and keeps each outcome with its time, so a test can say how many
requests failed, when the first and the last failure happened relative to the disruption, and what they said.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Outcome:
    at: float  # time.monotonic() when the request started
    ok: bool
    detail: str


@dataclass
class Poller:
    request: Callable[[], object]  # raises on failure
    interval: float = 0.1
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                detail = str(self.request())[:120]
                ok = True
            except Exception as exc:
                detail, ok = f"{type(exc).__name__}: {exc}"[:300], False
            self.outcomes.append(Outcome(started, ok, detail))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def wait_for(self, successes: int, timeout: float = 60) -> None:
        """Until `successes` requests in a row have succeeded (the client works before the disruption)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tail = self.outcomes[-successes:]
            if len(tail) == successes and all(o.ok for o in tail):
                return
            time.sleep(self.interval)
        raise AssertionError(f"the client never had {successes} successes in a row: {self.failures()[-3:]}")

    def failures(self, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and o.at >= since]

    def summary(self, since: float = 0.0) -> dict[str, object]:
        """Requests and failures from `since` on; first/last failure in seconds after `since`."""
        seen = [o for o in self.outcomes if o.at >= since]
        failed = [o for o in seen if not o.ok]
        return {
            "requests": len(seen),
            "failed": len(failed),
            "first_failure_s": round(failed[0].at - since, 1) if failed else None,
            "last_failure_s": round(failed[-1].at - since, 1) if failed else None,
            "errors": sorted({o.detail.split(":")[0] for o in failed}),
        }
