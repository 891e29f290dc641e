"""Replay, prioritized replay, n-step and target math, SAC's squashing correction, polyak."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from drlcli import cli
from drlcli.algos.dqn import double_dqn_target
from drlcli.algos.sac import squashed_log_prob
from drlcli.buffers import PrioritizedReplayBuffer, ReplayBuffer, SumTree
from drlcli.returns import nstep_returns, polyak_update


def test_sum_tree_prefix_search_matches_cumsum():
    rng = np.random.default_rng(0)
    p = rng.random(37)
    tree = SumTree(37)
    tree.update(np.arange(37), p)
    assert tree.total == pytest.approx(p.sum())
    values = rng.random(500) * p.sum()
    expected = np.searchsorted(np.cumsum(p), values, side="right")
    np.testing.assert_array_equal(tree.find(values), expected)
    tree.update(np.array([3, 3, 10]), np.array([5.0, 7.0, 0.0]))  # duplicates: last wins
    p[3], p[10] = 7.0, 0.0
    assert tree.total == pytest.approx(p.sum())


def test_prioritized_sampling_frequencies_match_priorities():
    rng = np.random.default_rng(1)
    buf = PrioritizedReplayBuffer(8, 1, (1,), (), np.int64, alpha=1.0, eps=0.0)
    for _ in range(8):
        buf.add(
            np.zeros((1, 1)),
            np.zeros(1),
            np.zeros(1),
            np.zeros((1, 1)),
            np.zeros(1, bool),
            np.zeros(1, bool),
        )
    td = np.array([1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 1.0, 8.0])
    buf.update_priorities(np.arange(8), td)
    counts = np.zeros(8)
    for _ in range(400):
        counts += np.bincount(buf.sample_index(64, rng), minlength=8)
    freq = counts / counts.sum()
    expected = td / td.sum()
    # 25,600 draws: every frequency within 1.5 percentage points of its probability.
    np.testing.assert_allclose(freq, expected, atol=0.015)
    chi2 = ((counts - expected * counts.sum()) ** 2 / (expected * counts.sum())).sum()
    assert chi2 < 30  # 7 degrees of freedom; p < 1e-4 above ~29


def test_importance_weights_by_hand():
    buf = PrioritizedReplayBuffer(4, 1, (1,), (), np.int64, alpha=1.0, eps=0.0)
    for _ in range(4):
        buf.add(
            np.zeros((1, 1)),
            np.zeros(1),
            np.zeros(1),
            np.zeros((1, 1)),
            np.zeros(1, bool),
            np.zeros(1, bool),
        )
    buf.update_priorities(np.arange(4), np.array([1.0, 1.0, 2.0, 4.0]))
    w = buf.weights(np.array([0, 2, 3]), beta=0.5)
    probs = np.array([1, 2, 4]) / 8
    raw = (4 * probs) ** -0.5
    np.testing.assert_allclose(w, raw / raw.max(), rtol=1e-6)
    assert w.max() == pytest.approx(1.0)


def naive_nstep(rew, term, trunc, nxt, start, n, gamma, newest):
    g, k = 0.0, start
    for j in range(n):
        g += gamma**j * rew[k]
        if term[k]:
            return g, nxt[k], True, gamma ** (j + 1)
        if trunc[k] or k == newest or j == n - 1:
            return g, nxt[k], False, gamma ** (j + 1)
        k += 1
    raise AssertionError


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_gather_matches_naive_loop(n):
    rng = np.random.default_rng(n)
    steps, envs, gamma = 40, 3, 0.9
    buf = ReplayBuffer(steps * envs, envs, (1,), (), np.int64)
    rew = rng.normal(size=(steps, envs)).astype(np.float32)
    term = rng.random((steps, envs)) < 0.15
    trunc = (rng.random((steps, envs)) < 0.15) & ~term
    nxt = rng.normal(size=(steps, envs, 1)).astype(np.float32)
    for t in range(steps - 5):  # not full: the newest row is steps - 6
        buf.add(np.zeros((envs, 1)), np.zeros(envs), rew[t], nxt[t], term[t], trunc[t])
    idx = np.arange(len(buf))
    out = buf.gather(idx, n, gamma)
    for i, flat in enumerate(idx):
        row, env = divmod(flat, envs)
        g, s, done, disc = naive_nstep(
            rew[:, env], term[:, env], trunc[:, env], nxt[:, env], row, n, gamma, steps - 6
        )
        assert out["rewards"][i] == pytest.approx(g, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(out["next_obs"][i], s)
        assert out["terminated"][i] == done
        assert out["discounts"][i] == pytest.approx(disc)


def test_nstep_returns_pure_function():
    rewards = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    term = np.array([[False, True, False], [False, False, False]])
    trunc = np.zeros_like(term)
    valid = np.array([[True, True, True], [True, True, False]])
    ret, last, done = nstep_returns(rewards, term, trunc, valid, 0.5)
    np.testing.assert_allclose(ret, [1.5, 1.5])
    np.testing.assert_array_equal(last, [1, 1])
    np.testing.assert_array_equal(done, [True, False])


def test_replay_keeps_final_obs_flags_and_wraps():
    buf = ReplayBuffer(6, 2, (1,), (), np.int64)
    for t in range(5):
        buf.add(
            np.full((2, 1), t),
            np.array([t, t]),
            np.ones(2),
            np.full((2, 1), t + 100),
            np.array([t == 1, False]),
            np.array([False, t == 2]),
        )
    assert len(buf) == 6 and buf.full and buf.pos == 2  # 3 rows x 2 envs, wrapped
    assert buf.obs[1, 0, 0] == 4 and buf.next_obs[1, 0, 0] == 104
    state = buf.state_dict()
    other = ReplayBuffer(6, 2, (1,), (), np.int64)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.obs, buf.obs)
    assert other.pos == buf.pos and other.full


def test_double_dqn_target_by_hand():
    q_online = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, 1.0]])
    q_target = torch.tensor([[10.0, 20.0, 30.0], [7.0, 8.0, 9.0]])
    r = torch.tensor([1.0, 2.0])
    term = torch.tensor([False, True])
    disc = torch.tensor([0.9, 0.9])
    # Double: online argmax (1, 0) valued by the target (20, 7); the second is terminal.
    y = double_dqn_target(q_online, q_target, r, term, disc, double=True)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 20.0, 2.0]))
    y = double_dqn_target(q_online, q_target, r, term, disc, double=False)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * 30.0, 2.0]))


def test_sac_squashed_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    mean = torch.randn(200, 2, dtype=torch.float64)
    log_std = torch.randn(200, 2, dtype=torch.float64) * 0.5
    u = mean + log_std.exp() * torch.randn_like(mean)
    a = torch.tanh(u)
    # p_A(a) = p_U(atanh a) / |d tanh/du| = p_U(u) / (1 - a^2), per dimension.
    normal = torch.distributions.Normal(mean, log_std.exp())
    expected = (normal.log_prob(torch.atanh(a)) - torch.log1p(-a.pow(2))).sum(-1)
    torch.testing.assert_close(squashed_log_prob(u, mean, log_std), expected)
    # And numerically: the density integrates to 1 over (-1, 1) in one dimension.
    grid = torch.linspace(-0.999999, 0.999999, 200_001, dtype=torch.float64)
    m, s = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.2, dtype=torch.float64)
    dens = squashed_log_prob(torch.atanh(grid)[:, None], m, s).exp()
    assert torch.trapezoid(dens, grid).item() == pytest.approx(1.0, abs=1e-3)


def test_polyak_update():
    target, online = torch.zeros(3), torch.ones(3)
    polyak_update(target, online, 0.1)
    torch.testing.assert_close(target, torch.full((3,), 0.1))
    polyak_update(target, online, 1.0)
    torch.testing.assert_close(target, online)
    assert math.isclose(float(target.sum()), 3.0)


@pytest.mark.parametrize(
    "algo,env,message",
    [
        ("dqn", "pendulum", "cannot act in the action space Box"),
        ("sac", "cartpole", "cannot act in the action space Discrete(2)"),
        ("td3", "acrobot", "for discrete actions use dqn or ppo"),
        ("ddpg", "cartpole", "DDPG acts in continuous"),
    ],
)
def test_mismatched_action_spaces_fail_clearly(algo, env, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", f"algo={algo}", f"env={env}"]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_offpolicy_bad_sizes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "algo=sac", "env=pendulum", "algo.buffer_size=10"]) == 2
    assert "must hold at least one batch" in capsys.readouterr().err
    assert cli.main(["train", "algo=dqn", "algo.tau=0"]) == 2
    assert "algo.tau must lie in (0, 1]" in capsys.readouterr().err


class FrameStream:
    """Envs whose every observation is a unique id (two uint8 bytes), with episodes ending at
    random and gymnasium's autoreset: the obs after an end is a fresh reset frame."""

    def __init__(self, envs: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.next_id = 1
        self.obs = np.stack([self._frame() for _ in range(envs)])

    def _frame(self) -> np.ndarray:
        self.next_id += 1
        return np.array(divmod(self.next_id, 256), dtype=np.uint8)

    def step(self) -> tuple[np.ndarray, ...]:
        n = len(self.obs)
        obs = self.obs.copy()
        final = np.stack([self._frame() for _ in range(n)])
        term = self.rng.random(n) < 0.1
        trunc = (self.rng.random(n) < 0.05) & ~term
        self.obs = final.copy()
        for e in np.flatnonzero(term | trunc):
            self.obs[e] = self._frame()  # reset frame
        return obs, self.rng.normal(size=n).astype(np.float32), final, term, trunc

    def restart(self) -> None:
        """Fresh envs, as after a resume: the stream of observations breaks."""
        self.obs = np.stack([self._frame() for _ in range(len(self.obs))])


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_compact_frame_replay_matches_the_plain_buffer(cls):
    """Storing each frame once (s_{t+1} read from the next row, episode ends and breaks kept
    aside) gives exactly the transitions and n-step targets of the plain buffer, through
    wrap-around, a checkpoint round trip and a resume with fresh envs."""
    envs, capacity = 3, 60
    stream = FrameStream(envs, seed=0)
    plain = ReplayBuffer(capacity, envs, (2,), (), np.int64)
    compact = cls(capacity, envs, (2,), (), np.int64, obs_dtype=np.uint8, compact=True)
    compared = 0
    for t in range(70):
        if t == 33:  # checkpoint, restore into a new buffer, continue with fresh envs
            restored = cls(capacity, envs, (2,), (), np.int64, obs_dtype=np.uint8, compact=True)
            restored.load_state_dict(compact.state_dict())
            compact = restored
            stream.restart()
        obs, rew, final, term, trunc = stream.step()
        action = np.full(envs, t)
        plain.add(obs.astype(np.float32), action, rew, final.astype(np.float32), term, trunc)
        compact.add(obs.astype(np.float32), action, rew, final.astype(np.float32), term, trunc)
        if t % 7 == 6 or t in (32, 33, 34):
            idx = np.arange(len(plain))
            for n in (1, 3):
                want, got = plain.gather(idx, n, 0.9), compact.gather(idx, n, 0.9)
                assert got["obs"].dtype == np.uint8
                for key in want:
                    np.testing.assert_allclose(got[key], want[key], err_msg=f"{key} t={t} n={n}")
                compared += 1
    assert compared >= 20 and plain.full and compact.full
    # Only episode ends, the resume break and the newest row are kept beside the frames.
    assert len(compact.aside) < 0.3 * capacity


def test_frame_replay_is_uint8_and_stored_once_and_oversized_buffers_are_refused(monkeypatch):
    from drlcli.algos import offpolicy
    from drlcli.algos.base import EnvInfo
    from drlcli.algos.dqn import DQN
    from drlcli.config import DQNConfig
    from drlcli.errors import DrlError

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    info = EnvInfo(space, gym.spaces.Discrete(6), 1)
    agent = DQN(DQNConfig(buffer_size=1000), info, torch.device("cpu"))
    assert agent.replay.compact and agent.replay.obs.dtype == np.uint8
    frames = 1000 * 4 * 84 * 84
    assert frames <= agent.replay.nbytes < 1.01 * frames  # float32 obs + next_obs: 8x this
    q = agent.q(torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8))
    assert q.shape == (2, 6)
    monkeypatch.setattr(offpolicy, "physical_memory", lambda: 2**30)
    with pytest.raises(DrlError, match=r"algo.buffer_size=100,000 needs 2.6 GiB .* 1.0 GiB"):
        DQN(DQNConfig(buffer_size=100_000), info, torch.device("cpu"))


