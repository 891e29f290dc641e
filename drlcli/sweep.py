"""Hydra callbacks (a run directory of its own for every run; the end-of-sweep summary table)
and job failure records."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from drlcli.results import read_result, record_result

# Filled by the summary callback; `drl train -m` exits non-zero when a job failed.
LAST_SUMMARY: list[dict[str, Any]] = []


def write_failure(run_dir: Path, error: str, step: int | None = None) -> None:
    """Record a failed run in ``run_dir/result.json``. A result already there (an earlier
    segment of a resumed run) is kept under ``segments``, as write_result keeps it: a failed
    resume must not erase the figures of the run it continued."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "run_dir": str(run_dir),
        "status": "failed",
        "error": error,
        "global_step": step,
        "eval_mean_return": None,
        "wall_time_s": None,
    }
    record_result(run_dir, record, read_result(run_dir))


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


def claim_dir(path: Path) -> Path:
    """Create ``path``, or ``path-2``, ``path-3``, ... when it exists, and return the one
    created. ``mkdir`` without ``exist_ok`` is atomic, so two processes never get the same one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


class ClaimRunDir(Callback):
    """Gives every run (and every sweep) a directory of its own.

    The default names (conf/config.yaml) have a one-second resolution: two `drl train` runs of
    the same algo, env and seed started in the same second got one directory, and the second
    run's checkpoint pruning deleted the first's checkpoints, its result.json replaced the
    first's and both wrote interleaved TensorBoard files (found by a break pass). Before Hydra
    creates the directory, this claims it atomically and appends ``-2``, ``-3``, ... when it is
    taken. A directory the user names (``hydra.run.dir=...``/``hydra.sweep.dir=...``, which
    ``resume=RUN_DIR`` also sets) is used as given: writing into it is what they asked for."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "sweep")

    @staticmethod
    def _claim(config: DictConfig, mode: str) -> None:
        from hydra.core.hydra_config import HydraConfig

        key = f"hydra.{mode}.dir"
        user_overrides = list(config.hydra.overrides.hydra)
        if any(str(o).split("=", 1)[0].lstrip("+~") == key for o in user_overrides):
            return
        HydraConfig.instance().set_config(config)  # for ${hydra:...} in the name
        wanted = Path(str(OmegaConf.select(config, key)))
        claimed = claim_dir(wanted)
        if mode == "run":
            # The run's files go inside: Hydra creates it with exist_ok, as for any run.
            with read_write(config.hydra.run), open_dict(config.hydra.run):
                config.hydra.run.dir = str(claimed)
            return
        # A sweep's jobs re-compose their config from hydra.overrides.hydra (and copy the
        # resolver cache for ${now:...}); the claimed directory must reach them as an override.
        quoted = str(claimed).replace("\\", "\\\\").replace("'", "\\'")
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.sweep.dir = str(claimed)
            config.hydra.overrides.hydra = [*user_overrides, f"{key}='{quoted}'"]
