"""Soak check: many short runs, killed at random (SIGTERM to the main pid, SIGTERM to the whole
process group as SLURM and `timeout` send it, or SIGKILL to the group) and requeued with
`resume=auto` until they finish. Runs cycle through PPO in-process (sync), PPO with env worker
processes (hardware=workers), PPO with gymnasium's async vector env, and SAC. Counts completed
runs, signals, non-143 exits after a SIGTERM, and checkpoints lost: a kill loses a checkpoint
when the newest loadable checkpoint before it is gone or unreadable after.
Also checks every finished run's step count and that its TensorBoard curve has no duplicated
or missing steps.

    python benchmarks/soak_resume.py [--jobs 12] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drlcli import checkpoint as ckpt

JOBS = {
    "ppo": [
        "algo=ppo",
        "env=cartpole",
        "total_timesteps=20480",
        "checkpoint.every=2048",
        "eval.every=4096",
        "eval.episodes=2",
    ],
    "sac": [
        "algo=sac",
        "env=pendulum",
        "total_timesteps=3000",
        "algo.learning_starts=300",
        "algo.hidden_sizes=[32,32]",
        "checkpoint.every=500",
        "eval.every=1000",
        "eval.episodes=2",
    ],
}
JOBS["ppo_workers"] = [*JOBS["ppo"], "hardware=workers", "hardware.num_workers=2"]
JOBS["ppo_async"] = [*JOBS["ppo"], "hardware.vectorization=async"]
KINDS = ("ppo", "ppo_workers", "sac", "ppo_async")
SIGNALS = ("sigterm", "group_sigterm", "group_sigkill")
COMMON = ["log.progress=none", "hardware.torch_threads=1", "log.every=256"]


def newest_loadable(run_dir: Path) -> int:
    try:
        return int(ckpt.latest_loadable(run_dir / "checkpoints")["step"])
    except Exception:
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    drl = str(Path(sys.executable).with_name("drl"))
    root = args.out or Path(tempfile.mkdtemp(prefix="drl-soak-"))
    stats = dict.fromkeys(("completed", "launches", *SIGNALS, "lost", "bad_exit", "bad_curve"), 0)
    t0 = time.time()
    for job in range(args.jobs):
        kind = KINDS[job % len(KINDS)]
        run_dir = root / f"{job:02d}_{kind}"
        cmd = [
            drl,
            "train",
            *JOBS[kind],
            *COMMON,
            f"seed={job}",
            f"hydra.run.dir={run_dir}",
            "resume=auto",
        ]
        while True:
            stats["launches"] += 1
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group, as a batch job has
            )
            deadline = time.time() + rng.uniform(2.0, 9.0)
            while proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                if proc.returncode != 0:
                    print(f"job {job}: exited {proc.returncode}: {err[-500:]}")
                    sys.exit(1)
                stats["completed"] += 1
                break
            before = newest_loadable(run_dir)
            how = rng.choice(SIGNALS)
            if how == "sigterm":
                proc.send_signal(signal.SIGTERM)
            else:
                sig = signal.SIGTERM if how == "group_sigterm" else signal.SIGKILL
                os.killpg(proc.pid, sig)
            proc.wait(timeout=60)
            stats[how] += 1
            # A SIGTERM ends with the preemption checkpoint and exit 143, never a crash.
            if how != "group_sigkill" and proc.returncode not in (143, 0):
                stats["bad_exit"] += 1
                err = proc.stderr.read() if proc.stderr else ""
                print(f"job {job}: {how} gave exit {proc.returncode}: {err[-500:]}")
            if newest_loadable(run_dir) < before:
                stats["lost"] += 1
                print(f"job {job}: checkpoint at step {before} lost after {how}")
        state = ckpt.latest_loadable(run_dir / "checkpoints")
        total = int(JOBS[kind][2].split("=")[1])
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        steps = [e.step for e in acc.Scalars("charts/SPS")]
        if state["step"] < total or steps != sorted(set(steps)):
            stats["bad_curve"] += 1
            print(
                f"job {job}: final step {state['step']}, curve steps ok: "
                f"{steps == sorted(set(steps))}"
            )
    stats["wall_s"] = round(time.time() - t0)
    print(f"soak: {args.jobs} jobs in {root}: {stats}")


if __name__ == "__main__":
    main()
