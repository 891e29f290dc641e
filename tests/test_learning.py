"""Learning tests: real training with fixed seeds and real return thresholds."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from drlcli import cli
from drlcli.runner import train

pytestmark = pytest.mark.learning


def run(tmp_path, overrides):
    cfg = OmegaConf.to_object(cli._compose([*overrides, "log.progress=none"]))
    return train(cfg, tmp_path / "run")


def test_ppo_cartpole_solves_within_100k(tmp_path):
    result = run(tmp_path, ["algo=ppo", "env=cartpole", "seed=1", "total_timesteps=100000"])
    assert result.global_step <= 100_000 + 256
    assert result.eval_mean_return >= 475, result


@pytest.mark.slow
def test_ppo_pendulum_better_than_minus_400_within_200k(tmp_path):
    result = run(tmp_path, ["algo=ppo", "env=pendulum", "seed=1", "total_timesteps=200000"])
    assert result.eval_mean_return > -400, result


def test_dqn_cartpole_solves_within_50k(tmp_path):
    result = run(tmp_path, ["algo=dqn", "env=cartpole", "seed=1", "total_timesteps=50000"])
    assert result.global_step <= 50_000 + 256
    assert result.eval_mean_return >= 475, result


def test_double_dueling_per_nstep_dqn_learns_cartpole(tmp_path):
    result = run(tmp_path, ["algo=rainbow_lite", "env=cartpole", "seed=1", "total_timesteps=50000"])
    assert result.eval_mean_return >= 475, result


# Small networks keep these fast; the tuned full-size sets are exercised in test-slow.
SMALL_PENDULUM = [
    "env=pendulum",
    "seed=1",
    "total_timesteps=10000",
    "algo.learning_starts=1000",
    "algo.hidden_sizes=[64,64]",
    "eval.every=0",
]


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_continuous_offpolicy_pendulum_better_than_minus_250_within_10k(tmp_path, algo):
    result = run(tmp_path, [f"algo={algo}", *SMALL_PENDULUM])
    assert result.eval_mean_return > -250, result


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_tuned_offpolicy_pendulum_within_20k(tmp_path, algo):
    result = run(tmp_path, [f"algo={algo}", "env=pendulum", "seed=1", "total_timesteps=20000"])
    assert result.eval_mean_return > -250, result


# The policy-gradient family on CartPole-v1 with their tuned sets: evaluate every 10k steps and
# stop once the mean of 10 deterministic episodes reaches the threshold.
@pytest.mark.parametrize(
    "algo,budget,threshold",
    [
        ("a2c", 200_000, 475),
        ("ppo_kl", 200_000, 475),
        ("trpo", 200_000, 475),
        ("reinforce", 300_000, 400),
    ],
)
def test_policy_gradient_family_reaches_threshold_on_cartpole(tmp_path, algo, budget, threshold):
    result = run(
        tmp_path,
        [
            f"algo={algo}",
            "env=cartpole",
            "seed=1",
            f"total_timesteps={budget}",
            "eval.every=10000",
            "eval.early_stop=true",
            f"eval.target_return={threshold}",
        ],
    )
    assert result.eval_mean_return >= threshold, result
    assert result.global_step <= budget + 8192


@pytest.mark.slow
def test_recurrent_ppo_solves_masked_velocity_cartpole_within_500k(tmp_path):
    result = run(
        tmp_path,
        [
            "algo=ppo_gru",
            "env=cartpole_masked",
            "seed=1",
            "total_timesteps=500000",
            "eval.every=10000",
            "eval.early_stop=true",
            "eval.target_return=400",
        ],
    )
    assert result.eval_mean_return >= 400, result


@pytest.mark.slow
def test_a3c_two_workers_solves_cartpole_within_500k(tmp_path):
    result = run(
        tmp_path,
        [
            "algo=a3c",
            "algo.num_workers=2",
            "env=cartpole",
            "seed=1",
            "total_timesteps=500000",
            "eval.every=10000",
            "eval.early_stop=true",
            "eval.target_return=475",
            "hardware.torch_threads=1",
        ],
    )
    assert result.eval_mean_return >= 475, result
