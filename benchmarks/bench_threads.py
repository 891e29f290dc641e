"""Torch threads on a shared machine (issue #15): what the automatic thread count must get right.

1. Concurrent runs: ``drl train algo=ppo env=cartpole total_timesteps=30000`` once alone, then N
   copies started together (N = cores), all with default settings. Reports each run's wall time
   and the ratio concurrent / alone (the goal: <= 1.3, i.e. N runs on N cores barely slow down).
2. One update step at 1 vs all cores' threads, for the two kinds of torso: a 64x64 MLP actor-critic
   (PPO's CartPole network, batch 256) and the Nature CNN (PPO's Atari torso, batch 256 of 4x84x84
   frames). The automatic thread count gives CNN torsos more than one thread only because this
   measurement shows they gain from it, and MLPs one thread because they do not.
3. Large MLP learners: one SAC/TD3 gradient step at 1 vs all cores' threads for nets and batches
   of growing size, with the multiply-adds per forward pass (hardware.learner_work) beside each:
   the data behind hardware.PARALLEL_WORK, the size from which a learner may take more threads.
4. The adaptive thread count on such a learner (``drl train algo=sac env=pendulum``, the Zoo set,
   ``--sac-steps`` steps): alone with the defaults vs alone with 1 and with all cores' threads,
   then N default runs started together. Reports training-loop SPS (result.json).

Alternates the configurations and reports medians.

    python benchmarks/bench_threads.py [--repeats 3] [--steps 30000] [--sac-steps 6000]
                                       [--only concurrent,step,learner,adaptive]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PPO_CARTPOLE = ["algo=ppo", "env=cartpole"]
SAC_PENDULUM = ["algo=sac", "env=pendulum", "eval.every=0", "checkpoint.every=0"]


def train_cmd(steps: int, out: str, args: list[str] = PPO_CARTPOLE) -> list[str]:
    drl = Path(sys.executable).with_name("drl")
    return [
        str(drl),
        "train",
        *args,
        f"total_timesteps={steps}",
        "log.progress=none",
        f"hydra.run.dir={out}",
    ]


def concurrent(
    n: int, steps: int, args: list[str] = PPO_CARTPOLE
) -> tuple[list[float], list[float]]:
    """Wall seconds and training-loop SPS of each of ``n`` runs started together."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                train_cmd(steps, f"{tmp}/r{i}", args),
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
        sps = [json.loads(Path(f"{tmp}/r{i}/result.json").read_text())["sps"] for i in range(n)]
    return walls, sps


# (label, algo, overrides) of the learners whose gradient step is timed at 1 vs N threads.
LEARNERS = [
    ("SAC 64x64, batch 256", "sac", ["algo.hidden_sizes=[64,64]"]),
    ("SAC 128x128, batch 256", "sac", ["algo.hidden_sizes=[128,128]"]),
    ("SAC 256x256, batch 64", "sac", ["algo.batch_size=64"]),
    ("TD3 400x300, batch 100", "td3", ["algo.hidden_sizes=[400,300]", "algo.batch_size=100"]),
    ("SAC 256x256, batch 256", "sac", []),
]


def learner_step_time(index: int, threads: int, iters: int = 200) -> tuple[float, int]:
    """(median ms of one gradient step, learner_work) of LEARNERS[index] on Pendulum's spaces,
    from a replay buffer of random transitions."""
    import gymnasium as gym
    import numpy as np
    import torch

    from drlcli import cli, hardware, registry
    from drlcli.algos.base import EnvInfo
    from drlcli.config import to_train_config

    _, algo_name, overrides = LEARNERS[index]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = to_train_config(cli._compose([f"algo={algo_name}", "env=pendulum", *overrides]))
    env = gym.make("Pendulum-v1")
    algo: Any = registry.build(
        cfg.algo, EnvInfo(env.observation_space, env.action_space, 1), torch.device("cpu")
    )
    rng = np.random.default_rng(0)
    for _ in range(2000):
        obs = rng.standard_normal((1, 3)).astype(np.float32)
        algo.replay.add(
            obs,
            rng.uniform(-1, 1, (1, 1)).astype(np.float32),
            rng.standard_normal(1).astype(np.float32),
            obs,
            np.zeros(1, bool),
            np.zeros(1, bool),
        )
    times = []
    for i in range(iters + 20):
        t0 = time.perf_counter()
        algo.learn(1)
        if i >= 20:
            times.append(time.perf_counter() - t0)
    work = hardware.learner_work(algo.modules(), cfg.algo.batch_size)
    return 1000 * statistics.median(times), work


