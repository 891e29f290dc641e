"""drlcli vs Stable-Baselines3 and SBX off-policy: DQN on CartPole-v1, SAC, TD3, CrossQ on Pendulum.

Hyperparameters are RL Baselines3 Zoo's sets (the same ones drlcli ships in conf/tuned/):
  DQN CartPole-v1 (50k steps): lr 2.3e-3, batch 64, buffer 100k, learning_starts 1000,
      gamma 0.99, target_update_interval 10, train_freq 256, gradient_steps 128,
      exploration_fraction 0.16, final eps 0.04, 256x256 ReLU.
  SAC Pendulum-v1 (20k steps): lr 1e-3, otherwise SB3 defaults (256x256, batch 256, tau 0.005,
      buffer 1M, learning_starts 100, automatic entropy).
  TD3 Pendulum-v1 (20k steps): lr 1e-3, gamma 0.98, buffer 200k, learning_starts 10000,
      400x300, Gaussian action noise 0.1.
  CrossQ Pendulum-v1 (20k steps), against SBX's CrossQ (JAX; the `bench-jax` extra): the
      paper's settings (lr 1e-3, Adam beta1 0.5, policy delay 3, batch 256, learning_starts 100,
      no target networks) with 256x256 actor and critics on both sides (conf/tuned/
      crossq_pendulum.yaml). SBX's time includes its jit compilation (a few seconds).
Each (implementation, algo, seed) runs in its own process with the same torch (or XLA) thread
count, alternating implementations; SBX runs are confined to that many CPUs, every run with
--pin. SPS is training-loop steps per second; the final return is 10
deterministic episodes.

    python benchmarks/bench_offpolicy.py [--algos dqn sac td3 crossq] [--seeds 1] [--threads 2]
                                         [--pin]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

SETTINGS = {
    "dqn": ("cartpole", "CartPole-v1", 50_000),
    "sac": ("pendulum", "Pendulum-v1", 20_000),
    "td3": ("pendulum", "Pendulum-v1", 20_000),
    "crossq": ("pendulum", "Pendulum-v1", 20_000),
}
# The reference implementations each algorithm is measured against: SB3 (PyTorch) and, for
# SAC / TD3 / CrossQ, SBX (JAX; issue #15 asks for >= 1.0x SBX's SPS at the same thread count).
PEERS = {"dqn": ["sb3"], "sac": ["sb3", "sbx"], "td3": ["sb3", "sbx"], "crossq": ["sbx"]}
# The Zoo's TD3 Pendulum-v1 set as SB3 and SBX both take it (their action noise added per run).
TD3_ZOO = {
    "learning_rate": 1e-3,
    "gamma": 0.98,
    "buffer_size": 200_000,
    "learning_starts": 10_000,
    "policy_kwargs": {"net_arch": [400, 300]},
}


def run_ours(algo: str, seed: int, threads: int) -> dict:
    from drlcli import cli
    from drlcli.config import to_train_config
    from drlcli.runner import train

    env, _, steps = SETTINGS[algo]
    cfg = to_train_config(
        cli._compose(
            [
                f"algo={algo}",
                f"env={env}",
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


def run_sb3(algo: str, seed: int, threads: int) -> dict:
    import numpy as np
    import torch
    from stable_baselines3 import DQN, SAC, TD3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(threads)
    _, env_id, steps = SETTINGS[algo]
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    if algo == "dqn":
        model = DQN(
            "MlpPolicy",
            env,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs={"net_arch": [256, 256]},
            seed=seed,
            device="cpu",
        )
    elif algo == "sac":
        model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device="cpu")
    else:
        noise = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))  # Zoo: std 0.1 in raw units
        model = TD3("MlpPolicy", env, action_noise=noise, seed=seed, device="cpu", **TD3_ZOO)
    return learn_and_evaluate(model, env_id, steps, seed)


def learn_and_evaluate(model: Any, env_id: str, steps: int, seed: int) -> dict:
    """Train an SB3-API model (SB3 or SBX) for ``steps``; its training wall time, steps and the
    mean of 10 deterministic episodes on a fresh env seeded apart from training."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 10_000)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return {"train_s": train_s, "steps": int(model.num_timesteps), "eval": float(mean)}


