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
