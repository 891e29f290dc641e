"""Learning curves of drlcli and Stable-Baselines3 on the env zoo at the same env steps (not run
in CI): SAC on HalfCheetah-v5 (RL Zoo set) and PPO on an Atari game (PPO paper set, standard
preprocessing; SB3 through its own make_atari_env + VecFrameStack pipeline); A2C on
LunarLander-v3 (RL Zoo set: 8 envs x 5 steps, gamma 0.995, lr 8.3e-4 annealed); TRPO on
LunarLanderContinuous (the Zoo's sb3-contrib set, VecNormalize on SB3's side); SAC on
LunarLanderContinuous with each library's defaults (no tuned set on either side).

    python benchmarks/zoo_compare.py sac-halfcheetah --steps 50000 --every 10000
    python benchmarks/zoo_compare.py ppo-breakout --steps 100000 --every 20000
    python benchmarks/zoo_compare.py a2c-lunarlander --steps 200000 --every 50000 --impl sb3

    python benchmarks/zoo_compare.py report drlcli.jsonl sb3.jsonl   # saved lines -> Markdown

Prints one JSON line per implementation: [(step, mean eval return), ...]; 5 deterministic
evaluation episodes (SB3: EvalCallback on a Monitor-wrapped env, i.e. raw game scores).
Both use one torch thread (and one OpenCV thread), so `--impl drlcli` and `--impl sb3` can run
side by side on a 2-core machine, one core each, at comparable speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np


def ours(task: str, steps: int, every: int, seed: int) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from drlcli import cli
    from drlcli.config import to_train_config
    from drlcli.runner import train

    algo, env = task.split("-")
    cfg = to_train_config(
        cli._compose(
            [
                f"algo={algo}",
                f"env={env}",
                f"seed={seed}",
                f"total_timesteps={steps}",
                f"eval.every={every}",
                "eval.episodes=5",
                "checkpoint.every=0",
                "log.progress=none",
                "hardware.torch_threads=1",
            ]
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(cfg, tmp)
        wall = time.perf_counter() - t0
        acc = EventAccumulator(tmp, size_guidance={"scalars": 0})
        acc.Reload()
        curve = [(e.step, round(e.value, 1)) for e in acc.Scalars("eval/mean_return")]
        episodes = [(e.step, e.value) for e in acc.Scalars("charts/episodic_return")]
    return {
        "impl": "drlcli",
        "task": task,
        "curve": curve,
        "train_curve": train_curve(episodes, [s for s, _ in curve], every),
        "wall_s": round(wall),
    }


def train_curve(
    episodes: list[tuple[int, float]], points: list[int], every: int
) -> list[tuple[int, float | None]]:
    """Mean raw return (whole games for Atari) of the training episodes that ended in the
    `every` steps up to each point: the curve papers plot, less noisy than 5 greedy games."""
    out: list[tuple[int, float | None]] = []
    for point in points:
        window = [r for s, r in episodes if point - every < s <= point]
        out.append((point, round(sum(window) / len(window), 1) if window else None))
    return out


def sb3(task: str, steps: int, every: int, seed: int) -> dict:
    import torch
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback

    torch.set_num_threads(1)
    if task == "a2c-lunarlander":  # the RL Zoo's set (conf/tuned/a2c_lunarlander.yaml)
        from stable_baselines3 import A2C
        from stable_baselines3.common.env_util import make_vec_env

        env = make_vec_env("LunarLander-v3", n_envs=8, seed=seed)
        eval_env = make_vec_env("LunarLander-v3", n_envs=1, seed=seed + 10_000)
        model = A2C(
            "MlpPolicy",
            env,
            n_steps=5,
            gamma=0.995,
            learning_rate=lambda f: 8.3e-4 * f,
            ent_coef=1e-5,
            seed=seed,
            device="cpu",
        )
        freq = every // 8
    elif task == "trpo-lunarlander_continuous":  # the Zoo's sb3-contrib set, as ours
        from sb3_contrib import TRPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize

        kw = {"continuous": True}
        env = VecNormalize(make_vec_env("LunarLander-v3", n_envs=2, seed=seed, env_kwargs=kw))
        eval_env = VecNormalize(
            make_vec_env("LunarLander-v3", n_envs=1, seed=seed + 10_000, env_kwargs=kw),
            training=False,
            norm_reward=False,
        )  # EvalCallback copies the training statistics into it before each evaluation
        model = TRPO(
            "MlpPolicy",
            env,
            n_steps=1024,
            n_critic_updates=20,
            learning_rate=1e-3,
            target_kl=0.01,
            cg_max_steps=15,
            cg_damping=0.1,
            gae_lambda=0.95,
            gamma=0.99,
            seed=seed,
            device="cpu",
        )
        freq = every // 2
    elif task == "sac-lunarlander_continuous":  # SB3's SAC defaults, as drlcli's (no tuned set)
        from stable_baselines3 import SAC
        from stable_baselines3.common.env_util import make_vec_env

        kw = {"continuous": True}
        # One env (what SB3's users get); drlcli's env config steps 16, at the same replay
        # ratio of one gradient step per env step.
        env = make_vec_env("LunarLander-v3", n_envs=1, seed=seed, env_kwargs=kw)
        eval_env = make_vec_env("LunarLander-v3", n_envs=1, seed=seed + 10_000, env_kwargs=kw)
        model = SAC("MlpPolicy", env, seed=seed, device="cpu")
        freq = every
    elif task == "td3-lunarlander_continuous":  # the Zoo's set (tuned/td3_lunarlander_continuous)
        from stable_baselines3 import TD3
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.noise import NormalActionNoise

        kw = {"continuous": True}
        env = make_vec_env("LunarLander-v3", n_envs=1, seed=seed, env_kwargs=kw)
        eval_env = make_vec_env("LunarLander-v3", n_envs=1, seed=seed + 10_000, env_kwargs=kw)
        model = TD3(
            "MlpPolicy",
            env,
            gamma=0.98,
            buffer_size=200_000,
            learning_starts=10_000,
            action_noise=NormalActionNoise(np.zeros(2), 0.1 * np.ones(2)),
            # The Zoo trains at episode ends, as many gradient steps as env steps since the
            # last; drlcli's set steps once per env step: the same replay ratio.
            train_freq=(1, "episode"),
            gradient_steps=-1,
            learning_rate=1e-3,
            policy_kwargs={"net_arch": [400, 300]},
            seed=seed,
            device="cpu",
        )
        freq = every
    elif task.startswith("sac"):
        from stable_baselines3 import SAC
        from stable_baselines3.common.env_util import make_vec_env

        env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=seed)
        eval_env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=seed + 10_000)
        model = SAC("MlpPolicy", env, learning_starts=10_000, seed=seed, device="cpu")
        freq = every
    else:
        import ale_py
        import gymnasium as gym
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        game = {"ppo-breakout": "ALE/Breakout-v5", "ppo-pong": "ALE/Pong-v5"}[task]
        kw = {"frameskip": 1}
        env = VecFrameStack(make_atari_env(game, n_envs=8, seed=seed, env_kwargs=kw), 4)
        eval_env = VecFrameStack(
            make_atari_env(game, n_envs=1, seed=seed + 10_000, env_kwargs=kw), 4
        )
        model = PPO(
            "CnnPolicy",
            env,
            n_steps=128,
            batch_size=256,
            n_epochs=4,
            learning_rate=lambda f: 2.5e-4 * f,
            clip_range=0.1,
            ent_coef=0.01,
            vf_coef=0.5,
            seed=seed,
            device="cpu",
        )
        freq = every // 8
    # EvalCallback keeps its history only when it has a log_path.
    callback = EvalCallback(
        eval_env,
        n_eval_episodes=5,
        eval_freq=freq,
        deterministic=True,
        log_path=tempfile.mkdtemp(),
        verbose=0,
    )
    episodes: list[tuple[int, float]] = []

    class Episodes(BaseCallback):
        """Whole-game raw scores from the Monitor wrapper (below SB3's Atari wrappers)."""

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    episodes.append((self.num_timesteps, float(info["episode"]["r"])))
            return True

    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=CallbackList([callback, Episodes()]))
    wall = time.perf_counter() - t0
    curve = [
        (int(s), round(float(sum(r) / len(r)), 1))
        for s, r in zip(callback.evaluations_timesteps, callback.evaluations_results)
    ]
    return {
        "impl": "sb3",
        "task": task,
        "curve": curve,
        "train_curve": train_curve(episodes, [s for s, _ in curve], every),
        "wall_s": round(wall),
    }


