"""TensorBoard writer + console display. Algorithms return metric dicts; only the runner calls
this module. The x-axis of every scalar is the global env step."""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# result.json's status -> TensorBoard's HPARAMS session status (interrupted: none written).
SESSION_STATUS = {
    "finished": "STATUS_SUCCESS",
    "solved": "STATUS_SUCCESS",
    "pruned": "STATUS_SUCCESS",
    "failed": "STATUS_FAILURE",
}


def _session_end(status: str) -> Any:
    """TensorBoard's HPARAMS session-end record with ``status`` (an api_pb2.Status name), built
    from tensorboard's protos as torch's ``hparams`` helper does (tensorboard's own
    ``session_end_pb`` needs TensorFlow)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(status), end_time_secs=time.time()
        ),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=meta)])


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b': v}; values become bool/int/float/str (TensorBoard hparams types)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    key = prefix[:-1]
    if d is None:
        out[key] = "None"
    elif isinstance(d, bool | int | float | str):
        out[key] = d
    else:
        out[key] = str(d)
    return out


HPARAM_METRICS = ("eval/mean_return", "charts/episodic_return")

# Width of output that is not a terminal (pipes, CI, cluster logs) when COLUMNS is unset: rich
# would use 80 columns and cut run directories with "…" and split table cells over lines.
# Tables take only the width their content needs, so a wide limit costs nothing.
PLAIN_WIDTH = 400


def make_console(stderr: bool = False) -> Console:
    """The rich Console every drl command prints through. On a terminal: the terminal's width.
    Otherwise: ``$COLUMNS`` when set (a positive integer), else :data:`PLAIN_WIDTH` columns."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PLAIN_WIDTH
        console = Console(stderr=stderr, width=width)
    return console


class Logger:
    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        tensorboard: bool = True,
        progress: str = "auto",
        console_every_s: float = 10.0,
        console: Console | None = None,
        title: str = "",
        start_step: int = 0,
        purge_step: int | None = None,
    ):
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.console = console or make_console()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                log_dir=str(run_dir), max_queue=1000, flush_secs=30, purge_step=purge_step
            )
        self._pending: dict[str, float] = {}
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.last_eval: float | None = None
        self.episodes = 0
        if progress == "auto":
            progress = "rich" if self.console.is_terminal else "plain"
        self.mode = progress
        self.console_every_s = console_every_s
        self._last_line = 0.0
        self._t0 = time.perf_counter()
        self._start_step = start_step
        self._step = start_step
        self._progress: Progress | None = None
        if self.mode == "rich":
            self._progress = Progress(
                TextColumn(f"[bold]{title}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TextColumn("{task.fields[sps]:>6} SPS"),
                TextColumn("return {task.fields[ret]}"),
                TextColumn("eval {task.fields[ev]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                refresh_per_second=4,
            )
            self._task = self._progress.add_task(
                "train", total=total_steps, completed=start_step, sps="-", ret="-", ev="-"
            )
            self._progress.start()

    # --- scalars --------------------------------------------------------------------------
    def record(self, key: str, value: float) -> None:
        self._pending[key] = float(value)

    def record_dict(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.record(k, v)

    def episode(self, ret: float, length: int, step: int) -> None:
        self.episodes += 1
        self.recent_returns.append(ret)
        if self.writer is not None:
            self.writer.add_scalar("charts/episodic_return", ret, step)
            self.writer.add_scalar("charts/episodic_length", length, step)

    def dump(self, step: int) -> None:
        if self.writer is not None:
            for k, v in self._pending.items():
                if math.isfinite(v):
                    self.writer.add_scalar(k, v, step)
        self._pending.clear()

    def sps(self, step: int) -> float:
        elapsed = time.perf_counter() - self._t0
        return (step - self._start_step) / elapsed if elapsed > 0 else 0.0

    @property
    def mean_recent_return(self) -> float | None:
        if not self.recent_returns:
            return None
        return sum(self.recent_returns) / len(self.recent_returns)

    # --- console --------------------------------------------------------------------------
    def progress(self, step: int) -> None:
        self._step = step
        sps = self.sps(step)
        ret = self.mean_recent_return
        ret_s = f"{ret:8.2f}" if ret is not None else "       -"
        ev_s = f"{self.last_eval:.2f}" if self.last_eval is not None else "-"
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=min(step, self.total_steps),
                sps=f"{sps:.0f}",
                ret=ret_s,
                ev=ev_s,
            )
        elif self.mode == "plain":
            now = time.perf_counter()
            if now - self._last_line >= self.console_every_s:
                self._last_line = now
                self.line(
                    f"step {step:>9}/{self.total_steps}  SPS {sps:7.0f}  "
                    f"mean return(20) {ret_s.strip()}  eval {ev_s}"
                )

    def line(self, text: str) -> None:
        """Print one line (start line, notes, warnings): in every progress mode, ``none`` too."""
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, flush=True, file=sys.stdout)

    def eval_result(self, step: int, mean: float, std: float, n: int) -> None:
        self.last_eval = mean
        self.record("eval/mean_return", mean)
        self.record("eval/std_return", std)
        if self.mode != "none":  # progress output: what log.progress=none silences
            self.line(f"eval @ {step}: mean return {mean:.2f} +- {std:.2f} over {n} episodes")

    # --- hparams ---------------------------------------------------------------------------
    def hparams(self, params: dict[str, Any]) -> None:
        """Log the run's hyperparameters for TensorBoard's HPARAMS tab, into this run's own
        event file (SummaryWriter.add_hparams would open a separate sub-run).

        Only the session records are written, no experiment record: TensorBoard then builds the
        experiment from all runs under its logdir, marks the keys whose values differ between
        runs (``differs``) and lists those first — its HPARAMS table shows the first five by
        default. A per-run experiment record (what ``add_hparams`` writes) would win instead,
        with every key marked constant, sorted by name (activation, adam_eps, ...).
        """
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hp_summary

        metrics = {m: 0.0 for m in HPARAM_METRICS}
        # The session's end (its status) is written by close(): torch's helper makes the end
        # record SUCCESS, and written here every failed run showed as a success.
        _, ssi, _ = hp_summary(params, metrics)
        self.writer._get_file_writer().add_summary(ssi)

    def close(self, summary: dict[str, Any] | None = None, status: str | None = None) -> None:
        """Stop the progress display, end the TensorBoard session and print ``summary``.
        ``status``: how the run ended (result.json's status), written as the HPARAMS session
        status: finished, solved and pruned runs Success, failed runs Failure; interrupted
        runs (to be resumed) and None write no end record, so TensorBoard shows Unknown."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.writer is not None and status in SESSION_STATUS:
            self.writer._get_file_writer().add_summary(_session_end(SESSION_STATUS[status]))
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
        if summary:  # also with log.progress=none: the one record of how the run ended
            table = Table(title="Run summary", show_header=False)
            for k, v in summary.items():
                table.add_row(str(k), f"{v:.4g}" if isinstance(v, float) else str(v))
            self.console.print(table)
