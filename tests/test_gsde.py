"""Generalized state-dependent exploration (gSDE, issue #21): when exploration matrices are
drawn, that the noise has the variance the log-prob assumes, and that snapshots and checkpoints
hold copies. The math against Stable-Baselines3 is in test_peer_sb3.py."""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch

from drlcli import registry
from drlcli.algos.a2c import A2C
from drlcli.algos.base import EnvInfo
from drlcli.algos.ppo import PPO
from drlcli.algos.sac import SAC
from drlcli.collector import Collector
from drlcli.config import (
    A2CConfig,
    A3CConfig,
    ACConfig,
    DQNConfig,
    EnvConfig,
    PPOConfig,
    ReinforceConfig,
    SACConfig,
    TD3Config,
    TRPOConfig,
)
from drlcli.envs import VecEnv
from drlcli.errors import DrlError
from drlcli.networks import ActorCritic, StateDependentNoise, sde_problems

CPU = torch.device("cpu")
OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
BOX = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def draws(noise: StateDependentNoise, steps: int) -> list[int]:
    """The step indices (0-based) at which ``noise`` used newly drawn matrices."""
    latent = torch.ones(noise.num_envs, noise.latent_dim)
    changed, last = [], noise.matrices.clone()
    for t in range(steps):
        noise.noise(latent)
        if not torch.equal(noise.matrices, last):
            changed.append(t)
            last = noise.matrices.clone()
    return changed


def test_sample_freq_minus_one_keeps_matrices_until_resample():
    torch.manual_seed(0)
    noise = StateDependentNoise(4, 2, 3, -1.0, sample_freq=-1)
    before = noise.matrices.clone()
    assert draws(noise, 20) == []
    assert torch.equal(noise.matrices, before) and int(noise.steps_since) == 20
    noise.resample()
    assert not torch.equal(noise.matrices, before) and int(noise.steps_since) == 0
    # One matrix per env, drawn independently.
    m = noise.matrices
    assert not torch.equal(m[0], m[1]) and not torch.equal(m[1], m[2])


def test_sample_freq_n_draws_every_n_steps_counted_from_the_last_draw():
    torch.manual_seed(0)
    noise = StateDependentNoise(4, 2, 2, -1.0, sample_freq=3)
    assert draws(noise, 10) == [3, 6, 9]
    noise.resample()  # a rollout start restarts the count
    assert draws(noise, 5) == [3]


def test_noise_variance_is_the_one_the_log_prob_uses():
    """Over many matrices, z @ theta_eps has per-dim std exp(log_std_of(z)) (up to the 1e-6)."""
    torch.manual_seed(0)
    for full_std, use_expln in [(True, False), (False, False), (True, True)]:
        noise = StateDependentNoise(5, 2, 1, 0.0, full_std=full_std, use_expln=use_expln)
        with torch.no_grad():
            noise.log_std.copy_(torch.randn(noise.log_std.shape) * 0.5)
        z = torch.tensor([0.3, -1.2, 0.0, 0.8, 0.5])
        samples = noise.independent_noise(z.expand(40_000, 5))
        expected = noise.log_std_of(z[None]).exp().squeeze(0)
        torch.testing.assert_close(samples.std(0), expected.detach(), rtol=0.03, atol=0)
        assert samples.mean(0).abs().max() < 0.05 * expected.max()


def pendulum_env(num_envs: int) -> VecEnv:
    return VecEnv(EnvConfig(id="Pendulum-v1"), num_envs, seed=3, training=True)


@pytest.mark.parametrize("freq,per_rollout", [(-1, 1), (3, 3)])
def test_ppo_draws_at_each_rollout_start_and_every_n_steps(monkeypatch, freq, per_rollout):
    """num_steps=8: a draw at the rollout start, with n=3 also before steps 3 and 6."""
    env = pendulum_env(2)
    try:
        cfg = PPOConfig(num_steps=8, minibatch_size=16, use_sde=True, sde_sample_freq=freq)
        algo = PPO(cfg, EnvInfo(env.single_observation_space, env.single_action_space, 2), CPU)
        calls = []
        original = algo.policy.sde.resample
        monkeypatch.setattr(algo.policy.sde, "resample", lambda: (calls.append(1), original()))
        for rollout in range(1, 3):
            Collector(env, algo).collect()
            assert len(calls) == per_rollout * rollout
            if freq == -1 and rollout == 1:
                # Every stored action is mean(s) + z(s) @ theta_env with its env's matrix.
                buf = algo.buffer
                assert buf is not None
                with torch.no_grad():
                    mean, _, z = algo.policy.dist(buf.obs.reshape(16, -1))
                noise = torch.einsum("tef,efd->ted", z.reshape(8, 2, -1), algo.policy.sde.matrices)
                torch.testing.assert_close(buf.actions, mean.reshape(8, 2, 1) + noise)
            algo.update(0.5)
    finally:
        env.close()


