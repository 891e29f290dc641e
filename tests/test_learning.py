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
