"""Pruned vs unpruned `drl tune` on PPO CartPole: wall time, pruned fraction, best value.

Runs the same study (search space ``ppo_cartpole``: 16 trials of 30k steps, TPE with sampler
seed S) with the search space's pruner and with ``--pruner none``, alternating the two,
``--repeats`` times each, every study in a fresh directory, one torch thread. Prints one row
per study and the medians. Needs the ``tune`` extra (Optuna).

    python benchmarks/tune_pruning.py --repeats 2 [--trials 16] [--pruner halving]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_study(drl: str, root: Path, pruner: str, trials: int, seed: int) -> dict:
    import optuna
    from optuna.trial import TrialState

    study_dir = root / f"{pruner}_{time.time_ns()}"
    cmd = [
        drl, "tune", "ppo_cartpole", "--trials", str(trials), "--pruner", pruner,
        "--sampler-seed", str(seed), "--dir", str(study_dir), "hardware.torch_threads=1",
    ]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir / "journal.log"))
    )
    study = optuna.load_study(study_name="ppo_cartpole", storage=storage)
    states = [t.state for t in study.trials]
    row = {
        "pruner": pruner,
        "wall_s": wall,
        "pruned": states.count(TrialState.PRUNED),
        "complete": states.count(TrialState.COMPLETE),
        "failed": states.count(TrialState.FAIL),
        "best": study.best_value,
    }
    shutil.rmtree(study_dir)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--pruner", default="halving", help="the pruned study's pruner")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed of both studies")
    args = parser.parse_args()
    drl = str(Path(sys.executable).with_name("drl"))
    root = Path(tempfile.mkdtemp(prefix="tune_pruning_"))
    rows = []
    for i in range(args.repeats):
        for pruner in ("none", args.pruner) if i % 2 == 0 else (args.pruner, "none"):
            row = run_study(drl, root, pruner, args.trials, args.seed)
            rows.append(row)
            print(
                f"{row['pruner']:>9}: {row['wall_s']:7.1f} s, {row['pruned']:2d} pruned, "
                f"{row['complete']:2d} complete, {row['failed']} failed, best {row['best']:.2f}",
                flush=True,
            )
    shutil.rmtree(root, ignore_errors=True)
    for pruner in ("none", args.pruner):
        walls = [r["wall_s"] for r in rows if r["pruner"] == pruner]
        bests = [r["best"] for r in rows if r["pruner"] == pruner]
        pruned = [r["pruned"] for r in rows if r["pruner"] == pruner]
        print(
            f"median {pruner:>9}: {statistics.median(walls):7.1f} s, pruned "
            f"{statistics.median(pruned)}/{args.trials}, best {statistics.median(bests):.2f}"
        )
    ratio = statistics.median(r["wall_s"] for r in rows if r["pruner"] == args.pruner) / (
        statistics.median(r["wall_s"] for r in rows if r["pruner"] == "none")
    )
    print(f"time ratio pruned / unpruned (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