def test_sac_draws_after_each_update_and_one_matrix_per_gradient_step(monkeypatch):
    env = pendulum_env(2)
    try:
        cfg = SACConfig(
            hidden_sizes=[16, 16],
            buffer_size=500,
            batch_size=16,
            learning_starts=20,
            train_freq=5,
            gradient_steps=3,
            use_sde=True,
        )
        info = EnvInfo(env.single_observation_space, env.single_action_space, 2)
        algo = SAC(cfg, info, CPU)
        assert algo.actor.sde.matrices.shape == (2, 16, 1)
        train_draws = []
        original = algo.actor.sde.training_matrix
        monkeypatch.setattr(
            algo.actor.sde, "training_matrix", lambda: (train_draws.append(1), original())[1]
        )
        env.reset()
        phases = []
        for _ in range(6):
            before = algo.actor.sde.matrices.clone()
            Collector(env, algo).collect()
            # -1: the whole collection phase explores with one matrix per env.
            assert torch.equal(algo.actor.sde.matrices, before)
            algo.update(0.5)
            phases.append(not torch.equal(algo.actor.sde.matrices, before))
    finally:
        env.close()
    assert all(phases)  # a new draw after every update, learning or not (warm-up)
    assert len(train_draws) == algo.grad_steps > 0


def test_state_dicts_and_old_policies_are_copies_of_the_gsde_tensors():
    """A checkpoint holds the matrices as they were; PPO's old policy keeps its per-sample
    std when log_std moves (the aliasing bug class of issue #14)."""
    torch.manual_seed(1)
    cfg = PPOConfig(num_steps=8, minibatch_size=16, use_sde=True, loss="kl_penalty")
    algo = PPO(cfg, EnvInfo(OBS, BOX, 2), CPU)
    state = algo.state_dict()
    saved = state["policy"]["sde.matrices"].clone()
    algo.policy.reset_noise()
    assert torch.equal(state["policy"]["sde.matrices"], saved)
    assert not torch.equal(algo.policy.sde.matrices, saved)
    algo.load_state_dict(state)
    assert torch.equal(algo.policy.sde.matrices, saved)

    obs = torch.randn(16, 3)
    old = algo.old_dist(obs)
    old_log_std = old[1].clone()
    with torch.no_grad():
        algo.policy.sde.log_std.add_(0.5)
    assert torch.equal(old[1], old_log_std)
    new = algo.policy.dist(obs)
    assert float(algo.policy.head.kl(old, new).mean().detach()) > 0.1


def test_sac_checkpoint_restores_matrices_and_step_count():
    torch.manual_seed(2)
    cfg = SACConfig(hidden_sizes=[8], buffer_size=64, batch_size=8, use_sde=True, sde_sample_freq=4)
    algo = SAC(cfg, EnvInfo(OBS, BOX, 3), CPU)
    obs = torch.randn(3, 3)
    algo.actor.explore(obs)
    algo.actor.explore(obs)
    state = algo.state_dict()
    matrices = algo.actor.sde.matrices.clone()
    algo.actor.reset_noise()
    algo.load_state_dict(state)
    assert torch.equal(algo.actor.sde.matrices, matrices)
    assert int(algo.actor.sde.steps_since) == 2


def test_a2c_gsde_update_moves_the_feature_std():
    torch.manual_seed(3)
    env = pendulum_env(2)
    try:
        cfg = A2CConfig(use_sde=True, log_std_init=-1.0)
        algo = A2C(cfg, EnvInfo(env.single_observation_space, env.single_action_space, 2), CPU)
        before = algo.policy.sde.log_std.detach().clone()
        Collector(env, algo).collect()
        out = algo.update(0.0)
    finally:
        env.close()
    assert not torch.equal(algo.policy.sde.log_std.detach(), before)
    assert np.isfinite(out["losses/policy_loss"]) and out["charts/action_std"] > 0


