"""VecEnv: autoreset handling, terminated/truncated, episode statistics, normalization."""

from __future__ import annotations

import numpy as np
import pytest

from drlcli.collector import evaluate
from drlcli.config import EnvConfig, WrapperSpec
from drlcli.envs import RunningMeanStd, VecEnv
from drlcli.errors import DrlError


def test_truncation_keeps_final_obs_and_separates_flags():
    cfg = EnvConfig(id="CartPole-v1", max_episode_steps=5)
    env = VecEnv(cfg, num_envs=3, seed=0)
    obs = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (3, 4)
    prev = obs
    for step in range(5):
        res = env.step(np.zeros(3, dtype=np.int64))
        if step < 4:
            assert not (res.terminated | res.truncated).any()
            np.testing.assert_array_equal(res.final_obs, res.obs)
        prev_next = res
        prev = res.obs
    # Five always-left steps cannot topple the pole: a pure time-limit truncation.
    assert prev_next.truncated.all() and not prev_next.terminated.any()
    # SAME_STEP autoreset: obs is the reset observation, final_obs the true last state.
    assert not np.allclose(prev_next.final_obs, prev_next.obs)
    eps = env.drain_episodes()
    assert [e.length for e in eps] == [5, 5, 5]
    assert [e.ret for e in eps] == [5.0, 5.0, 5.0]
    assert all(e.step == 15 for e in eps)
    assert env.global_step == 15
    del prev
    env.close()


def test_termination_is_not_truncation():
    env = VecEnv(EnvConfig(id="CartPole-v1"), num_envs=2, seed=0)
    env.reset()
    for _ in range(200):
        res = env.step(np.zeros(2, dtype=np.int64))
        if res.terminated.any():
            assert not (res.terminated & res.truncated).any()
            break
    else:
        pytest.fail("always pushing left should topple the pole")
    env.close()


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 3))
    rms = RunningMeanStd((3,))
    for chunk in np.array_split(data, 17):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-3)


def test_normalization_state_round_trip():
    cfg = EnvConfig(id="Pendulum-v1", normalize_obs=True, normalize_reward=True)
    env = VecEnv(cfg, num_envs=2, seed=0)
    env.reset()
    for _ in range(20):
        env.step(np.zeros((2, 1), dtype=np.float32))
    state = env.state_dict()
    other = VecEnv(cfg, num_envs=2, seed=1)
    other.load_state_dict(state)
    np.testing.assert_allclose(other.obs_rms.mean, env.obs_rms.mean)
    np.testing.assert_allclose(other.ret_rms.var, env.ret_rms.var)
    assert other.global_step == env.global_step
    env.close()
    other.close()


def test_gymnasium_wrappers_get_tuples_where_yaml_has_lists():
    """`env.wrappers=[{name: ResizeObservation, kwargs: {shape: [84, 84]}}]` failed: the
    wrapper requires a tuple, which YAML and Hydra cannot write (found by a break pass; the
    too-small-image error suggests this very wrapper)."""
    import tests.envs_spaces  # noqa: F401  registers DrlTinyImageObs-v0

    wrap = WrapperSpec("ResizeObservation", {"shape": [48, 40]})
    env = VecEnv(EnvConfig(id="DrlTinyImageObs-v0", wrappers=[wrap]), num_envs=1, seed=0)
    assert env.single_observation_space.shape == (48, 40, 3)
    env.close()


def test_wrappers_from_config_and_unknown_wrapper():
    cfg = EnvConfig(id="CartPole-v1", wrappers=[WrapperSpec("MaskVelocity", {"indices": [1, 3]})])
    env = VecEnv(cfg, num_envs=2, seed=0)
    obs = env.reset()
    assert (obs[:, [1, 3]] == 0).all() and (obs[:, [0, 2]] != 0).any()
    env.close()
    with pytest.raises(DrlError, match="Unknown wrapper 'NoSuchWrapper'"):
        VecEnv(EnvConfig(id="CartPole-v1", wrappers=[WrapperSpec("NoSuchWrapper")]), 1, 0)


def test_unknown_env_id_suggests_close_matches():
    with pytest.raises(DrlError, match="Did you mean 'CartPole-v1'"):
        VecEnv(EnvConfig(id="CartPol-v1"), 1, 0)


class _Constant:
    """A stand-in algorithm: action 0 everywhere, no recurrent state."""

    def predict(self, obs, deterministic):
        return np.zeros(len(obs), dtype=np.int64)

    def reset_predict_state(self, num_envs):
        pass

    def episodes_ended(self, done):
        pass


def test_evaluate_counts_exactly_the_requested_episodes():
    env = VecEnv(EnvConfig(id="CartPole-v1", max_episode_steps=7), 4, 0, training=False)
    returns = evaluate(_Constant(), env, episodes=6, deterministic=True, seed=3)
    assert len(returns) == 6 and all(r <= 7 for r in returns)
    env.close()
