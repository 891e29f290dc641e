"""drlcli PPO vs Stable-Baselines3 on the spaces of issue #19, side by side:

* ``dict``: a Dict observation env (tests/envs_spaces.py ``DrlDictObs-v0``: a Discrete key
  and a Box key, the reward needs both) -- drlcli PPO vs SB3 PPO with ``MultiInputPolicy``
  (its CombinedExtractor one-hot encodes the Discrete key and flattens the Box, as drlcli does);
* ``dictimage``: ``DrlDictImageObs-v0`` (a 36 x 36 uint8 image key and a Box key, the reward
  needs both) -- the same pair; SB3 gives the image its NatureCNN (256 features) and flattens
  the vector, drlcli a Nature-CNN (512) and a 64x64 MLP, one torso shared by actor and critic
  on both sides;
* ``masked``: a masked-action env (``DrlMaskedChoiceMethod-v0``: a random legal subset of
  Discrete(5) each step, given by an ``action_masks()`` method; a masked action raises) --
  drlcli PPO vs sb3-contrib ``MaskablePPO``.

Same hyperparameters on both sides: 8 envs, 64 steps per env per rollout, minibatch 128,
10 epochs, Adam lr 1e-3 (constant), clip 0.2, GAE lambda 0.95, gamma 0 (the envs are one-step
contexts), normalized advantages, vf_coef 0.5, no entropy bonus, grad-norm clip 0.5, separate
64x64 tanh actor and critic with orthogonal init. Each (implementation, seed) trains in its own
subprocess with one torch thread; the implementations alternate so machine noise hits both.
Training wall time excludes evaluation; the final return is 20 deterministic episodes (masked
on both sides for the masked env).

    PYTHONPATH=. python benchmarks/bench_spaces.py [--envs dict masked] [--seeds 1 2 3]
        [--steps 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

ENV_IDS = {
    "dict": "DrlDictObs-v0",
    "dictimage": "DrlDictImageObs-v0",
    "masked": "DrlMaskedChoiceMethod-v0",
}
N_ENVS, N_STEPS, BATCH, EPOCHS, LR = 8, 64, 128, 10, 1e-3
EVAL_EPISODES = 20


def run_ours(which: str, seed: int, steps: int) -> dict:
    from drlcli import cli
    from drlcli.config import to_train_config
    from drlcli.runner import train

    cfg = to_train_config(
        cli._compose(
            [
                "algo=ppo",
                "env=gym",
                f"env.id=tests.envs_spaces:{ENV_IDS[which]}",
                f"env.num_envs={N_ENVS}",
                f"algo.num_steps={N_STEPS}",
                f"algo.minibatch_size={BATCH}",
                f"algo.update_epochs={EPOCHS}",
                f"algo.learning_rate={LR}",
                "algo.anneal_lr=false",
                "algo.gamma=0",
                "algo.ent_coef=0",
                f"seed={seed}",
                f"total_timesteps={steps}",
                "hardware.torch_threads=1",
                "eval.every=0",
                f"eval.episodes={EVAL_EPISODES}",
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


def run_sb3(which: str, seed: int, steps: int) -> dict:
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    import tests.envs_spaces  # noqa: F401  (registers the envs)

    torch.set_num_threads(1)
    env = make_vec_env(ENV_IDS[which], n_envs=N_ENVS, seed=seed)
    common = {
        "n_steps": N_STEPS,
        "batch_size": BATCH,
        "n_epochs": EPOCHS,
        "learning_rate": LR,
        "gamma": 0.0,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "seed": seed,
        "device": "cpu",
    }
    eval_env = make_vec_env(ENV_IDS[which], n_envs=1, seed=seed + 10_000)
    if which in ("dict", "dictimage"):
        from stable_baselines3 import PPO
        from stable_baselines3.common.evaluation import evaluate_policy

        model: object = PPO("MultiInputPolicy", env, **common)
        evaluate = evaluate_policy
    else:
        from sb3_contrib import MaskablePPO
        from sb3_contrib.common.maskable.evaluation import evaluate_policy as evaluate_masked

        model = MaskablePPO("MlpPolicy", env, **common)
        evaluate = evaluate_masked  # type: ignore[assignment]
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)  # type: ignore[attr-defined]
    train_s = time.perf_counter() - t0
    mean, _ = evaluate(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)  # type: ignore[arg-type]
    return {"train_s": train_s, "steps": int(model.num_timesteps), "eval": float(mean)}  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENV_IDS), choices=list(ENV_IDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "ENV", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, which, seed = args.child
        fn = run_ours if impl == "drlcli" else run_sb3
        print(json.dumps(fn(which, int(seed), args.steps)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"PPO, {args.steps} steps, seeds {args.seeds}, 1 torch thread")
    for col in ("env", "drlcli SPS", "SB3 SPS", "ratio", "drlcli returns", "SB3 returns"):
        table.add_column(col, justify="right")
    for which in args.envs:
        rows: dict[str, list[dict]] = {"drlcli": [], "sb3": []}
        for i, seed in enumerate(args.seeds):
            for impl in ["drlcli", "sb3"] if i % 2 == 0 else ["sb3", "drlcli"]:
                cmd = [sys.executable, __file__, "--child", impl, which, str(seed)]
                cmd += ["--steps", str(args.steps)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    console.print(
                        f"[red]{impl} {which} seed {seed} failed:[/red]\n{out.stderr[-2000:]}"
                    )
                    sys.exit(1)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                res["sps"] = res["steps"] / res["train_s"]
                rows[impl].append(res)
                console.print(
                    f"{which} {impl:7s} seed {seed}: {res['sps']:.0f} SPS, eval {res['eval']:.2f}"
                )
        med = {k: statistics.median(r["sps"] for r in v) for k, v in rows.items()}
        table.add_row(
            which,
            f"{med['drlcli']:.0f}",
            f"{med['sb3']:.0f}",
            f"{med['drlcli'] / med['sb3']:.2f}x",
            ", ".join(f"{r['eval']:.2f}" for r in rows["drlcli"]),
            ", ".join(f"{r['eval']:.2f}" for r in rows["sb3"]),
        )
    console.print(table)


if __name__ == "__main__":
    main()
