"""Per-family defaults chosen by measurement (issue #21): what `drl train algo=A env=E` gives on
an env without a tuned set.

Each candidate (a list of ``algo.*`` overrides, explicit so a rerun measures the same thing
whatever the defaults are now) trains
on every env of its family with the tuned sets switched off (``~tuned``), seeds 1..N, through the
real command (``benchmarks/results_table.py``'s runner). A run's score is its final evaluation
(10 deterministic episodes) normalized per env: 0 = a uniformly random policy (measured here, 20
episodes), 1 = the env config's ``solved_return``. The table gives each candidate's mean
normalized score per env and over all envs; the defaults in ``drlcli/config.py`` are the winners.

    python benchmarks/defaults_study.py                 # every family
    python benchmarks/defaults_study.py ppo dqn         # some families
    python benchmarks/defaults_study.py --table         # only print the table from what ran
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_table import ROOT, Row, run_seed


@dataclass(frozen=True)
class Family:
    algo: str
    envs: tuple[str, ...]
    budget: int
    candidates: dict[str, tuple[str, ...]]


CLASSIC_DISCRETE = ("cartpole", "acrobot", "mountaincar", "lunarlander")
CLASSIC_CONTINUOUS = ("pendulum", "mountaincar_continuous", "lunarlander_continuous")

FAMILIES = {
    "ppo": Family(
        "ppo",
        CLASSIC_DISCRETE + CLASSIC_CONTINUOUS,
        200_000,
        {
            # The defaults before this study (CleanRL-like): 128 steps per env, minibatch 256,
            # learning rate annealed to 0.
            "annealed_128": (
                "algo.num_steps=128",
                "algo.minibatch_size=256",
                "algo.anneal_lr=true",
            ),
            # Stable-Baselines3's PPO defaults: 2048 steps per env, minibatch 64, constant lr.
            # The winner: PPOConfig's defaults since.
            "sb3": (
                "algo.num_steps=2048",
                "algo.minibatch_size=64",
                "algo.anneal_lr=false",
            ),
        },
    ),
    "a2c": Family(
        "a2c",
        CLASSIC_DISCRETE + CLASSIC_CONTINUOUS,
        200_000,
        {
            "sb3": (),  # the defaults (Stable-Baselines3's A2C), kept
            # Adam and normalized advantages instead of SB3's RMSprop and raw advantages.
            "adam": ("algo.optimizer=adam", "algo.norm_adv=true"),
        },
    ),
    "dqn": Family(
        "dqn",
        CLASSIC_DISCRETE,
        100_000,
        {
            # Stable-Baselines3's DQN defaults, drlcli's before this study.
            "sb3": (
                "algo.learning_rate=1e-4",
                "algo.target_update_interval=1000",
                "algo.exploration_fraction=0.1",
                "algo.exploration_final_eps=0.05",
                "algo.batch_size=32",
            ),
            # The RL Zoo's classic-control choices that cost no more compute per step:
            # faster target updates, more exploration at the end, a larger learning rate.
            # The winner: DQNConfig's defaults since.
            "zoo_cheap": (
                "algo.learning_rate=6.3e-4",
                "algo.target_update_interval=250",
                "algo.exploration_fraction=0.12",
                "algo.exploration_final_eps=0.1",
                "algo.batch_size=128",
            ),
        },
    ),
    "trpo": Family(
        "trpo",
        CLASSIC_DISCRETE + CLASSIC_CONTINUOUS,
        200_000,
        {
            # The defaults: 1024 steps per env per rollout, 10 conjugate-gradient iterations.
            "current": (),
            # sb3-contrib's TRPO defaults where they differ (everything else is equal: KL radius
            # 0.01, damping 0.1, line search 0.8 x 10, critic Adam 1e-3 x 10 epochs of 128).
            "sb3_contrib": ("algo.num_steps=2048", "algo.cg_iters=15"),
        },
    ),
    "reinforce": Family(
        "reinforce",
        CLASSIC_DISCRETE + CLASSIC_CONTINUOUS,
        200_000,
        {
            # The defaults: Adam 1e-2 for the policy and the baseline, 5 full-batch baseline
            # passes, batches of >= 500 steps per env of whole episodes.
            "current": (),
            # Spinning Up's VPG rates: policy 3e-4, value function 1e-3 with 80 regression
            # passes per batch (its GAE-lambda advantages are not REINFORCE's; returns stay
            # Monte-Carlo reward-to-go here).
            "spinup": (
                "algo.learning_rate=3e-4",
                "algo.critic_learning_rate=1e-3",
                "algo.critic_epochs=80",
            ),
            # The defaults on 2.5x more, smaller batches (>= 200 steps per env).
            "short_batch": ("algo.num_steps=200",),
        },
    ),
    "ac": Family(
        "ac",
        CLASSIC_DISCRETE + CLASSIC_CONTINUOUS,
        200_000,
        {
            # The defaults before this study: one-step TD actor-critic, actor Adam 1e-3,
            # critic 5e-3.
            "current": ("algo.learning_rate=1e-3", "algo.critic_learning_rate=5e-3"),
            # Spinning Up's actor / value-function rates (3e-4 / 1e-3), 3-5x slower.
            # The winner: ACConfig's defaults since.
            "spinup": ("algo.learning_rate=3e-4", "algo.critic_learning_rate=1e-3"),
            # The earlier defaults plus an entropy bonus: one-step AC's seeds that fail collapse
            # to a near-deterministic policy early (CartPole ending at ~9 steps).
            "entropy": (
                "algo.learning_rate=1e-3",
                "algo.critic_learning_rate=5e-3",
                "algo.ent_coef=0.01",
            ),
        },
    ),
    # Off-policy, continuous control (Pendulum, MountainCarContinuous, LunarLanderContinuous) at
    # 50k steps: a fifth to a tenth of the Zoo's budgets outside Pendulum, what 2 cores afford
    # (~5 min per SAC run at one thread).
    "sac": Family(
        "sac",
        CLASSIC_CONTINUOUS,
        50_000,
        {
            # The defaults: Stable-Baselines3's SAC (lr 3e-4, tau 0.005, 100 random steps).
            "sb3": (),
            # The RL Zoo's choices for SAC on LunarLanderContinuous and BipedalWalker that cost no
            # more compute per step: a larger learning rate, faster target updates, 10k steps of
            # random actions first (256x256 kept: its 400x300 costs ~1.9x per step).
            "zoo_common": (
                "algo.learning_rate=7.3e-4",
                "algo.tau=0.01",
                "algo.learning_starts=10000",
            ),
        },
    ),
    "td3": Family(
        "td3",
        CLASSIC_CONTINUOUS,
        50_000,
        {
            # The defaults: 256x256, lr 3e-4, Gaussian noise 0.1, 100 random steps.
            "current": (),
            # Stable-Baselines3's TD3/DDPG network and learning rate (400x300, lr 1e-3), with the
            # RL Zoo's Gaussian noise 0.1 (SB3 itself adds none unless given one). ~1.5x the
            # compute per step.
            "sb3": (
                "algo.hidden_sizes=[400,300]",
                "algo.learning_rate=1e-3",
            ),
        },
    ),
}


def random_return(env: str, episodes: int = 20) -> float:
    """Mean return of uniformly random actions on the env config ``env`` (its own wrappers
    left out: the raw gymnasium env with the config's id and kwargs)."""
    import gymnasium as gym
    import yaml

    cfg = yaml.safe_load((ROOT / "conf" / "env" / f"{env}.yaml").read_text())
    e = gym.make(cfg["id"], **(cfg.get("kwargs") or {}))
    e.action_space.seed(0)
    total = 0.0
    for i in range(episodes):
        e.reset(seed=i)
        done = False
        while not done:
            _, r, term, trunc, _ = e.step(e.action_space.sample())
            total += float(r)
            done = term or trunc
    e.close()
    return total / episodes


def solved(env: str) -> float:
    import yaml

    cfg = yaml.safe_load((ROOT / "conf" / "env" / f"{env}.yaml").read_text())
    return float(cfg["solved_return"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("families", nargs="*", help=f"default all: {', '.join(FAMILIES)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "defaults")
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    names = args.families or list(FAMILIES)
    bad = [n for n in names if n not in FAMILIES]
    if bad:
        p.error(f"unknown famil(ies) {bad}; valid: {', '.join(FAMILIES)}")
    jobs = []
    for name in names:
        fam = FAMILIES[name]
        for cand, overrides in fam.candidates.items():
            for env in fam.envs:
                row = Row(fam.algo, env, fam.budget, None, overrides=("~tuned", *overrides))
                for seed in range(1, args.seeds + 1):
                    jobs.append((row, seed, args.out / name / cand))
    if not args.table:
        with ThreadPoolExecutor(args.jobs) as pool:
            for fut in [pool.submit(run_seed, r, s, out, r.budget) for r, s, out in jobs]:
                fut.result()
    baselines_file = args.out / "random_returns.json"
    baselines = json.loads(baselines_file.read_text()) if baselines_file.exists() else {}
    for name in names:
        fam = FAMILIES[name]
        for env in fam.envs:
            if env not in baselines:
                baselines[env] = random_return(env)
        baselines_file.parent.mkdir(parents=True, exist_ok=True)
        baselines_file.write_text(json.dumps(baselines, indent=1))
        print(f"\n{name} ({fam.budget // 1000}k steps, seeds 1-{args.seeds}, tuned sets off)")
        print("| candidate | " + " | ".join(fam.envs) + " | mean normalized |")
        print("|---" * (len(fam.envs) + 2) + "|")
        for cand in fam.candidates:
            cells, scores = [], []
            for env in fam.envs:
                runs = args.out / name / cand / f"{fam.algo}_{env}"
                res = [json.loads(p.read_text()) for p in sorted(runs.glob("s*/result.json"))]
                if not res:
                    cells.append("-")
                    continue
                ret = statistics.mean(r["eval_mean_return"] for r in res)
                lo, hi = baselines[env], solved(env)
                norm = (ret - lo) / (hi - lo)
                scores.append(norm)
                cells.append(f"{ret:.1f} ({norm:.2f})")
            mean = f"{statistics.mean(scores):.2f}" if scores else "-"
            print(f"| {cand} | " + " | ".join(cells) + f" | {mean} |")


if __name__ == "__main__":
    main()