# --- snapshots (issue #14) ---------------------------------------------------------------
def _targets(agent):
    from drlcli.algos.dqn import DQN
    from drlcli.algos.sac import SAC

    if isinstance(agent, DQN):
        return [(agent.q, agent.q_target)]
    if isinstance(agent, SAC):
        return [(agent.critics, agent.critics_target)]
    return [(agent.actor, agent.actor_target), (agent.critics, agent.critics_target)]


def _storages(module):
    return {p.untyped_storage().data_ptr() for p in module.parameters()}


@pytest.mark.parametrize("name", ["dqn", "sac", "td3"])
def test_target_networks_and_state_dicts_share_no_storage_with_live_tensors(name):
    """Targets are copies at construction and after a checkpoint round trip; a state dict is a
    snapshot; two learners loaded from one state dict share no optimizer moments."""
    from drlcli.algos.base import EnvInfo
    from drlcli.algos.dqn import DQN
    from drlcli.algos.sac import SAC
    from drlcli.algos.td3 import TD3
    from drlcli.config import DQNConfig, SACConfig, TD3Config

    torch.manual_seed(0)
    obs = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    cls, cfg, space = {
        "dqn": (DQN, DQNConfig, gym.spaces.Discrete(2)),
        "sac": (SAC, SACConfig, gym.spaces.Box(-1.0, 1.0, (2,), np.float32)),
        "td3": (TD3, TD3Config, gym.spaces.Box(-1.0, 1.0, (2,), np.float32)),
    }[name]

    def make():
        c = cfg(hidden_sizes=[8], buffer_size=64, batch_size=8, learning_starts=0)
        return cls(c, EnvInfo(obs, space, 1), torch.device("cpu"))

    agent = make()
    rng = np.random.default_rng(0)
    for _ in range(16):
        action = agent.explore(rng.normal(size=(1, 3)).astype(np.float32), True)[1]
        reward = np.zeros(1, np.float32)
        flags = np.zeros(1, bool)
        o, o2 = rng.normal(size=(1, 3)), rng.normal(size=(1, 3))
        agent.replay.add(o, action, reward, o2, flags, flags)
    agent.env_steps = 16
    agent.learn(2)
    for online, target in _targets(agent):
        assert not _storages(online) & _storages(target)
    state = agent.state_dict()
    frozen = copy.deepcopy({k: v for k, v in state.items() if k != "offpolicy"})
    other = make()
    other.load_state_dict(state)
    for online, target in _targets(other):
        assert not _storages(online) & _storages(target)
    opt_name = next(n for n in agent.stateful if n.endswith("opt") or n == "optimizer")
    other_moments = copy.deepcopy(getattr(other, opt_name).state_dict())
    agent.learn(2)  # moves agent's networks, targets and moments in place
    _assert_same({k: v for k, v in state.items() if k != "offpolicy"}, frozen)
    _assert_same(getattr(other, opt_name).state_dict(), other_moments)


