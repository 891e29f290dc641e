"""The env zoo: Atari with the standard preprocessing and a Nature-CNN policy, MuJoCo with
checkpointed normalization, Box2D; each config builds and steps with the right shapes."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from drlcli import checkpoint as ckpt
from drlcli import cli
from drlcli.algos.dqn import QNetwork
from drlcli.envs import VecEnv, eval_env_config
from drlcli.errors import DrlError
from drlcli.evaluation import run_eval
from drlcli.networks import ActorCritic, NatureCNN
from drlcli.runner import train

SHAPES = {
    "pong": ((4, 84, 84), gym.spaces.Discrete(6)),
    "breakout": ((4, 84, 84), gym.spaces.Discrete(4)),
    "halfcheetah": ((17,), (6,)),
    "hopper": ((11,), (3,)),
    "walker2d": ((17,), (6,)),
    "ant": ((105,), (8,)),
    "lunarlander": ((8,), gym.spaces.Discrete(4)),
    "lunarlander_continuous": ((8,), (2,)),
    "bipedalwalker": ((24,), (4,)),
    "mountaincar": ((2,), gym.spaces.Discrete(3)),
    "cartpole_masked": ((4,), gym.spaces.Discrete(2)),
}


def env_cfg(name: str, *extra: str):
    return OmegaConf.to_object(cli._compose([f"env={name}", *extra])).env


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_env_config_builds_and_steps_with_the_right_shapes(name):
    obs_shape, act = SHAPES[name]
    cfg = env_cfg(name)
    env = VecEnv(cfg, 2, 0, "sync")
    try:
        obs = env.reset()
        assert obs.shape == (2, *obs_shape) and obs.dtype == np.float32
        assert env.single_observation_space.shape == obs_shape
        space = env.single_action_space
        if isinstance(act, gym.spaces.Discrete):
            assert space == act
        else:
            assert isinstance(space, gym.spaces.Box) and space.shape == act
        for _ in range(5):
            result = env.step(np.array([space.sample() for _ in range(2)]))
        assert result.obs.shape == (2, *obs_shape)
    finally:
        env.close()


def test_atari_preprocessing_wrappers_are_the_standard_ones():
    cfg = env_cfg("breakout")
    names = [w.name for w in cfg.wrappers]
    assert names == ["AtariPreprocessing", "FireReset", "FrameStackObservation"]
    pre = cfg.wrappers[0].kwargs
    assert (pre["noop_max"], pre["frame_skip"], pre["screen_size"], pre["grayscale_obs"]) == (
        30,
        4,
        84,
        True,
    )
    assert cfg.kwargs["frameskip"] == 1  # the ALE's own skip off: AtariPreprocessing skips
    assert cfg.episodic_life and cfg.clip_reward_sign
    evaluation = eval_env_config(cfg)
    assert not evaluation.episodic_life and not evaluation.clip_reward_sign
    # Pixels stay 0-255 integers in the env (the CNN scales them).
    env = VecEnv(cfg, 1, 0, "sync")
    obs = env.reset()
    assert obs.max() > 1 and np.array_equal(obs, obs.round())
    env.close()


def test_life_loss_ends_the_learners_episode_but_not_the_game():
    cfg = env_cfg("breakout")
    train_env = VecEnv(cfg, 1, 3, "sync", training=True)
    train_env.reset()
    rng = np.random.default_rng(0)
    life_losses, rewards = 0, []
    for _ in range(3000):
        r = train_env.step(rng.integers(0, 4, size=1))
        rewards.append(float(r.reward[0]))
        if r.terminated[0] and not train_env.episodes:
            life_losses += 1  # terminal for the learner, yet no finished game
        if train_env.episodes:
            break
    assert life_losses >= 1
    assert set(rewards) <= {-1.0, 0.0, 1.0}  # sign-clipped for training
    games = train_env.drain_episodes()
    assert len(games) == 1 and games[0].length > 50  # a whole game, all lives
    train_env.close()


def test_nature_cnn_is_chosen_for_images_and_clear_errors_elsewhere():
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    ac = ActorCritic(space, gym.spaces.Discrete(6), [64, 64])
    assert isinstance(ac.torso, NatureCNN) and ac.image
    params, value = ac.dist_and_value(torch.zeros(3, 4, 84, 84))
    assert params.shape == (3, 6) and value.shape == (3,)
    hwc = NatureCNN(gym.spaces.Box(0, 255, (84, 84, 3), np.uint8))
    assert hwc(torch.zeros(2, 84, 84, 3)).shape == (2, 512)
    for dueling in (False, True):
        q = QNetwork(space, 6, [64, 64], "relu", dueling)
        assert isinstance(q.torso, NatureCNN)
        assert q(torch.zeros(3, 4, 84, 84, dtype=torch.uint8)).shape == (3, 6)
    for algo in ("trpo", "sac"):
        composed = cli.check_overrides([f"algo={algo}", "env=pong"], multirun=False)
        with pytest.raises(DrlError, match=r"takes vector observations|cannot act"):
            cli.preflight(composed)


def test_unknown_atari_game_lists_close_matches():
    composed = cli.check_overrides(["env=atari", "env.id=ALE/Pongg-v5"], multirun=False)
    with pytest.raises(DrlError, match=r"Unknown environment id 'ALE/Pongg-v5'.*ALE/Pong-v5"):
        cli.preflight(composed)


def test_ppo_smoke_run_on_pong(tmp_path):
    cfg = OmegaConf.to_object(
        cli._compose(
            [
                "algo=ppo",
                "env=pong",
                "env.num_envs=2",
                "algo.num_steps=64",
                "algo.minibatch_size=64",
                "algo.update_epochs=1",
                "total_timesteps=384",
                "env.max_episode_steps=400",
                "eval.every=0",
                "eval.episodes=1",
                "log.progress=none",
            ]
        )
    )
    result = train(cfg, tmp_path / "pong")
    assert result.status == "finished" and result.global_step >= 384
    assert np.isfinite(result.eval_mean_return)


def test_sac_smoke_run_on_halfcheetah_and_normalization_stats_round_trip(tmp_path):
    """SAC for a few hundred steps, then PPO with obs + reward normalization: the statistics are
    in the checkpoint, and `drl eval` uses them frozen to reproduce the final evaluation."""
    sac = OmegaConf.to_object(
        cli._compose(
            [
                "algo=sac",
                "env=halfcheetah",
                "total_timesteps=400",
                "algo.learning_starts=200",
                "algo.batch_size=64",
                "algo.hidden_sizes=[64,64]",
                "env.max_episode_steps=100",
                "eval.every=0",
                "eval.episodes=1",
                "log.progress=none",
            ]
        )
    )
    result = train(sac, tmp_path / "sac")
    assert result.global_step >= 400 and np.isfinite(result.eval_mean_return)

    ppo = OmegaConf.to_object(
        cli._compose(
            [
                "algo=ppo",
                "env=hopper",
                "algo.num_steps=256",
                "total_timesteps=768",
                "env.max_episode_steps=100",
                "eval.every=0",
                "eval.episodes=2",
                "log.progress=none",
            ]
        )
    )
    assert ppo.env.normalize_obs and ppo.env.normalize_reward
    run_dir = tmp_path / "ppo"
    final = train(ppo, run_dir)
    state = ckpt.latest_loadable(run_dir / "checkpoints")
    obs_rms, ret_rms = state["env"]["obs_rms"], state["env"]["ret_rms"]
    assert obs_rms["count"] > 700 and np.any(np.abs(np.array(obs_rms["mean"])) > 1e-3)
    assert ret_rms["count"] > 700 and ret_rms["var"] != 1.0
    report = run_eval(run_dir)
    assert report.mean_return == pytest.approx(final.eval_mean_return)
    saved = json.loads((run_dir / f"eval_step{report.step}.json").read_text())
    assert saved["returns"] == report.returns


def test_a_policy_that_never_fires_still_finishes_a_breakout_game():
    """FireReset serves the ball after every lost life, so a whole-game evaluation of a
    deterministic policy cannot stall until the ALE's 108k-frame limit."""
    cfg = eval_env_config(env_cfg("breakout"))
    env = VecEnv(cfg, 1, 0, "sync", training=False)
    env.reset()
    steps = 0
    while not env.episodes and steps < 5000:
        env.step(np.array([0]))  # NOOP forever
        steps += 1
    assert env.episodes and steps < 1000, steps
    env.close()
