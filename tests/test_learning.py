"""Learning tests: real training with real return thresholds, over several seeds (issue #22).

RL training is chaotic: a last-bit difference in a float kernel (CPU model, thread count, a
library's code path) sends one seed to another outcome, so a single-seed test that passes on one
machine fails on the next. Each test here trains seeds 1-3 (two processes at a time, one torch
thread each unless ``DRL_TEST_TORCH_THREADS`` says otherwise) and asserts that at least
``need`` of them reach the threshold. The distributions quoted in each case were measured with
``python benchmarks/seed_spread.py --seeds 10`` (seeds 1-10, one torch thread, 2026-11-30).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests.learning_cases import TEST_THREADS, run_case

pytestmark = pytest.mark.learning

SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def pool():
    # spawn: a fresh interpreter per worker (forking a process that already ran torch's OpenMP
    # pool can deadlock). The suite is sized for two cores: two one-thread runs at a time, or
    # one at a time with DRL_TEST_TORCH_THREADS=2 (spinning OpenMP threads on shared cores
    # slow every run down many times over, issue #15).
    workers = max(2 // TEST_THREADS, 1)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


def train_seeds(pool, case: str, seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    futures = [pool.submit(run_case, case, s, TEST_THREADS) for s in seeds]
    return [f.result() for f in futures]


def check(results: list[dict], threshold: float, need: int = 2) -> None:
    passed = [r for r in results if r["eval"] >= threshold]
    summary = ", ".join(f"seed {r['seed']}: {r['eval']:.1f} at {r['step']}" for r in results)
    assert len(passed) >= need, (
        f"{len(passed)} of {len(results)} seeds reached {threshold} (need {need}): {summary}"
    )


# Each row: case (tests/learning_cases.py), threshold, seeds, how many must reach it. The
# comment gives the spread measured over seeds 1-10 (one thread): "10/10 at 10k-41k" = every
# seed reached the threshold at an evaluation between those steps.
CARTPOLE_CASES = [
    # PPO, Zoo set, 100k budget, eval every 10k: 10/10 at 10k-41k steps (median 26k).
    pytest.param("ppo_cartpole", 475, SEEDS, 2, id="ppo"),
    # DQN, Zoo set, 50k budget, eval every 5k. DQN on CartPole reaches 500 and then collapses
    # for stretches (this set makes 128 gradient steps per 256 env steps), so the test asks
    # whether it solves the task at some evaluation, not at the last step. Seeds 1-20: 19/20
    # at 10k-50k (median 33k); seed 9 peaked at 428 and ended at 91.5. Five seeds, three needed.
    pytest.param("dqn_cartpole", 475, (1, 2, 3, 4, 5), 3, id="dqn"),
    # Double + dueling + prioritized + 3-step DQN, same set: 10/10 at 5k-26k (median 13k).
    pytest.param("rainbow_lite_cartpole", 475, SEEDS, 2, id="rainbow_lite"),
    # A2C, Zoo set, 200k budget: 10/10 at 10k-50k (median 20k).
    pytest.param("a2c_cartpole", 475, SEEDS, 2, id="a2c"),
    # PPO with the adaptive KL penalty: 10/10 at 10k-113k (median 26k).
    pytest.param("ppo_kl_cartpole", 475, SEEDS, 2, id="ppo_kl"),
    # TRPO: 10/10 at 16k-66k (median 49k).
    pytest.param("trpo_cartpole", 475, SEEDS, 2, id="trpo"),
    # REINFORCE with a baseline, 300k budget, target 400: 10/10 at 37k-78k (median 53k).
    pytest.param("reinforce_cartpole", 400, SEEDS, 2, id="reinforce"),
]


@pytest.mark.parametrize("case,threshold,seeds,need", CARTPOLE_CASES)
def test_cartpole_solved_within_budget(pool, case, threshold, seeds, need):
    check(train_seeds(pool, case, seeds), threshold, need)


# 64x64 networks and 10k steps keep these fast (the tuned full-size sets run in test-slow);
# final deterministic evaluation over 10 episodes. Measured final returns (min/median/max):
# SAC seeds 1-10 -134.6/-121.4/-118.1; DDPG seeds 1-10 -138.9/-127.4/-120.9; TD3 seeds 1-20
# 18 in -230..-124 and one at -370.8 (seed 4), hence -300 with a majority of three seeds.
PENDULUM_CASES = [
    pytest.param("sac_pendulum_small", id="sac"),
    pytest.param("td3_pendulum_small", id="td3"),
    pytest.param("ddpg_pendulum_small", id="ddpg"),
]


@pytest.mark.parametrize("case", PENDULUM_CASES)
def test_continuous_offpolicy_pendulum_within_10k(pool, case):
    check(train_seeds(pool, case), -300)


def test_trpo_gsde_mountaincar_continuous_within_50k(pool):
    """The RL Zoo's sb3-contrib TRPO set with gSDE (issue #21) leaves MountainCarContinuous's
    do-nothing optimum, as the Zoo's agent does (92.5 +- 0.4 at 50k): seeds 1-5 ended at
    92.5 / 92.9 / 92.8 / 92.2 / 92.6, ~12 s each (2026-12-01). Final 10-episode evaluation."""
    check(train_seeds(pool, "trpo_mountaincar_continuous_tuned"), 90)


# `make test-slow`: longer budgets and full-size nets, seeds 1-3 as above. Their thresholds come
# from single-seed runs (README results) plus, where quoted, the three seeds; a 10-seed spread
# of these did not fit the 2-core budget yet.
SLOW_CASES = [
    pytest.param("ppo_pendulum", -400, id="ppo_pendulum_200k"),
    # Gaussian trust regions (issue #14), tuned sets; seeds 1-3 with benchmarks/
    # pendulum_gaussian.py: TRPO -169.5 / -143.2 / -156.6, PPO-KL -157.5 / -143.2 / -157.3.
    pytest.param("trpo_pendulum", -400, id="trpo_pendulum_200k"),
    pytest.param("ppo_kl_pendulum", -400, id="ppo_kl_pendulum_200k"),
    # The Zoo's TRPO set with gSDE (issue #21), 100k: seeds 1-5 -156.8 / -143.6 / -155.2 /
    # -142.4 / -145.5 (2026-12-01).
    pytest.param("trpo_pendulum_tuned", -250, id="trpo_gsde_pendulum_100k"),
    pytest.param("sac_pendulum_tuned", -250, id="sac_pendulum_20k"),
    pytest.param("td3_pendulum_tuned", -250, id="td3_pendulum_20k"),
    pytest.param("ddpg_pendulum_tuned", -250, id="ddpg_pendulum_20k"),
    # gSDE (issue #21), the Zoo's set: seeds 1-3 final 95.2 / 94.3 / 95.2 at 50k, all >= 90
    # from the 20k evaluation on (2026-11-30).
    pytest.param("sac_mountaincar_continuous_tuned", 90, id="sac_gsde_mountaincar_continuous_50k"),
    # The Zoo's Ornstein-Uhlenbeck sets (issue #21), first evaluation >= 90 (README results,
    # 2026-12-01): TD3 seeds 1-5 at 60k / 40k / 40k / 30k / 50k of 100k; DDPG seeds 1-3 at
    # 40k / 30k / 20k of 50k.
    pytest.param("td3_mountaincar_continuous_tuned", 90, id="td3_ou_mountaincar_continuous_100k"),
    pytest.param("ddpg_mountaincar_continuous_tuned", 90, id="ddpg_ou_mountaincar_continuous_50k"),
    # Issue #21's check of the num_envs-independent replay ratio: the tuned set on 8 envs
    # ended at 500 for seeds 1-3 at 50k (2026-12-01, no early stop, ~42 s each).
    pytest.param("dqn_cartpole_8_envs", 475, id="dqn_8_envs_50k"),
    # CrossQ (256x256 critics), issue #18's bar; seeds 1-3 in the README results.
    pytest.param("crossq_pendulum_tuned", -250, id="crossq_pendulum_20k"),
    # Recurrent PPO on CartPole without velocities: only memory can solve it.
    pytest.param("ppo_gru_cartpole_masked", 400, id="ppo_gru_masked_500k"),
    pytest.param("a3c_cartpole", 475, id="a3c_2_workers_500k"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case,threshold", SLOW_CASES)
def test_slow_learning(pool, case, threshold):
    check(train_seeds(pool, case), threshold)
