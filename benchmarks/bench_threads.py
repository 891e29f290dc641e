"""Torch threads on a shared machine (issue #15): what the automatic thread count must get right.

1. Concurrent runs: ``drl train algo=ppo env=cartpole total_timesteps=30000`` once alone, then N
   copies started together (N = cores), all with default settings. Reports each run's wall time
   and the ratio concurrent / alone (the goal: <= 1.3, i.e. N runs on N cores barely slow down).
2. One update step at 1 vs all cores' threads, for the two kinds of torso: a 64x64 MLP actor-critic
   (PPO's CartPole network, batch 256) and the Nature CNN (PPO's Atari torso, batch 256 of 4x84x84
   frames). The automatic thread count gives CNN torsos more than one thread only because this
   measurement shows they gain from it, and MLPs one thread because they do not.

Alternates the configurations and reports medians.

    python benchmarks/bench_threads.py [--repeats 3] [--steps 30000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train_cmd(steps: int, out: str) -> list[str]:
    drl = Path(sys.executable).with_name("drl")
    return [
        str(drl),
        "train",
        "algo=ppo",
        "env=cartpole",
        f"total_timesteps={steps}",
        "log.progress=none",
        f"hydra.run.dir={out}",
    ]


def concurrent(n: int, steps: int) -> list[float]:
    """Wall seconds of each of ``n`` runs started together (default thread settings)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                train_cmd(steps, f"{tmp}/r{i}"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(n)
        ]
        walls = []
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"drl train failed:\n{err.decode()[-2000:]}")
            walls.append(time.perf_counter() - t0)
    return walls


def step_time(kind: str, threads: int, iters: int = 30) -> float:
    """Median ms of one forward + backward + Adam step."""
    import torch
    from torch import nn

    from drlcli.networks import NatureCNN, mlp

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if kind == "mlp":
        net: nn.Module = nn.ModuleList([mlp(4, [64, 64], 2, "tanh"), mlp(4, [64, 64], 1, "tanh")])
        x = torch.randn(256, 4)

        def loss_fn() -> torch.Tensor:
            return net[0](x).pow(2).mean() + net[1](x).pow(2).mean()  # type: ignore[index]
    else:
        import gymnasium as gym
        import numpy as np

        space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        net = NatureCNN(space)
        x = torch.randint(0, 256, (256, 4, 84, 84)).float()

        def loss_fn() -> torch.Tensor:
            return net(x).pow(2).mean()

    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    times = []
    for i in range(iters + 3):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--child", nargs=2, metavar=("KIND", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(step_time(args.child[0], int(args.child[1])))
        return
    cores = len(os.sched_getaffinity(0))
    alone, together = [], []
    for _ in range(args.repeats):
        alone.append(concurrent(1, args.steps)[0])
        together.append(max(concurrent(cores, args.steps)))
    a, t = statistics.median(alone), statistics.median(together)
    print(f"{cores} cores, PPO CartPole {args.steps} steps, default settings:")
    print(f"  one run alone: {a:.1f} s; {cores} runs together: {t:.1f} s (slowest)")
    print(f"  concurrent / alone = {t / a:.2f} (goal <= 1.3)")
    for kind in ("mlp", "cnn"):
        res: dict[int, list[float]] = {1: [], cores: []}
        for _ in range(args.repeats):
            for th in res:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", kind, str(th)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                res[th].append(float(out.stdout.strip().splitlines()[-1]))
        m1, mc = statistics.median(res[1]), statistics.median(res[cores])
        print(
            f"  {kind} update step: 1 thread {m1:.2f} ms, {cores} threads {mc:.2f} ms "
            f"(speed-up {m1 / mc:.2f}x)"
        )


if __name__ == "__main__":
    main()
