"""Throughput scaling on this machine: PPO SPS versus env.num_envs for in-process envs
(hardware=cpu), env worker processes (hardware=workers) and EnvPool's C++ envs
(hardware.vectorization=envpool, when drlcli[envpool] is installed), on a cheap env (CartPole-v1),
Box2D (BipedalWalker-v3), MuJoCo (HalfCheetah-v5) and Atari (Pong, CNN policy); and A3C SPS
versus its number of learner processes.

SPS counts the whole training loop (acting, learning, logging), without evaluation. Each point
is a fresh subprocess; the modes rotate per point so machine noise hits all of them.

    python benchmarks/bench_scaling.py [--envs 1 2 4 8 16 32 64] [--a3c-workers 1 2 4]
    python benchmarks/bench_scaling.py --only pong halfcheetah --envs 1 4 8 16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

# env -> total steps per point
ENVS = {"cartpole": 32_768, "bipedalwalker": 16_384, "halfcheetah": 8_192, "pong": 4_096}


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
    parser.add_argument("--only", nargs="+", choices=list(ENVS), help="envs to measure")
    parser.add_argument("--no-a3c", action="store_true", help="skip the A3C table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return

    from rich.console import Console
    from rich.table import Table

    try:
        import envpool  # noqa: F401

        modes = ["sync", "workers", "envpool"]
    except ImportError:
        modes = ["sync", "workers"]
    console = Console()
    for env in args.only or list(ENVS):
        steps = ENVS[env]
        table = Table(title=f"PPO on {env}: SPS vs env.num_envs (num_steps 128, 1 torch thread)")
        table.add_column("num_envs", justify="right")
        table.add_column("sync (hardware=cpu)", justify="right")
        table.add_column(f"workers ({args.workers} procs)", justify="right")
        table.add_column("workers/sync", justify="right")
        if "envpool" in modes:
            table.add_column(f"envpool ({args.workers} threads)", justify="right")
            table.add_column("envpool/sync", justify="right")
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
            runs = {
                "sync": common,
                "workers": [
                    *common,
                    "hardware=workers",
                    f"hardware.num_workers={min(args.workers, n)}",
                ],
                "envpool": [
                    *common,
                    "hardware.vectorization=envpool",
                    f"hardware.num_workers={min(args.workers, n)}",
                ],
            }
            order = modes[i % len(modes) :] + modes[: i % len(modes)]
            res = {name: point(runs[name]) for name in order}
            row = [str(n), f"{res['sync']:.0f}", f"{res['workers']:.0f}"]
            row.append(f"{res['workers'] / res['sync']:.2f}x")
            if "envpool" in res:
                row += [f"{res['envpool']:.0f}", f"{res['envpool'] / res['sync']:.2f}x"]
            table.add_row(*row)
            console.print(
                f"{env} num_envs={n}: " + ", ".join(f"{k} {v:.0f}" for k, v in res.items())
            )
        console.print(table)
    if args.no_a3c:
        return

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