def pin_cpus(threads: int) -> None:
    """Confine this process to the first ``threads`` CPUs it may use (Linux; else a no-op)."""
    import os

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])


def run_sbx(algo: str, seed: int, threads: int) -> dict:
    import os

    # Thread for thread: XLA's flags, set before jax is imported, do not stop its Eigen pool
    # (two tf_XLAEigen threads stayed busy with them alone), so main() also confines an SBX
    # child to `threads` CPUs (pin_cpus).
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_cpu_multi_thread_eigen="
        + ("true" if threads > 1 else "false")
        + f" intra_op_parallelism_threads={threads}"
    )
    import numpy as np
    from sbx import SAC, TD3, CrossQ
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    _, env_id, steps = SETTINGS[algo]
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    model: Any
    if algo == "crossq":
        model = CrossQ(
            "MlpPolicy",
            env,
            learning_rate=1e-3,
            learning_starts=100,
            batch_size=256,
            policy_delay=3,
            policy_kwargs={"net_arch": {"pi": [256, 256], "qf": [256, 256]}},
            seed=seed,
        )
    elif algo == "sac":  # the same Zoo set as run_sb3 (SBX's defaults match SB3's otherwise)
        model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed)
    elif algo == "td3":
        noise = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
        model = TD3("MlpPolicy", env, action_noise=noise, seed=seed, **TD3_ZOO)
    else:
        raise ValueError(f"no SBX peer for {algo}")
    return learn_and_evaluate(model, env_id, steps, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["dqn", "sac", "td3", "crossq"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="confine every run to --threads CPUs (SBX runs always are: XLA starts its own pool)",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("IMPL", "ALGO", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        impl, algo, seed = args.child
        if impl == "sbx" or args.pin:
            pin_cpus(args.threads)
        fn = {"drlcli": run_ours, "sb3": run_sb3, "sbx": run_sbx}[impl]
        print(json.dumps(fn(algo, int(seed), args.threads)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    results: dict[tuple[str, str], list[dict]] = {}
    for algo in args.algos:
        impls = ["drlcli", *PEERS[algo]]
        for i, seed in enumerate(args.seeds):
            for impl in impls if i % 2 == 0 else impls[::-1]:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    impl,
                    algo,
                    str(seed),
                    "--threads",
                    str(args.threads),
                    *(["--pin"] if args.pin else []),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    console.print(
                        f"[red]{impl} {algo} seed {seed} failed[/red]\n{out.stderr[-2000:]}"
                    )
                    sys.exit(1)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["sps"] = r["steps"] / r["train_s"]
                results.setdefault((algo, impl), []).append(r)
                console.print(
                    f"{algo} {impl:7s} seed {seed}: {r['train_s']:.1f}s "
                    f"{r['sps']:.0f} SPS eval {r['eval']:.1f}"
                )

    table = Table(title=f"Off-policy, {args.threads} torch thread(s), seeds {args.seeds}")
    for col in (
        "algo",
        "env",
        "peer",
        "drlcli SPS",
        "peer SPS",
        "ratio",
        "drlcli eval",
        "peer eval",
    ):
        table.add_column(col, justify="right")
    for algo in args.algos:
        for peer in PEERS[algo]:
            ours, ref = results[(algo, "drlcli")], results[(algo, peer)]
            o_sps = statistics.median(r["sps"] for r in ours)
            s_sps = statistics.median(r["sps"] for r in ref)
            table.add_row(
                algo,
                SETTINGS[algo][1],
                peer.upper(),
                f"{o_sps:.0f}",
                f"{s_sps:.0f}",
                f"{o_sps / s_sps:.2f}x",
                ", ".join(f"{r['eval']:.1f}" for r in ours),
                ", ".join(f"{r['eval']:.1f}" for r in ref),
            )
    console.print(table)


if __name__ == "__main__":
    main()