def _assert_same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _dqn_on_cartpole(num_envs: int, train_freq: int, gradient_steps: int):
    from drlcli import registry
    from drlcli.algos.base import EnvInfo
    from drlcli.collector import Collector
    from drlcli.config import EnvConfig, to_train_config
    from drlcli.envs import VecEnv

    cfg = to_train_config(
        cli._compose(
            [
                "algo=dqn",
                f"algo.train_freq={train_freq}",
                f"algo.gradient_steps={gradient_steps}",
                "algo.learning_starts=0",
                "algo.batch_size=8",
            ]
        )
    ).algo
    env = VecEnv(EnvConfig(id="CartPole-v1"), num_envs, 0, training=True)
    info = EnvInfo(env.single_observation_space, env.single_action_space, num_envs)
    algo = registry.build(cfg, info, torch.device("cpu"))
    return env, algo, Collector(env, algo)


@pytest.mark.parametrize("train_freq,gradient_steps", [(4, 1), (256, 128), (1, 1), (6, 4)])
def test_replay_ratio_does_not_depend_on_num_envs(train_freq, gradient_steps):
    """Issue #21: gradient steps per env step are gradient_steps / train_freq for any num_envs
    (train_freq counted a vector step as one step, so 8 envs learned 8x less per env step)."""
    ratios = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for num_envs in (1, 3, 8):
        env, algo, collector = _dqn_on_cartpole(num_envs, train_freq, gradient_steps)
        try:
            while env.global_step < 768:
                collector.collect()
                algo.update(env.global_step / 768)
            ratio = gradient_steps / train_freq
            # Whole gradient steps (what a non-dividing num_envs leaves over carries on); none
            # while the replay holds less than one batch (8 transitions).
            low = (env.global_step - 8 - num_envs) * ratio - gradient_steps
            assert low <= algo.grad_steps <= env.global_step * ratio, num_envs
            ratios[num_envs] = algo.grad_steps / env.global_step
        finally:
            env.close()
    torch.set_num_threads(threads)
    target = gradient_steps / train_freq
    for num_envs, ratio in ratios.items():
        assert ratio == pytest.approx(target, rel=0.2 if num_envs == 3 else 0.1), ratios


