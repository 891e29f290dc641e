"""`drl compare PATH...`: learning curves and final-return statistics across runs.

Runs are found by their ``config.yaml`` next to TensorBoard event files. Runs whose configs
differ only in the seed (and in settings that do not change learning: logging, checkpoints,
hardware, evaluation schedule) form one group. For each group: the mean curve of the metric
versus env steps with a 95% bootstrap confidence band over runs, and a table of the final
return (mean, interquartile mean, 95% bootstrap CI of the mean).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drlcli.errors import DrlError
from drlcli.logger import flatten
from drlcli.results import FINISHED, read_result

# Keys that do not change what is learned; runs differing only in these (and the seed) group.
IGNORED_PREFIXES = ("seed", "resume", "on_error", "log.", "checkpoint.", "hardware.", "eval.")

# Below this many runs per group a percentile-bootstrap 95% CI is too narrow to trust (Agarwal
# et al. 2021, "Deep RL at the edge of the statistical precipice", use 5+ runs and stratified
# bootstrap; with 2-3 runs the bootstrap distribution has only a handful of distinct means).
MIN_SEEDS = 5

# Axis labels for the tags drl logs; other tags are shown as they are.
METRIC_LABELS = {
    "eval/mean_return": "mean evaluation return",
    "eval/std_return": "std of evaluation returns",
    "charts/episodic_return": "training episode return",
    "charts/episodic_length": "training episode length",
    "charts/SPS": "env steps per second",
}


def metric_label(tag: str) -> str:
    """A readable axis label for a TensorBoard tag (``losses/value_loss`` -> ``value loss``)."""
    if tag in METRIC_LABELS:
        return METRIC_LABELS[tag]
    return tag.rsplit("/", 1)[-1].replace("_", " ")


def small_group_warnings(rows: list[dict[str, Any]], min_seeds: int = MIN_SEEDS) -> list[str]:
    """One warning per group with fewer than ``min_seeds`` runs (its 95% CI is unreliable)."""
    return [
        f"group '{r['group']}' has {r['runs']} run(s): its 95% bootstrap CI is unreliable under "
        f"{min_seeds} seeds per group (add seeds: seed=1,2,3,4,5)"
        for r in rows
        if r["runs"] < min_seeds
    ]


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    steps: np.ndarray
    values: np.ndarray

    @property
    def final(self) -> float:
        return float(self.values[-1])


@dataclass
class Group:
    key: tuple[tuple[str, Any], ...]
    label: str = ""
    runs: list[Run] = field(default_factory=list)


def find_run_dirs(paths: list[Path]) -> list[Path]:
    found: set[Path] = set()
    for root in paths:
        if not root.exists():
            raise DrlError(f"'{root}' does not exist.")
        candidates = [root / "config.yaml"] if (root / "config.yaml").is_file() else []
        candidates += list(root.rglob("config.yaml"))
        for cfg in candidates:
            run = cfg.parent
            if run.name != ".hydra" and (
                any(run.glob("events.out.tfevents.*")) or (run / "result.json").is_file()
            ):
                found.add(run.resolve())
    return sorted(found)


def read_scalar(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return np.array([]), np.array([])
    events = acc.Scalars(tag)
    return np.array([e.step for e in events], dtype=float), np.array([e.value for e in events])


def load_runs(
    paths: list[Path], metric: str, unfinished: bool = False
) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The runs under ``paths`` that logged ``metric``, and the ones left out, each with why.
    A run counts when its ``result.json`` says it finished (``finished`` or ``solved``): the
    last point of a failed, interrupted, pruned or still-running run is not a final return.
    ``unfinished=True`` keeps those too (curves of runs in progress)."""
    import yaml

    runs, skipped = [], []
    for run_dir in find_run_dirs(paths):
        status = (read_result(run_dir) or {}).get("status")
        if not unfinished and status not in FINISHED:
            skipped.append((run_dir, status or "no result.json (running or killed)"))
            continue
        if not any(run_dir.glob("events.out.tfevents.*")):
            skipped.append((run_dir, "no TensorBoard events (log.tensorboard=false)"))
            continue
        steps, values = read_scalar(run_dir, metric)
        if steps.size == 0:
            skipped.append((run_dir, f"no '{metric}' points"))
            continue
        config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text()))
        runs.append(Run(run_dir, config, steps, values))
    return runs, skipped


