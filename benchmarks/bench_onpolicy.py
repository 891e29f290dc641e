"""drlcli A2C / TRPO vs Stable-Baselines3 A2C / SB3-contrib TRPO on CartPole-v1, side by side.

Same hyperparameters on both sides (64x64 tanh actor and critic, orthogonal init, 8 envs):

* A2C (RL Baselines3 Zoo's CartPole set = SB3 defaults): 5 steps per env per update, RMSprop
  lr 7e-4 (alpha 0.99, eps 1e-5), gamma 0.99, n-step returns (lambda 1), vf_coef 0.5, no
  entropy bonus, grad-norm clip 0.5.
* TRPO: 1024 steps per env per update, KL radius 0.01, 10 CG iterations, damping 0.1,
  backtracking 0.8 x 10, GAE lambda 0.95, normalized advantages, critic 10 epochs of
  minibatch-128 Adam at lr 1e-3.

Each (implementation, seed) trains in its own subprocess with the same torch thread count; the
implementations alternate so machine noise hits both. Training wall time excludes evaluation;
the final return is 10 deterministic episodes on a fresh env.

    python benchmarks/bench_onpolicy.py [--algos a2c trpo] [--seeds 1 2 3] [--steps 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def run_ours(algo: str, seed: int, steps: int, threads: int) -> dict:
    from drlcli import cli
    from drlcli.config import to_train_config
    from drlcli.runner import train

    cfg = to_train_config(
        cli._compose(
            [
                f"algo={algo}",
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
        result = train(cfg, tmp)
    return {
        "train_s": result.train_time_s,
        "steps": result.global_step,
        "eval": result.eval_mean_return,
    }


def run_sb3(algo: str, seed: int, steps: int, threads: int) -> dict:
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(threads)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model: object
    if algo == "a2c":
        from stable_baselines3 import A2C

        model = A2C(
            "MlpPolicy",
            env,
            n_steps=5,
            learning_rate=7e-4,
            gamma=0.99,
            gae_lambda=1.0,
            ent_coef=0.0,
            vf_coef=0.5,
            max_grad_norm=0.5,
            rms_prop_eps=1e-5,
            use_rms_prop=True,
            normalize_advantage=False,
            seed=seed,
            device="cpu",
        )
    else:
        from sb3_contrib import TRPO

        model = TRPO(
            "MlpPolicy",
            env,
            n_steps=1024,
            batch_size=128,
            learning_rate=1e-3,
            gamma=0.99,
            gae_lambda=0.95,
            cg_max_steps=10,
            cg_damping=0.1,
            line_search_shrinking_factor=0.8,
            line_search_max_iter=10,
            n_critic_updates=10,
            target_kl=0.01,
            normalize_advantage=True,
            seed=seed,
            device="cpu",
        )
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)  # type: ignore[attr-defined]
    train_s = time.perf_counter() - t0
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)  # type: ignore[arg-type]
    return {"train_s": train_s, "steps": int(model.num_timesteps), "eval": float(mean)}  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["a2c", "trpo"], choices=["a2c", "trpo"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--child", nargs=3, metavar=("IMPL", "ALGO", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        impl, algo, seed = args.child
        fn = run_ours if impl == "drlcli" else run_sb3
        print(json.dumps(fn(algo, int(seed), args.steps, args.threads)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"CartPole-v1, {args.steps} steps, {args.threads} torch thread(s)")
    for col in (
        "algo",
        "drlcli SPS (median)",
        "SB3 SPS (median)",
        "ratio",
        "per-seed ratios",
        "drlcli eval",
        "SB3 eval",
    ):
        table.add_column(col, justify="right")
    for algo in args.algos:
        rows: dict[str, list[dict]] = {"drlcli": [], "sb3": []}
        for i, seed in enumerate(args.seeds):
            for impl in ["drlcli", "sb3"] if i % 2 == 0 else ["sb3", "drlcli"]:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    impl,
                    algo,
                    str(seed),
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    console.print(
                        f"[red]{impl} {algo} seed {seed} failed:[/red]\n{out.stderr[-2000:]}"
                    )
                    sys.exit(1)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res["sps"] = res["steps"] / res["train_s"]
                rows[impl].append(res)
                console.print(
                    f"{algo} {impl:7s} seed {seed}: {res['sps']:.0f} SPS, eval {res['eval']:.1f}"
                )
        med = {k: statistics.median(r["sps"] for r in v) for k, v in rows.items()}
        ratios = [o["sps"] / s["sps"] for o, s in zip(rows["drlcli"], rows["sb3"])]
        table.add_row(
            algo,
            f"{med['drlcli']:.0f}",
            f"{med['sb3']:.0f}",
            f"{med['drlcli'] / med['sb3']:.2f}x",
            ", ".join(f"{r:.2f}" for r in ratios),
            f"{statistics.median(r['eval'] for r in rows['drlcli']):.1f}",
            f"{statistics.median(r['eval'] for r in rows['sb3']):.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
