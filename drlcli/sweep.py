"""Multirun support: the end-of-sweep summary table (a Hydra callback) and job failure records."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

# Filled by the summary callback; `drl train -m` exits non-zero when a job failed.
LAST_SUMMARY: list[dict[str, Any]] = []


def write_failure(run_dir: Path, error: str, step: int | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "run_dir": str(run_dir),
        "status": "failed",
        "error": error,
        "global_step": step,
        "eval_mean_return": None,
        "wall_time_s": None,
    }
    (run_dir / "result.json").write_text(json.dumps(record, indent=2) + "\n")


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir`` (in job order)."""
    import yaml

    rows = []
    for hydra_dir in sorted(sweep_dir.glob("*/.hydra"), key=lambda p: _job_num(p.parent.name)):
        job_dir = hydra_dir.parent
        overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
        result_file = job_dir / "result.json"
        if result_file.is_file():
            result = json.loads(result_file.read_text())
        else:  # killed, or crashed outside drl's own error handling
            result = {"status": "no result", "error": "the job wrote no result.json"}
        rows.append({"job": job_dir.name, "overrides": " ".join(overrides), **result})
    return rows


def _job_num(name: str) -> int:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def render_summary(rows: list[dict[str, Any]], title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from drlcli.logger import make_console

    # Show what varies between jobs; what all of them share goes in the caption. Overrides are
    # not rich markup: `env.imports=[mypkg]` would lose its brackets.
    split = [escape(r["overrides"]).split() for r in rows]
    common = set.intersection(*(set(s) for s in split)) if split else set()
    table = Table(title=title, title_justify="left")
    for col in ("#", "overrides", "status", "final eval return", "steps", "wall (s)"):
        table.add_column(
            col, justify="left" if col in ("overrides", "status") else "right", overflow="fold"
        )
    for i, row in enumerate(rows):
        ret = row.get("eval_mean_return")
        ret_s = "-" if ret is None or (isinstance(ret, float) and math.isnan(ret)) else f"{ret:.2f}"
        std = row.get("eval_std_return")
        if ret_s != "-" and std is not None:
            ret_s += f" +- {std:.2f}"
        status = str(row.get("status"))
        if row.get("error"):
            status += f": {escape(str(row['error'])[:80])}"
        wall = row.get("wall_time_s")
        table.add_row(
            str(i),
            " ".join(o for o in split[i] if o not in common) or "(defaults)",
            status,
            ret_s,
            str(row.get("global_step") or "-"),
            f"{wall:.1f}" if isinstance(wall, float) else "-",
        )
    console = make_console()
    console.print(table)
    if common:  # a line, not a caption: a caption wraps at the table's width
        console.print("all jobs: " + " ".join(sorted(common)))


class MultirunSummary(Callback):
    """Prints one row per job when a multirun ends: overrides, final eval, steps, time, status."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = collect_results(sweep_dir)
        LAST_SUMMARY[:] = rows
        if rows:
            render_summary(rows, f"drl multirun summary: {sweep_dir}")
            (sweep_dir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
