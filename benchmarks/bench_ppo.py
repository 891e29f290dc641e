"""drlcli PPO vs Stable-Baselines3 PPO on CartPole-v1, same hyperparameters, side by side.

RL Baselines3 Zoo's CartPole-v1 set: 8 envs x 32 steps (batch 256), minibatch 256, 20 epochs,
gamma 0.98, GAE lambda 0.8, lr 1e-3 linearly annealed to 0, clip 0.2, no entropy bonus,
64x64 tanh actor and critic. Each (implementation, seed) trains in its own subprocess with the
same torch thread count, and the two implementations alternate so machine noise hits both.
Training wall time excludes evaluation (ours evaluates only once, after training, like SB3
here); the final return is 10 deterministic episodes on a fresh env.

    python benchmarks/bench_ppo.py [--seeds 1 2 3] [--steps 100000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def run_ours(seed: int, steps: int, threads: int) -> dict:
    from drlcli import cli
    from drlcli.config import to_train_config
    from drlcli.runner import train

    cfg = to_train_config(
        cli._compose(
            [
                "algo=ppo",
                "env=cartpole",
                f"seed={seed}",
                f"total_timesteps={steps}",
                f"hardware.torch_threads={threads}",
                "eval.every=0",
                "checkpoint.every=0",
                "log.progress=none",
            ]
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train(cfg, tmp)
        total = time.perf_counter() - t0
    return {
        "train_s": result.train_time_s,
        "total_s": total,
        "steps": result.global_step,
        "eval": result.eval_mean_return,
    }


def run_sb3(seed: int, steps: int, threads: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=lambda progress_remaining: 1e-3 * progress_remaining,
        clip_range=0.2,
        ent_coef=0.0,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return {
        "train_s": train_s,
        "total_s": time.perf_counter() - t_start,
        "steps": int(model.num_timesteps),
        "eval": float(mean),
    }


def child(impl: str, seed: int, steps: int, threads: int) -> None:
    fn = run_ours if impl == "drlcli" else run_sb3
    print(json.dumps(fn(seed, steps, threads)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.steps, args.threads)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows: dict[str, list[dict]] = {"drlcli": [], "sb3": []}
    for i, seed in enumerate(args.seeds):
        order = ["drlcli", "sb3"] if i % 2 == 0 else ["sb3", "drlcli"]
        for impl in order:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                impl,
                str(seed),
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                console.print(f"[red]{impl} seed {seed} failed:[/red]\n{out.stderr[-2000:]}")
                sys.exit(1)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["seed"] = seed
            res["sps"] = res["steps"] / res["train_s"]
            rows[impl].append(res)
            console.print(
                f"{impl:7s} seed {seed}: {res['train_s']:.1f}s  "
                f"{res['sps']:.0f} SPS  eval {res['eval']:.1f}"
            )

    table = Table(title=f"PPO CartPole-v1, {args.steps} steps, {args.threads} torch thread(s)")
    for col in ("impl", "seed", "train wall (s)", "SPS", "final eval return"):
        table.add_column(col, justify="right")
    for impl, results in rows.items():
        for r in results:
            table.add_row(
                impl, str(r["seed"]), f"{r['train_s']:.1f}", f"{r['sps']:.0f}", f"{r['eval']:.1f}"
            )
    console.print(table)
    med = {k: statistics.median(r["sps"] for r in v) for k, v in rows.items()}
    ratios = [o["sps"] / s["sps"] for o, s in zip(rows["drlcli"], rows["sb3"])]
    console.print(
        f"median SPS: drlcli {med['drlcli']:.0f}, SB3 {med['sb3']:.0f}; "
        f"ratio drlcli/SB3 = {med['drlcli'] / med['sb3']:.2f}x "
        f"(per-seed ratios {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"median final eval: drlcli {statistics.median(r['eval'] for r in rows['drlcli']):.1f}, "
        f"SB3 {statistics.median(r['eval'] for r in rows['sb3']):.1f}"
    )


if __name__ == "__main__":
    main()
