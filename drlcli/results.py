"""``result.json``: how a run ended, one file per run directory (read by resume, sweeps, drl
compare and drl tune). Light on imports: `drl compare` reads results without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Statuses of runs that ran to their end (the others: interrupted, failed, pruned).
FINISHED = ("finished", "solved")


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/result.json`` as a dict, or None when there is none or it cannot be read."""
    try:
        data = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_result(run_dir: Path, record: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """Write ``record`` as ``run_dir/result.json``; ``previous`` (the file's earlier content,
    a resumed run's earlier segment) is kept under ``segments``, oldest first (issue #16)."""
    if previous is not None:
        record["segments"] = [*previous.pop("segments", []), previous]
    (run_dir / "result.json").write_text(json.dumps(record, indent=2) + "\n")