def _filled(name, **overrides):
    """A small off-policy learner with 16 random transitions stored (learning can start)."""
    from drlcli.algos.base import EnvInfo
    from drlcli.algos.crossq import CrossQ, CrossQConfig
    from drlcli.algos.dqn import DQN
    from drlcli.algos.sac import SAC
    from drlcli.algos.td3 import TD3
    from drlcli.config import DQNConfig, SACConfig, TD3Config

    torch.manual_seed(0)
    obs = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    cls, cfg, space = {
        "dqn": (DQN, DQNConfig, gym.spaces.Discrete(2)),
        "sac": (SAC, SACConfig, box),
        "td3": (TD3, TD3Config, box),
        "crossq": (CrossQ, CrossQConfig, box),
    }[name]
    c = cfg(hidden_sizes=[8], buffer_size=64, batch_size=8, learning_starts=0, **overrides)
    agent = cls(c, EnvInfo(obs, space, 1), torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(16):
        action = agent.explore(rng.normal(size=(1, 3)).astype(np.float32), True)[1]
        flags = np.zeros(1, bool)
        o, o2 = rng.normal(size=(1, 3)), rng.normal(size=(1, 3))
        agent.replay.add(o, action, np.zeros(1, np.float32), o2, flags, flags)
    agent.env_steps = 16
    return agent


def _lrs(agent):
    return [g["lr"] for opt in agent.optimizers() for g in opt.param_groups]


@pytest.mark.parametrize("name", ["dqn", "sac", "td3", "crossq"])
def test_anneal_lr_decays_every_optimizer_linearly_and_survives_a_checkpoint(name):
    """algo.anneal_lr: lr x (1 - progress) on every optimizer (SAC's temperature too), the RL
    Zoo's lin_<lr>; off by default, where nothing moves."""
    agent = _filled(name, learning_rate=1e-3)
    expected_opts = {"dqn": 1, "sac": 3, "td3": 2, "crossq": 3}[name]
    assert len(agent.optimizers()) == expected_opts
    agent.steps_since_learn = 4
    out = agent.update(0.25)
    assert "charts/learning_rate" not in out
    assert _lrs(agent) == [1e-3] * len(_lrs(agent))

    agent = _filled(name, learning_rate=1e-3, anneal_lr=True)
    agent.steps_since_learn = 4
    out = agent.update(0.25)
    assert out["charts/learning_rate"] == pytest.approx(7.5e-4)
    assert _lrs(agent) == pytest.approx([7.5e-4] * len(_lrs(agent)))
    resumed = _filled(name, learning_rate=1e-3, anneal_lr=True)
    resumed.load_state_dict(agent.state_dict())
    resumed.steps_since_learn = agent.steps_since_learn = 4
    for a in (agent, resumed):
        a.update(0.9)
        assert _lrs(a) == pytest.approx([1e-4] * len(_lrs(a)))
    agent.update(1.0)
    assert _lrs(agent) == [0.0] * len(_lrs(agent))