def skipped_note(skipped: list[tuple[Path, str]], unfinished: bool = False, shown: int = 3) -> str:
    """One line naming the runs ``load_runs`` left out, counted by reason (``unfinished``: the
    option was given, so it is not suggested)."""
    reasons: dict[str, list[Path]] = {}
    for path, why in skipped:
        reasons.setdefault(why, []).append(path)
    parts = []
    for why, found in reasons.items():
        names = ", ".join(str(p) for p in found[:shown]) + (" ..." if len(found) > shown else "")
        parts.append(f"{len(found)} {why} ({names})")
    statuses = any(not why.startswith("no ") or why.startswith("no result") for _, why in skipped)
    hint = (
        " --unfinished includes unfinished ones (their last point counts as final)."
        if statuses and not unfinished
        else ""
    )
    return f"left out {len(skipped)} run(s): {'; '.join(parts)}.{hint}"


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs grouped by every setting but the seed and IGNORED_PREFIXES. Labels: the algorithm
    and env where those differ between groups, then the settings that differ between groups of
    the same algorithm and env. Settings that differ only because the algorithms do (PPO's
    clip range against SAC's buffer size, or their default learning rates) are left out."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = tuple(
            sorted((k, v) for k, v in run.config.items() if not k.startswith(IGNORED_PREFIXES))
        )
        groups.setdefault(key, Group(key)).runs.append(run)
    out = list(groups.values())

    def varying(among: list[Group]) -> list[str]:
        keys = sorted({k for g in among for k, _ in g.key})
        return [k for k in keys if len({repr(dict(g.key).get(k)) for g in among}) > 1]

    primary = [k for k in ("algo.name", "env.id") if k in varying(out)]
    by_primary: dict[tuple, list[Group]] = {}
    for g in out:
        by_primary.setdefault(tuple(dict(g.key).get(k) for k in primary), []).append(g)
    for same in by_primary.values():
        within = [k for k in varying(same) if k not in primary]
        for g in same:
            d = dict(g.key)
            names = [str(d.get(k)) for k in primary]
            names += [f"{k}={d.get(k)}" for k in within]
            g.label = ", ".join(names) or f"{d.get('algo.name')}, {d.get('env.id')}"
    return sorted(out, key=lambda g: g.label)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (trimming floor(n/4) from each end)."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = len(x) // 4
    return float(x[cut : len(x) - cut].mean())


