"""Gaussian-policy trust regions learning Pendulum-v1 (issue #14): drlcli TRPO and PPO-KL (their
tuned sets) beside sb3-contrib TRPO with the same settings, in one run.

The settings are RL Baselines3 Zoo's sb3-contrib TRPO Pendulum-v1 set without gSDE (neither side
uses it; drlcli's tuned set has it since issue #21, switched off here with algo.use_sde=false):
2 envs x 1024 steps, gamma 0.9, GAE lambda 0.95, KL radius 0.01, 15 CG iterations, damping 0.1,
line search 0.8 x 10, critic 15 epochs of minibatch-128 Adam at lr 1e-3, 64x64 tanh actor and
critic, log std 0 at the start. drlcli PPO-KL uses its tuned set (conf/tuned/
ppo_kl_pendulum.yaml: the Zoo PPO Pendulum set with the paper's adaptive KL penalty).
The final return is 10 deterministic episodes on a fresh env. Two runs at a time, one thread
each; prints each run and then the per-method median and range.

    python benchmarks/pendulum_gaussian.py [--seeds 1 2 3] [--steps 200000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

METHODS = ("drlcli-trpo", "drlcli-ppo_kl", "sb3-trpo")


def run(method: str, seed: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if method.startswith("drlcli"):
        from drlcli import cli
        from drlcli.config import to_train_config
        from drlcli.runner import train

        algo = method.split("-")[1]
        cfg = to_train_config(
            cli._compose(
                [
                    f"algo={algo}",
                    "env=pendulum",
                    "algo.use_sde=false",  # the Gaussian trust region itself (issue #14)
                    f"seed={seed}",
                    f"total_timesteps={steps}",
                    "hardware.torch_threads=1",
                    "eval.every=0",
                    "checkpoint.every=0",
                    "log.progress=none",
                    "log.tensorboard=false",
                ]
            )
        )
        with tempfile.TemporaryDirectory() as tmp:
            result = train(cfg, tmp)
        ret = result.eval_mean_return
    else:
        from sb3_contrib import TRPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.evaluation import evaluate_policy

        env = make_vec_env("Pendulum-v1", n_envs=2, seed=seed)
        model = TRPO(
            "MlpPolicy",
            env,
            n_steps=1024,
            batch_size=128,
            learning_rate=1e-3,
            gamma=0.9,
            gae_lambda=0.95,
            cg_max_steps=15,
            cg_damping=0.1,
            line_search_shrinking_factor=0.8,
            line_search_max_iter=10,
            n_critic_updates=15,
            target_kl=0.01,
            seed=seed,
            device="cpu",
        )
        model.learn(total_timesteps=steps)
        eval_env = make_vec_env("Pendulum-v1", n_envs=1, seed=seed + 10_000)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
        ret = float(mean)
    return {"method": method, "seed": seed, "eval": ret, "wall_s": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = p.parse_args()
    jobs = [(m, s) for s in args.seeds for m in args.methods]
    results: dict[str, list[dict]] = {m: [] for m in args.methods}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run, m, s, args.steps) for m, s in jobs]
        for fut in futures:
            r = fut.result()
            results[r["method"]].append(r)
            print(f"{r['method']:14s} seed {r['seed']}: {r['eval']:8.1f} ({r['wall_s']:.0f} s)")
    print(f"\nPendulum-v1, {args.steps} steps, seeds {args.seeds}:")
    for m, rs in results.items():
        ev = sorted(r["eval"] for r in rs)
        print(
            f"  {m:14s} median {statistics.median(ev):8.1f}  range {ev[0]:8.1f} .. {ev[-1]:8.1f}  "
            f"wall median {statistics.median(r['wall_s'] for r in rs):.0f} s"
        )


if __name__ == "__main__":
    main()
