"""Eager vs compiled learner (``hardware.compile``, issue #15): time per gradient step.

SAC and TD3 with the RL Zoo's Pendulum networks (256x256 and 400x300, one gradient step per
call, batch 256 / 100) and PPO's update over one rollout (CartPole's 64x64 actor-critic, 8 envs
x 256 steps, 4 epochs of minibatches of 256), on spaces of the given env dims, from random
transitions. Eager and each compile mode are built in the same process with the same seed;
compilation happens in a warm-up that is not timed; then the variants alternate in rounds and
the medians are reported with their ratio to eager.

On a GPU machine: ``--device cuda --modes default reduce-overhead`` (CUDA graphs), the
measurement issue #15 asks for. On CPU (the default) it shows whether compiling pays here.

    python benchmarks/bench_compile.py [--algos sac td3 ppo] [--device cpu] [--threads 1]
                                       [--modes default] [--rounds 5] [--steps 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from drlcli import cli, registry
from drlcli.algos.base import EnvInfo, VectorStep
from drlcli.config import to_train_config

OVERRIDES = {
    "sac": ["algo=sac", "env=pendulum"],
    "td3": ["algo=td3", "env=pendulum", "algo.hidden_sizes=[400,300]", "algo.batch_size=100"],
    "ppo": [
        "algo=ppo",
        "env=cartpole",
        "env.num_envs=8",
        "algo.num_steps=256",
        "algo.minibatch_size=256",
        "algo.update_epochs=4",
    ],
}


def build(algo: str, device: torch.device, mode: str | None) -> Any:
    torch.manual_seed(0)
    cfg = to_train_config(cli._compose(OVERRIDES[algo]))
    if algo == "ppo":
        spaces = (gym.spaces.Box(-4.0, 4.0, (4,), np.float32), gym.spaces.Discrete(2))
        num_envs = cfg.env.num_envs
    else:
        spaces = (
            gym.spaces.Box(-8.0, 8.0, (3,), np.float32),
            gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
        )
        num_envs = 1
    learner: Any = registry.build(cfg.algo, EnvInfo(spaces[0], spaces[1], num_envs), device)
    if mode:
        learner.compile_learner(mode)
    rng = np.random.default_rng(0)
    if algo == "ppo":
        fill_rollout(learner, rng, num_envs)
    else:
        for _ in range(5000):
            obs = rng.standard_normal((1, 3)).astype(np.float32)
            act = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
            rew = rng.standard_normal(1).astype(np.float32)
            learner.replay.add(obs, act, rew, obs, np.zeros(1, bool), np.zeros(1, bool))
    return learner


def fill_rollout(learner: Any, rng: np.random.Generator, num_envs: int) -> None:
    obs = rng.standard_normal((num_envs, 4)).astype(np.float32)
    with torch.no_grad():
        learner.begin_collect(obs)
    with torch.inference_mode():
        step = 0
        while True:
            learner.act(obs, step)
            nxt = rng.standard_normal((num_envs, 4)).astype(np.float32)
            step += num_envs
            vs = VectorStep(
                obs=obs,
                reward=rng.standard_normal(num_envs).astype(np.float32),
                terminated=rng.random(num_envs) < 0.02,
                truncated=np.zeros(num_envs, bool),
                final_obs=nxt,
                next_obs=nxt,
                global_step=step,
            )
            obs = nxt
            if learner.observe(vs):
                break
        learner.end_collect(obs)


def step(learner: Any, algo: str) -> None:
    if algo == "ppo":
        learner.update(0.0)
    else:
        learner.learn(1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=["sac", "td3", "ppo"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", nargs="+", default=["default"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=50, help="gradient steps (PPO: updates) timed")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {args.threads} torch thread(s), torch {torch.__version__}")
    for algo in args.algos:
        steps = max(args.steps // 25, 2) if algo == "ppo" else args.steps
        variants = {"eager": build(algo, device, None)}
        for mode in args.modes:
            variants[mode] = build(algo, device, mode)
        for name, learner in variants.items():  # warm-up: compilation happens here
            t0 = time.perf_counter()
            for _ in range(3):
                step(learner, algo)
            sync(device)
            print(f"  {algo} {name}: warm-up (incl. compilation) {time.perf_counter() - t0:.1f} s")
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, learner in variants.items():
                sync(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    step(learner, algo)
                sync(device)
                times[name].append((time.perf_counter() - t0) / steps * 1000)
        eager = statistics.median(times["eager"])
        unit = "update" if algo == "ppo" else "gradient step"
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {algo} {name:<16} {med:8.2f} ms per {unit}  ({eager / med:.2f}x eager)")


if __name__ == "__main__":
    main()