def _one_thread() -> None:
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def report(paths: list[str]) -> str:
    """Markdown: per task and eval step, the median over seeds of each implementation's greedy
    eval return and training-episode return, with the per-seed values; median wall time."""
    import statistics
    from collections import defaultdict
    from pathlib import Path

    lines = [ln for p in paths for ln in Path(p).read_text().splitlines() if ln.strip()]
    rows = [json.loads(ln) for ln in lines]
    # task -> metric -> impl -> seed -> {step: value}
    data: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    walls: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        # Eval steps differ a little (whole PPO rollouts): file each at the nearest eval point.
        every = r.get("every") or round(r["steps"] / len(r["curve"]))
        for metric in ("curve", "train_curve"):
            if metric in r:
                points = {round(s / every) * every: v for s, v in r[metric] if v is not None}
                data[r["task"]][metric][r["impl"]][r["seed"]] = points
        walls[r["task"]][r["impl"]].append(r["wall_s"])
    titles = {"curve": "greedy eval, 5 games", "train_curve": "training episodes"}
    out = []
    for task, metrics in sorted(data.items()):
        for metric, by_impl in metrics.items():
            impls = [i for i in ("drlcli", "sb3") if i in by_impl]
            seeds = {i: sorted(by_impl[i]) for i in impls}
            out.append(
                f"{task}, {titles[metric]}: seeds " + "; ".join(f"{i} {seeds[i]}" for i in impls)
            )
            out.append("")
            out.append("| steps | " + " | ".join(f"{i} median (per seed)" for i in impls) + " |")
            out.append("|---|" + "---|" * len(impls))
            steps = sorted({s for i in impls for c in by_impl[i].values() for s in c})
            for step in steps:
                cells = []
                for i in impls:
                    vals = [by_impl[i][sd][step] for sd in seeds[i] if step in by_impl[i][sd]]
                    med = f"{statistics.median(vals):.1f}" if vals else "-"
                    cells.append(f"{med} ({' / '.join(f'{v:.1f}' for v in vals)})")
                out.append(f"| {step:,} | " + " | ".join(cells) + " |")
            out.append("")
        wall = ", ".join(f"{i} {statistics.median(w):.0f}" for i, w in walls[task].items())
        out.append(f"{task} median wall time (s): {wall}\n")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "report":
        print(report(sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="`zoo_compare.py report FILE...` turns saved JSON lines into a Markdown table.",
    )
    parser.add_argument(
        "task",
        choices=[
            "sac-halfcheetah",
            "ppo-breakout",
            "ppo-pong",
            "a2c-lunarlander",
            "trpo-lunarlander_continuous",
            "sac-lunarlander_continuous",
            "td3-lunarlander_continuous",
        ],
    )
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--impl", choices=["both", "drlcli", "sb3"], default="both")
    args = parser.parse_args()
    _one_thread()
    for impl in ("drlcli", "sb3"):
        if args.impl in ("both", impl):
            fn = ours if impl == "drlcli" else sb3
            result = fn(args.task, args.steps, args.every, args.seed)
            meta = {"seed": args.seed, "steps": args.steps, "every": args.every}
            print(json.dumps({**result, **meta}), flush=True)


if __name__ == "__main__":
    main()