def child(args: list[str]) -> float | tuple[float, int]:
    kind, threads = args
    if kind.startswith("learner"):
        return learner_step_time(int(kind.removeprefix("learner")), int(threads))
    return step_time(kind, int(threads))


def run_child(kind: str, threads: int) -> Any:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    p.add_argument("--sac-steps", type=int, default=6_000)
    p.add_argument("--only", default="concurrent,step,learner,adaptive")
    p.add_argument("--child", nargs=2, metavar=("KIND", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    only = set(args.only.split(","))
    cores = len(os.sched_getaffinity(0))
    if "concurrent" in only:
        alone, together = [], []
        for _ in range(args.repeats):
            alone.append(concurrent(1, args.steps)[0][0])
            together.append(max(concurrent(cores, args.steps)[0]))
        a, t = statistics.median(alone), statistics.median(together)
        print(f"{cores} cores, PPO CartPole {args.steps} steps, default settings:")
        print(f"  one run alone: {a:.1f} s; {cores} runs together: {t:.1f} s (slowest)")
        print(f"  concurrent / alone = {t / a:.2f} (goal <= 1.3)")
    if "step" in only:
        for kind in ("mlp", "cnn"):
            res: dict[int, list[float]] = {1: [], cores: []}
            for _ in range(args.repeats):
                for th in res:
                    res[th].append(run_child(kind, th))
            m1, mc = statistics.median(res[1]), statistics.median(res[cores])
            print(
                f"  {kind} update step: 1 thread {m1:.2f} ms, {cores} threads {mc:.2f} ms "
                f"(speed-up {m1 / mc:.2f}x)"
            )
    if "learner" in only:
        print(f"one gradient step, 1 vs {cores} threads (median of {args.repeats} processes):")
        for i, (label, _, _) in enumerate(LEARNERS):
            step: dict[int, list[float]] = {1: [], cores: []}
            work = 0
            for _ in range(args.repeats):
                for th in step:
                    ms, work = run_child(f"learner{i}", th)
                    step[th].append(ms)
            m1, mc = statistics.median(step[1]), statistics.median(step[cores])
            print(
                f"  {label:<24} {work / 1e6:5.1f}M multiply-adds: {m1:.2f} ms vs {mc:.2f} ms "
                f"({m1 / mc:.2f}x)"
            )
    if "adaptive" in only:
        sps: dict[str, list[float]] = {"auto": [], "1": [], str(cores): [], "together": []}
        for _ in range(args.repeats):
            for key in ("auto", "1", str(cores)):
                extra = [] if key == "auto" else [f"hardware.torch_threads={key}"]
                sps[key].append(concurrent(1, args.sac_steps, SAC_PENDULUM + extra)[1][0])
            sps["together"].append(min(concurrent(cores, args.sac_steps, SAC_PENDULUM)[1]))
        med = {k: statistics.median(v) for k, v in sps.items()}
        print(f"SAC Pendulum (Zoo set) {args.sac_steps} steps, training-loop SPS (medians):")
        print(
            f"  alone: auto {med['auto']:.0f}, 1 thread {med['1']:.0f}, {cores} threads "
            f"{med[str(cores)]:.0f}; {cores} auto runs together: slowest {med['together']:.0f} "
            f"({med['together'] / med['1']:.2f}x of one 1-thread run alone)"
        )


if __name__ == "__main__":
    main()
