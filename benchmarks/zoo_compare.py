"""Learning curves of drlcli and Stable-Baselines3 on the env zoo at the same env steps (not run
in CI): SAC on HalfCheetah-v5 (RL Zoo set) and PPO on an Atari game (PPO paper set, standard
preprocessing; SB3 through its own make_atari_env + VecFrameStack pipeline).

    python benchmarks/zoo_compare.py sac-halfcheetah --steps 50000 --every 10000
    python benchmarks/zoo_compare.py ppo-breakout --steps 100000 --every 20000

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
    return {"impl": "drlcli", "task": task, "curve": curve, "wall_s": round(wall)}


def sb3(task: str, steps: int, every: int, seed: int) -> dict:
    import torch
    from stable_baselines3.common.callbacks import EvalCallback

    torch.set_num_threads(1)
    if task.startswith("sac"):
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
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callback)
    wall = time.perf_counter() - t0
    curve = [
        (int(s), round(float(sum(r) / len(r)), 1))
        for s, r in zip(callback.evaluations_timesteps, callback.evaluations_results)
    ]
    return {"impl": "sb3", "task": task, "curve": curve, "wall_s": round(wall)}


def _one_thread() -> None:
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def report(paths: list[str]) -> str:
    """Markdown: per task and eval step, the median over seeds of each implementation's mean
    eval return, with the per-seed values; then the median wall time."""
    import statistics
    from collections import defaultdict
    from pathlib import Path

    lines = [ln for p in paths for ln in Path(p).read_text().splitlines() if ln.strip()]
    rows = [json.loads(ln) for ln in lines]
    curves: dict = defaultdict(lambda: defaultdict(dict))  # task -> impl -> seed -> curve
    walls: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        curves[r["task"]][r["impl"]][r["seed"]] = dict(r["curve"])
        walls[r["task"]][r["impl"]].append(r["wall_s"])
    out = []
    for task, by_impl in sorted(curves.items()):
        impls = [i for i in ("drlcli", "sb3") if i in by_impl]
        seeds = {i: sorted(by_impl[i]) for i in impls}
        out.append(f"{task}: seeds " + "; ".join(f"{i} {seeds[i]}" for i in impls))
        out.append("")
        out.append("| steps | " + " | ".join(f"{i} median (per seed)" for i in impls) + " |")
        out.append("|---|" + "---|" * len(impls))
        steps = sorted({s for i in impls for c in by_impl[i].values() for s in c})
        for step in steps:
            cells = []
            for i in impls:
                vals = [by_impl[i][seed][step] for seed in seeds[i] if step in by_impl[i][seed]]
                med = statistics.median(vals) if vals else float("nan")
                cells.append(f"{med:.1f} ({' / '.join(f'{v:.1f}' for v in vals)})")
            out.append(f"| {step:,} | " + " | ".join(cells) + " |")
        wall = ", ".join(f"{i} {statistics.median(walls[task][i]):.0f}" for i in impls)
        out.append(f"\nmedian wall time (s): {wall}\n")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "report":
        print(report(sys.argv[2:]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="`zoo_compare.py report FILE...` turns saved JSON lines into a Markdown table.",
    )
    parser.add_argument("task", choices=["sac-halfcheetah", "ppo-breakout", "ppo-pong"])
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
            print(json.dumps({**result, "seed": args.seed, "steps": args.steps}), flush=True)


if __name__ == "__main__":
    main()
