"""What the reliability tests tried and what happened, for docs/reliability.md (`make evidence`, bench/evidence.py).

Tests call `record()` after their assertions passed; it writes only when EVIDENCE_FILE is set (bench/evidence.py
sets it), one JSON object per line, so a plain test run leaves nothing behind.
"""

from __future__ import annotations

import json
import os


def record(kind: str, **fields: object) -> None:
    """Append {kind, **fields} to EVIDENCE_FILE, when set."""
    path = os.environ.get("EVIDENCE_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"kind": kind, **fields}, default=str) + "\n")