UNSUPPORTED = [
    TD3Config(use_sde=True),
    TD3Config(name="ddpg", use_sde=True),
    DQNConfig(use_sde=True),
    A3CConfig(use_sde=True),
    ACConfig(use_sde=True),
    ReinforceConfig(use_sde=True),
    PPOConfig(use_sde=True, recurrent=True, num_steps=16, minibatch_size=16),
]


@pytest.mark.parametrize("cfg", UNSUPPORTED, ids=lambda c: f"{c.name}-{id(c) % 97}")
def test_use_sde_is_refused_where_it_does_not_apply(cfg):
    with pytest.raises(
        DrlError,
        match=r"use_sde=true .*not available for .*only sac, ppo \(and ppo_kl\), a2c, trpo and npg",
    ):
        registry.validate(cfg, 1, EnvConfig(id="Pendulum-v1"))


def test_supported_configs_pass_and_bad_periods_do_not():
    supported = (SACConfig, PPOConfig, A2CConfig, TRPOConfig)
    for cfg in (c(use_sde=True) for c in supported):
        assert sde_problems(cfg) == []
        cfg.sde_sample_freq = -2
        assert any("sde_sample_freq must be -1" in p for p in sde_problems(cfg))
    assert sde_problems(TD3Config()) == []  # use_sde=false: nothing to check
    with pytest.raises(DrlError, match="sde_sample_freq must be -1 or >= 1"):
        StateDependentNoise(4, 1, 1, 0.0, sample_freq=0)
    with pytest.raises(DrlError, match="one step of 2 envs, got a batch of 3"):
        StateDependentNoise(4, 1, 2, 0.0).noise(torch.zeros(3, 4))


@pytest.mark.parametrize("shared", [False, True], ids=["separate_torsos", "shared_torso"])
def test_actor_critic_latent_is_the_actor_features_and_only_the_mean_trains_them(shared):
    """The latent is the last hidden layer the mean head reads; the std's gradient reaches
    log_std but not the torso (SB3's learn_features=False for PPO / A2C)."""
    torch.manual_seed(4)
    pol = ActorCritic(OBS, BOX, [8, 6], shared=shared, use_sde=True, num_envs=2)
    assert pol.layout == ("shared" if shared else "sde")
    obs = torch.randn(5, 3)
    mean, log_std, z = pol.dist(obs)
    torso = pol.torso if shared else pol.actor_torso
    torch.testing.assert_close(z, torso(obs))
    torch.testing.assert_close(mean, pol.actor_out(z))
    assert log_std.shape == (5, 2) and z.shape == (5, 6)
    log_std.sum().backward()
    assert pol.sde.log_std.grad is not None and pol.sde.log_std.grad.abs().sum() > 0
    assert all(p.grad is None for p in torso.parameters())


@pytest.mark.parametrize("use_sde", [False, True], ids=["gaussian", "gsde"])
def test_stochastic_evaluations_leave_training_unchanged(tmp_path, use_sde):
    """Periodic stochastic evaluations (eval.deterministic=false; gSDE draws a fresh matrix per
    state) draw from a forked, seeded torch RNG: the weights after training equal those of a
    run that evaluates only at the end (a break pass found them different at step 8192)."""
    from drlcli import checkpoint as ckpt
    from drlcli import cli
    from drlcli.config import to_train_config
    from drlcli.runner import train

    states = []
    for name, every in (("evals", 1024), ("none", 0)):
        cfg = to_train_config(
            cli._compose(
                [
                    "algo=trpo",
                    "env=pendulum",
                    f"algo.use_sde={str(use_sde).lower()}",
                    "algo.num_steps=256",
                    "env.num_envs=2",
                    "total_timesteps=3072",
                    f"eval.every={every}",
                    "eval.episodes=2",
                    "eval.deterministic=false",
                    "eval.max_episode_steps=50",
                    "checkpoint.every=0",
                    "log.progress=none",
                    "log.tensorboard=false",
                    "hardware.torch_threads=1",
                ]
            )
        )
        train(cfg, tmp_path / name)
        states.append(ckpt.latest_loadable(tmp_path / name / "checkpoints")["algo"]["policy"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
