"""hardware.vectorization=envpool (issue #15): EnvPool's C++ envs behind drlcli's VecEnv, with the
gymnasium path's semantics (same-step autoreset with the true final observation, time limits
that truncate, Atari preprocessing mapped option for option, lives for episodic life)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from omegaconf import OmegaConf

from drlcli import cli
from drlcli.config import EnvConfig, WrapperSpec
from drlcli.envpool_backend import task_and_options
from drlcli.envs import VecEnv
from drlcli.errors import DrlError


def env_config(name: str, *overrides: str) -> EnvConfig:
    cfg = OmegaConf.to_object(cli._compose([f"env={name}", *overrides]))
    return cfg.env


def test_same_step_autoreset_keeps_the_final_observation():
    """CartPole pushed one way: every episode ends by termination. At that step the learner
    must get the true last state (pole or cart out of bounds) as final_obs and a fresh start
    state (all |x| <= 0.05) as the next observation, as gymnasium's same-step autoreset gives."""
    env = VecEnv(env_config("cartpole"), 4, seed=3, vectorization="envpool", training=True)
    env.reset()
    ends = 0
    lengths = np.zeros(4, dtype=int)
    for _ in range(120):
        res = env.step(np.ones(4, dtype=np.int64))
        lengths += 1
        done = res.terminated | res.truncated
        for i in np.flatnonzero(done):
            ends += 1
            x, theta = res.final_obs[i][0], res.final_obs[i][2]
            assert abs(x) > 2.4 or abs(theta) > 0.2094  # CartPole's termination bounds
            assert np.all(np.abs(res.obs[i]) <= 0.05)  # reset state, not the final one
            assert not np.array_equal(res.obs[i], res.final_obs[i])
        lengths[done] = 0
        not_done = ~done
        np.testing.assert_array_equal(res.final_obs[not_done], res.obs[not_done])
    eps = env.drain_episodes()
    assert ends >= 8 and len(eps) == ends
    assert all(e.length == e.ret for e in eps)  # reward 1 per step, no reward-0 reset step
    assert env.global_step == 120 * 4
    env.close()


def test_time_limit_truncates_and_bootstraps():
    cfg = env_config("pendulum", "env.max_episode_steps=25")
    env = VecEnv(cfg, 3, seed=0, vectorization="envpool")
    env.reset()
    for t in range(1, 51):
        res = env.step(np.zeros((3, 1), dtype=np.float32))
        assert not res.terminated.any()
        assert res.truncated.all() == (t % 25 == 0)
        if t % 25 == 0:
            assert not np.allclose(res.final_obs, res.obs)
    assert [e.length for e in env.drain_episodes()] == [25] * 6
    env.close()


def test_envpool_and_gymnasium_give_the_same_dynamics():
    """Same start state, same actions: EnvPool's CartPole follows gymnasium's step for step."""
    import gymnasium as gym

    env = VecEnv(env_config("cartpole"), 1, seed=5, vectorization="envpool")
    obs = env.reset()
    ref = gym.make("CartPole-v1").unwrapped
    ref.reset(seed=0)
    ref.state = obs[0].astype(np.float64)
    rng = np.random.default_rng(0)
    for _ in range(40):
        a = int(rng.integers(2))
        res = env.step(np.array([a]))
        want, _, term, _, _ = ref.step(a)
        np.testing.assert_allclose(res.final_obs[0], want, rtol=1e-5, atol=1e-6)
        if term:
            break
        ref.state = res.obs[0].astype(np.float64)
    env.close()


def test_atari_config_maps_to_envpool_options():
    cfg = env_config("pong")
    task, options = task_and_options(cfg)
    assert task == "Pong-v5"
    assert options == {
        "noop_max": 30,
        "frame_skip": 4,
        "img_height": 84,
        "img_width": 84,
        "gray_scale": True,
        "stack_num": 4,
        "use_fire_reset": True,
        "episodic_life": False,
        "reward_clip": False,
        "repeat_action_probability": 0.25,  # v5's sticky actions; EnvPool's default is 0
        "max_episode_steps": 27_000,  # 108k frames
    }
    # env.max_episode_steps limits frames under the frame skip on the gymnasium path: 200
    # frames are 50 agent steps. There the noop reset's frames (up to 30) and FIRE count too;
    # EnvPool counts agent steps after them.
    cfg = env_config("pong", "env.max_episode_steps=200")
    assert task_and_options(cfg)[1]["max_episode_steps"] == 50
    lengths = {}
    for mode in ("sync", "envpool"):
        env = VecEnv(cfg, 2, seed=0, vectorization=mode)
        obs = env.reset()
        assert obs.shape == (2, 4, 84, 84)
        for _ in range(60):
            res = env.step(np.zeros(2, dtype=np.int64))
        assert res.obs.shape == (2, 4, 84, 84)
        lengths[mode] = sorted(e.length for e in env.drain_episodes())
        env.close()
    assert lengths["envpool"] == [50, 50]
    assert all(50 - 32 // 4 - 1 <= n <= 50 for n in lengths["sync"]), lengths


def test_lunarlander_continuous_maps_to_its_envpool_task():
    task, options = task_and_options(env_config("lunarlander_continuous"))
    assert task == "LunarLanderContinuous-v3" and "continuous" not in options


@pytest.mark.parametrize(
    "cfg,match",
    [
        (EnvConfig(id="CartPole-v1", wrappers=[WrapperSpec("ClipReward")]), "cannot apply"),
        (EnvConfig(id="mypkg.envs:Grid-v0"), "your module"),
        (EnvConfig(id="Taxi-v4"), "EnvPool has no 'Taxi-v4'"),
    ],
    ids=["wrappers", "own-module", "not-in-envpool"],
)
def test_what_envpool_cannot_run_is_refused_clearly(cfg, match):
    with pytest.raises(DrlError, match=match):
        task_and_options(cfg)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["env=cartpole_masked"], "cannot apply env.wrappers"),
        (["env=gym", "env.id=Taxi-v4"], "provides action masks, which EnvPool"),
    ],
)
def test_refused_before_any_run_dir(drl, clean_env, tmp_path, overrides, match):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [drl, "train", *overrides, "hardware.vectorization=envpool", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert match in proc.stderr
    assert not run_dir.exists()


@pytest.mark.learning
def test_ppo_learns_cartpole_on_envpool(tmp_path):
    """The tuned PPO CartPole set, stepped by EnvPool: >= 475 within 100k steps (early stop),
    like the sync path's learning test."""
    from drlcli.runner import train

    cfg = OmegaConf.to_object(
        cli._compose(
            [
                "algo=ppo",
                "env=cartpole",
                "hardware.vectorization=envpool",
                "hardware.torch_threads=1",
                "total_timesteps=100000",
                "eval.every=10000",
                "eval.early_stop=true",
                "eval.target_return=475",
                "log.progress=none",
                "log.tensorboard=false",
            ]
        )
    )
    result = train(cfg, tmp_path / "run")
    assert result.eval_mean_return >= 475, result
