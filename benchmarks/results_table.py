"""The README's results table (issue #21): drlcli at the RL Zoo's budgets, 5 seeds, beside the Zoo.

Each row trains ``drl train algo=A env=E total_timesteps=N seed=S`` (the pair's tuned set, if it
has one, applies as for any user) for seeds 1..5 through the real command, two runs at a time with
one torch thread each, into ``outputs/results/<row>/s<seed>``; then ``drl compare`` on the row's
directory gives the mean and the 95% bootstrap CI over seeds of the final evaluation
(``eval/mean_return``: 10 deterministic episodes at the end of the run). Finished seeds are
skipped, so an interrupted measurement resumes.

The Zoo's figures (DLR-RM/rl-baselines3-zoo ``benchmark.md``) are one trained agent per row,
evaluated over ~150k steps: mean +- std over episodes, not over seeds. Its LunarLander is v2,
drlcli's v3 (the same task; v2 is gone from gymnasium 1.x).

    python benchmarks/results_table.py                  # every row, 5 seeds
    python benchmarks/results_table.py dqn_acrobot      # one row
    python benchmarks/results_table.py --table          # only print the table from what ran
    python benchmarks/results_table.py --scale 0.2      # 20% of each budget (a smoke check)
    python benchmarks/results_table.py td3_lunarlander_continuous --steps 100000  # a set budget
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRL = str(Path(sys.executable).with_name("drl"))


@dataclass(frozen=True)
class Row:
    algo: str
    env: str
    budget: int  # env steps: the Zoo's n_timesteps
    zoo: tuple[float, float] | None  # the Zoo's mean and std over evaluation episodes
    overrides: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.algo}_{self.env}"


ROWS = [
    Row("ppo", "cartpole", 100_000, (500.0, 0.0)),
    Row("a2c", "cartpole", 500_000, (500.0, 0.0)),
    Row("dqn", "cartpole", 50_000, (500.0, 0.0)),
    Row("trpo", "cartpole", 100_000, (500.0, 0.0)),
    Row("ppo", "acrobot", 1_000_000, (-73.5, 18.2)),
    Row("a2c", "acrobot", 500_000, (-83.4, 17.2)),
    Row("dqn", "acrobot", 100_000, (-76.6, 11.8)),
    Row("trpo", "acrobot", 100_000, (-83.1, 18.6)),
    Row("ppo", "lunarlander", 1_000_000, (242.1, 31.8)),
    Row("a2c", "lunarlander", 200_000, (155.8, 80.4)),
    Row("dqn", "lunarlander", 100_000, (154.4, 79.2)),
    Row("sac", "pendulum", 20_000, (-157.0, 88.7)),
    Row("td3", "pendulum", 20_000, (-151.9, 90.2)),
    Row("ddpg", "pendulum", 20_000, (-152.1, 94.3)),
    Row("trpo", "pendulum", 100_000, (-174.6, 127.6)),
    Row("sac", "mountaincar_continuous", 50_000, (94.7, 1.1)),
    Row("trpo", "mountaincar_continuous", 50_000, (92.5, 0.4)),
    Row("trpo", "lunarlander_continuous", 200_000, (262.4, 21.4)),
    # No tuned set: SAC's defaults (SB3's) as any user gets them. On 2 cores: --scale 0.2.
    Row("sac", "lunarlander_continuous", 500_000, (260.4, 65.5)),
    # The Zoo's TD3 and DDPG sets (400x300, one env). On 2 cores: --steps 100000.
    Row("td3", "lunarlander_continuous", 300_000, (207.5, 67.6)),
    Row("ddpg", "lunarlander_continuous", 300_000, (230.2, 92.4)),
    # The Zoo's TD3 and DDPG sets (Ornstein-Uhlenbeck noise, std 0.5). On 2 cores (~28 min per
    # 100k at two runs at a time): td3 --steps 100000, ddpg --steps 50000.
    Row("td3", "mountaincar_continuous", 300_000, (93.5, 0.1)),
    Row("ddpg", "mountaincar_continuous", 300_000, (93.5, 0.0)),
]
BY_NAME = {r.name: r for r in ROWS}


def run_seed(row: Row, seed: int, out: Path, budget: int) -> dict:
    run_dir = out / row.name / f"s{seed}"
    result = run_dir / "result.json"
    if result.exists() and json.loads(result.read_text())["status"] == "finished":
        return json.loads(result.read_text())
    cmd = [
        DRL,
        "train",
        f"algo={row.algo}",
        f"env={row.env}",
        f"total_timesteps={budget}",
        f"seed={seed}",
        f"eval.every={max(budget // 10, 1000)}",
        "checkpoint.every=100000000",
        "hardware.torch_threads=1",
        "log.progress=none",
        *row.overrides,
        f"hydra.run.dir={run_dir}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"{row.name} seed {seed} failed:\n{proc.stdout[-2000:]}{proc.stderr}")
    d = json.loads(result.read_text())
    print(
        f"{row.name:28s} seed {seed}: {d['eval_mean_return']:9.2f} "
        f"({time.perf_counter() - t0:6.0f} s, {d['sps']:6.0f} SPS)",
        flush=True,
    )
    return d


def finished_runs(row_dir: Path) -> dict[Path, dict]:
    """{run dir: its result.json} for the row's finished runs (an interrupted or still running
    one would show a partial curve)."""
    results = {p.parent: json.loads(p.read_text()) for p in sorted(row_dir.glob("s*/result.json"))}
    return {d: r for d, r in results.items() if r["status"] == "finished"}


def compare_row(row: Row, out: Path) -> dict | None:
    """``drl compare`` on the row's finished runs; its summary row (mean, CI, per-seed finals,
    and the runs' median wall time and smallest / largest step count)."""
    row_dir = out / row.name
    runs = finished_runs(row_dir)
    if not runs:
        return None
    cmd = [DRL, "compare", *map(str, runs), "--metric", "eval/mean_return"]
    proc = subprocess.run(
        [*cmd, "--out", str(row_dir / "compare")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"drl compare {row_dir} failed:\n{proc.stdout}{proc.stderr}")
    with (row_dir / "compare" / "compare.csv").open() as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise RuntimeError(f"{row_dir}: runs with different settings ({len(rows)} groups)")
    r = rows[0]
    return {
        "runs": int(r["runs"]),
        **{k: float(r[k]) for k in ("mean", "ci_low", "ci_high")},
        "finals": [float(v) for v in r["finals"].split()],
        "wall_s": statistics.median(x["wall_time_s"] for x in runs.values()),
        "steps": (
            min(x["global_step"] for x in runs.values()),
            max(x["global_step"] for x in runs.values()),
        ),
    }


def fmt_budget(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def table(rows: list[Row], out: Path) -> str:
    lines = [
        "| algo | env | budget | drlcli: mean [95% CI] over seeds | seeds | per seed | "
        "RL Zoo (one agent) | wall per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = compare_row(row, out)
        if s is None:
            continue
        budget = fmt_budget(row.budget)
        if s["steps"][1] < row.budget * 0.99:
            budget = f"{fmt_budget(s['steps'][0])} (Zoo: {budget})"
        zoo = f"{row.zoo[0]:.1f} +- {row.zoo[1]:.1f}" if row.zoo else "-"
        per_seed = " / ".join(f"{v:.1f}" for v in s["finals"])
        lines.append(
            f"| {row.algo} | {row.env} | {budget} | {s['mean']:.1f} "
            f"[{s['ci_low']:.1f}, {s['ci_high']:.1f}] | {s['runs']} | {per_seed} | {zoo} | "
            f"{s['wall_s']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows", nargs="*", help=f"rows (default all): {', '.join(BY_NAME)}")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--only-seeds", type=int, nargs="+", help="run just these seeds (parallel shards)"
    )
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of each budget to run")
    p.add_argument("--steps", type=int, help="run this many env steps per row instead")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "results")
    p.add_argument("--table", action="store_true", help="only print the table")
    args = p.parse_args()
    unknown = [n for n in args.rows if n not in BY_NAME]
    if unknown:
        p.error(f"unknown row(s) {unknown}; valid: {', '.join(BY_NAME)}")
    rows = [BY_NAME[n] for n in args.rows] if args.rows else ROWS
    if not args.table:
        jobs = [
            (row, seed, args.steps or max(int(row.budget * args.scale), 1000))
            for row in rows
            for seed in (args.only_seeds or range(1, args.seeds + 1))
        ]
        with ThreadPoolExecutor(args.jobs) as pool:
            for fut in [pool.submit(run_seed, r, s, args.out, b) for r, s, b in jobs]:
                fut.result()
    print(table(rows, args.out))


if __name__ == "__main__":
    main()
