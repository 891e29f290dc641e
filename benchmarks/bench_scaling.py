"""Throughput scaling on this machine: PPO SPS versus env.num_envs for in-process envs
(hardware=cpu) and env worker processes (hardware=workers), on a cheap env (CartPole-v1) and a
slower one (BipedalWalker-v3, Box2D); and A3C SPS versus its number of learner processes.

SPS counts the whole training loop (acting, learning, logging), without evaluation. Each point
is a fresh subprocess; the two modes alternate per point so machine noise hits both.

    python benchmarks/bench_scaling.py [--envs 1 2 4 8 16 32 64] [--a3c-workers 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

ENVS = {"cartpole": 32_768, "bipedalwalker": 16_384}


def measure(overrides: list[str]) -> dict:
    from drlcli import cli
    from drlcli.config import to_train_config
    from drlcli.runner import train

    cfg = to_train_config(
        cli._compose(
            [
                *overrides,
                "eval.every=0",
                "eval.episodes=1",
                "checkpoint.every=0",
                "log.progress=none",
                "env.max_episode_steps=200",
            ]
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, tmp)
    return {"sps": result.global_step / result.train_time_s}


def point(overrides: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(overrides)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"failed: {overrides}\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["sps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--a3c-workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--workers", type=int, default=2, help="env worker processes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    for env, steps in ENVS.items():
        table = Table(title=f"PPO on {env}: SPS vs env.num_envs (num_steps 128, 1 torch thread)")
        for col in (
            "num_envs",
            "sync (hardware=cpu)",
            f"workers ({args.workers} procs)",
            "workers/sync",
        ):
            table.add_column(col, justify="right")
        for i, n in enumerate(args.envs):
            common = [
                "algo=ppo",
                f"env={env}",
                f"env.num_envs={n}",
                "algo.num_steps=128",
                f"algo.minibatch_size={min(256, 128 * n)}",
                "algo.update_epochs=4",
                f"total_timesteps={max(steps, 128 * n * 2)}",
                "hardware.torch_threads=1",
            ]
            workers = [*common, "hardware=workers", f"hardware.num_workers={min(args.workers, n)}"]
            order = [("sync", common), ("workers", workers)]
            res = {name: point(ov) for name, ov in (order if i % 2 == 0 else order[::-1])}
            table.add_row(
                str(n),
                f"{res['sync']:.0f}",
                f"{res['workers']:.0f}",
                f"{res['workers'] / res['sync']:.2f}x",
            )
            console.print(
                f"{env} num_envs={n}: sync {res['sync']:.0f}, workers {res['workers']:.0f}"
            )
        console.print(table)

    table = Table(title="A3C on CartPole-v1: SPS vs learner processes (1 env each, t_max 5)")
    table.add_column("workers", justify="right")
    table.add_column("SPS", justify="right")
    for w in args.a3c_workers:
        sps = point(
            [
                "algo=a3c",
                "env=cartpole",
                f"algo.num_workers={w}",
                "total_timesteps=60000",
                "hardware.torch_threads=1",
            ]
        )
        table.add_row(str(w), f"{sps:.0f}")
        console.print(f"a3c workers={w}: {sps:.0f} SPS")
    console.print(table)


if __name__ == "__main__":
    main()