def bootstrap_ci(
    values: np.ndarray, rng: np.random.Generator, reps: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over runs (degenerate for one run)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    means = x[rng.integers(0, len(x), size=(reps, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def curve_band(
    group: Group, rng: np.random.Generator, points: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean curve and 95% bootstrap band on a shared step grid (up to the shortest run)."""
    end = min(r.steps[-1] for r in group.runs)
    start = max(r.steps[0] for r in group.runs)
    grid = np.linspace(start, end, points) if end > start else np.array([end])
    ys = np.stack([np.interp(grid, r.steps, r.values) for r in group.runs])  # (runs, points)
    mean = ys.mean(axis=0)
    if len(group.runs) < 2:
        return grid, mean, mean, mean
    idx = rng.integers(0, len(group.runs), size=(1000, len(group.runs)))
    boot = ys[idx].mean(axis=1)  # (reps, points)
    lo, hi = np.quantile(boot, [0.025, 0.975], axis=0)
    return grid, mean, lo, hi


def summarize(groups: list[Group], seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for g in groups:
        finals = np.array([r.final for r in g.runs])
        lo, hi = bootstrap_ci(finals, rng)
        rows.append(
            {
                "group": g.label,
                "runs": len(g.runs),
                "mean": float(finals.mean()),
                "iqm": iqm(finals),
                "ci_low": lo,
                "ci_high": hi,
                "finals": [float(f) for f in finals],
            }
        )
    return rows


def plot_curves(
    groups: list[Group], metric: str, seed: int = 0, target: float | None = None
) -> Any:
    """The comparison figure (a matplotlib Figure; the caller closes it): per group the mean
    curve of ``metric`` over runs with its 95% bootstrap band and markers where it was logged;
    x (env steps) from 0; a dashed line at ``target`` when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    markers = "osD^v<>pX*"
    for i, g in enumerate(groups):
        grid, mean, lo, hi = curve_band(g, rng)
        (line,) = ax.plot(grid, mean, label=f"{g.label} (n={len(g.runs)})")
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        # Markers where the metric was logged (evaluations), at most ~25 per curve.
        at = g.runs[0].steps[(g.runs[0].steps >= grid[0]) & (g.runs[0].steps <= grid[-1])]
        at = at[:: max(len(at) // 25, 1)]
        ax.plot(
            at,
            np.interp(at, grid, mean),
            linestyle="none",
            marker=markers[i % len(markers)],
            markersize=4,
            color=line.get_color(),
        )
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlim(left=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric_label(metric))
    few = min((len(g.runs) for g in groups), default=0) < MIN_SEEDS
    ax.set_title(
        f"{metric_label(metric)}: mean and 95% bootstrap CI over seeds"
        + (f" (under {MIN_SEEDS} seeds in a group: CI unreliable)" if few else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_outputs(
    groups: list[Group],
    rows: list[dict[str, Any]],
    out_dir: Path,
    metric: str,
    seed: int = 0,
    target: float | None = None,
) -> dict[str, Path]:
    """compare.png (mean curve per group, 95% bootstrap band, a marker on each logged point of
    the group's first run, x from 0, optional dashed ``target`` line), compare.csv, compare.md.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig = plot_curves(groups, metric, seed, target)
    png = out_dir / "compare.png"
    fig.savefig(png)
    plt.close(fig)

    csv_path = out_dir / "compare.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "runs", "mean", "iqm", "ci_low", "ci_high", "finals"])
        for r in rows:
            writer.writerow(
                [
                    r["group"],
                    r["runs"],
                    r["mean"],
                    r["iqm"],
                    r["ci_low"],
                    r["ci_high"],
                    " ".join(f"{v:g}" for v in r["finals"]),
                ]
            )
    md = out_dir / "compare.md"
    md.write_text(markdown_table(rows, metric))
    return {"png": png, "csv": csv_path, "md": md}


def markdown_table(rows: list[dict[str, Any]], metric: str) -> str:
    lines = [
        f"Final {metric} per group (last logged value of each run).",
        "",
        "| group | runs | mean | IQM | 95% CI |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['group']} | {r['runs']} | {r['mean']:.2f} | {r['iqm']:.2f} | "
            f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}] |"
        )
    few = [r["group"] for r in rows if r["runs"] < MIN_SEEDS]
    if few:
        lines += [
            "",
            f"Warning: under {MIN_SEEDS} runs in {', '.join(few)}: the 95% CIs there are "
            "unreliable (the bootstrap sees only a handful of distinct means).",
        ]
    return "\n".join(lines) + "\n"


def compare(
    paths: list[Path],
    metric: str,
    out_dir: Path | None,
    target: float | None = None,
    unfinished: bool = False,
) -> tuple[list[dict], dict, list[tuple[Path, str]]]:
    """Load, group and summarize the runs under ``paths``; write the PNG and tables into
    ``out_dir`` (default ``<first path>/compare``). Returns the table rows, the files written
    and the runs left out (see :func:`load_runs`). Raises DrlError when no run counts."""
    runs, skipped = load_runs(paths, metric, unfinished)
    if not runs:
        hint = f" ({skipped_note(skipped, unfinished)})" if skipped else ""
        raise DrlError(
            f"No finished runs with TensorBoard '{metric}' data under "
            f"{', '.join(map(str, paths))}{hint}. Pass run or multirun directories (e.g. "
            "outputs/multirun/<date>/<time>); --metric charts/episodic_return uses training "
            "episodes instead of evaluations."
        )
    groups = group_runs(runs)
    rows = summarize(groups)
    out = out_dir or (paths[0] if paths[0].is_dir() else Path.cwd()) / "compare"
    files = write_outputs(groups, rows, out, metric, target=target)
    if any(math.isnan(r["mean"]) for r in rows):
        raise DrlError("A group's final return is NaN; check the runs' event files.")
    return rows, files, skipped
