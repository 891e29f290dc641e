"""The policy-gradient family: conjugate gradient, Fisher-vector products, the adaptive KL
beta, reward-to-go, recurrent state handling, REINFORCE's whole-episode batches, and one update
of each method checked for what its paper promises."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from drlcli import cli, registry
from drlcli.algos.base import EnvInfo
from drlcli.algos.ppo import adapt_kl_beta, validate_ppo
from drlcli.algos.reinforce import reward_to_go
from drlcli.algos.trpo import conjugate_gradient, fisher_vector_product
from drlcli.collector import Collector
from drlcli.config import EnvConfig, PPOConfig
from drlcli.envs import VecEnv
from drlcli.errors import DrlError
from drlcli.networks import ActorCritic, RecurrentActorCritic

CPU = torch.device("cpu")


def algo_cfg(name: str, *overrides: str):
    cfg = OmegaConf.to_object(cli._compose([f"algo={name}", *overrides]))
    return cfg.algo


def make_env(env_id="CartPole-v1", n=4, seed=0, **kwargs) -> VecEnv:
    cfg = EnvConfig(id=env_id, num_envs=n, **kwargs)
    return VecEnv(cfg, n, seed, "sync", 0.99, training=True)


def build(name: str, env: VecEnv, *overrides: str):
    info = EnvInfo(env.single_observation_space, env.single_action_space, env.num_envs)
    return registry.build(algo_cfg(name, *overrides), info, CPU)


# --- math ----------------------------------------------------------------------------------
def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(8, 8, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=8)  # exact in n steps (in exact arithmetic)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-6, atol=1e-8)
    # Fewer iterations: still a descent on the quadratic, residual shrinks.
    x3 = conjugate_gradient(lambda v: a @ v, b, iters=3)
    assert torch.linalg.norm(a @ x3 - b) < torch.linalg.norm(b)


@pytest.mark.parametrize(
    "action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,))], ids=["cat", "gauss"]
)
def test_fisher_vector_product_matches_explicit_kl_hessian(action_space):
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,))
    policy = ActorCritic(obs_space, action_space, [4], "tanh", layout="separate").double()
    with torch.no_grad():  # move away from the tiny-output init so the Hessian is not ~0
        for p in policy.actor_parameters():
            p.add_(0.5 * torch.randn_like(p))
    obs = torch.randn(16, 3, dtype=torch.float64)
    params = policy.actor_parameters()
    with torch.no_grad():
        # An independent old policy: against the live log std the log-std block of the
        # Hessian is 0 and a wrong FVP passes (issue #14).
        old = copy.deepcopy(policy).dist(obs)
    # Explicit Hessian of the mean KL(pi_old || pi_theta) at theta_old, row by row.
    kl = policy.head.kl(old, policy.dist(obs)).mean()
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    rows = []
    for i in range(flat.numel()):
        row = torch.autograd.grad(flat[i], params, retain_graph=True)
        rows.append(torch.cat([r.reshape(-1) for r in row]))
    hessian = torch.stack(rows)
    assert torch.allclose(hessian, hessian.T, atol=1e-10)
    assert torch.linalg.eigvalsh(hessian).min() > -1e-8  # PSD, as a Fisher matrix must be
    v = torch.randn(flat.numel(), dtype=torch.float64)
    fvp = fisher_vector_product(policy, obs, old, v, damping=0.1)
    torch.testing.assert_close(fvp, hessian @ v + 0.1 * v, rtol=1e-8, atol=1e-10)
    if policy.continuous:
        # d^2 KL / d log_std^2 of a diagonal Gaussian is 2 per dimension, whatever the means.
        torch.testing.assert_close(hessian[-2:, -2:], 2 * torch.eye(2, dtype=torch.float64))


def test_adaptive_kl_beta_rule():
    assert adapt_kl_beta(1.0, kl=0.001, kl_target=0.01) == 0.5  # < d/1.5: halve
    assert adapt_kl_beta(1.0, kl=0.02, kl_target=0.01) == 2.0  # > 1.5 d: double
    assert adapt_kl_beta(1.0, kl=0.01, kl_target=0.01) == 1.0
    assert adapt_kl_beta(1.0, kl=0.0149, kl_target=0.01) == 1.0
    assert adapt_kl_beta(1.0, kl=0.0067, kl_target=0.01) == 1.0


def test_reward_to_go_against_a_loop():
    rng = np.random.default_rng(0)
    t, n, gamma = 12, 3, 0.9
    rewards = rng.normal(size=(t, n)).astype(np.float32)
    dones = rng.random((t, n)) < 0.2
    expected = np.zeros((t, n))
    for env in range(n):
        running = 0.0
        for step in range(t - 1, -1, -1):
            if dones[step, env]:
                running = 0.0
            running = rewards[step, env] + gamma * running
            expected[step, env] = running
    got = reward_to_go(torch.from_numpy(rewards), torch.from_numpy(dones), gamma)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


# --- recurrent state -------------------------------------------------------------------------
@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_hidden_state_resets_at_episode_starts(rnn):
    torch.manual_seed(0)
    net = RecurrentActorCritic(
        gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Discrete(2), [8], rnn_type=rnn, rnn_hidden=6
    )
    t, b = 7, 2
    obs = torch.randn(t, b, 3)
    starts = torch.zeros(t, b, dtype=torch.bool)
    starts[4, 0] = True  # env 0 begins a new episode at step 4
    state = torch.randn_like(net.initial_state(b))  # a non-zero carried-in state
    with torch.no_grad():
        logits, values = net.unroll(obs, state, starts)
        logits, values = logits.reshape(t, b, -1), values.reshape(t, b)
        # From step 4 on, env 0 must equal a fresh run on its new episode alone.
        fresh_logits, fresh_values = net.unroll(
            obs[4:, :1], net.initial_state(1), torch.zeros(t - 4, 1, dtype=torch.bool)
        )
        torch.testing.assert_close(logits[4:, 0], fresh_logits)
        torch.testing.assert_close(values[4:, 0], fresh_values)
        # Before step 4 (and for env 1 throughout) the carried-in state matters.
        zero_start, _ = net.unroll(obs, net.initial_state(b), starts)
        assert not torch.allclose(logits[:4, 0], zero_start.reshape(t, b, -1)[:4, 0])
        # step() one at a time is the same computation as unroll().
        s = state
        for i in range(t):
            p, v, s = net.step(obs[i], s, starts[i])
            torch.testing.assert_close(p, logits[i])
            torch.testing.assert_close(v, values[i])


def test_recurrent_ppo_replays_its_rollout_exactly():
    """The sequences trained on reproduce the log-probs and values seen while collecting: the
    stored initial state and episode-start flags are right (resets included)."""
    env = make_env(n=4, max_episode_steps=20)
    algo = build("ppo_gru", env, "algo.num_steps=48", "algo.minibatch_size=96")
    torch.manual_seed(0)
    for _ in range(2):  # the second rollout starts from a carried, non-zero state
        Collector(env, algo).collect()
        buf = algo.buffer
        assert algo.starts[1:].any(), "episodes should end inside the rollout"
        with torch.no_grad():
            params, values = algo.forward(buf.flat("obs"), None)
            logp = algo.policy.head.log_prob(params, buf.flat("actions"))
        torch.testing.assert_close(logp, buf.flat("logprobs"), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(values, buf.flat("values"), rtol=1e-5, atol=1e-5)
        # Minibatches are whole sequences of half the envs, in time-major order.
        batches = list(algo.minibatches())
        assert len(batches) == 2
        for idx, envs in batches:
            assert idx.numel() == 48 * 2 and sorted((idx % 4).unique().tolist()) == sorted(
                envs.tolist()
            )
        algo.update(0.0)
    env.close()


# --- REINFORCE batches -------------------------------------------------------------------------
def used_episode_lengths(ret: torch.Tensor) -> list[int]:
    """With gamma = 1 and reward 1 per step an episode of length L contributes G = L, ..., 1;
    so #(G == k) - #(G == k + 1) episodes have length exactly k."""
    values = ret.round().long()
    counts = torch.bincount(values, minlength=int(values.max()) + 2)
    lengths = []
    for k in range(1, counts.numel() - 1):
        lengths += [k] * int(counts[k] - counts[k + 1])
    return sorted(lengths)


def test_reinforce_learns_only_from_whole_on_policy_episodes():
    env = make_env(n=3, max_episode_steps=40)
    algo = build("reinforce", env, "algo.num_steps=50", "algo.gamma=1.0")
    Collector(env, algo).collect()
    ret = algo.batch["ret"]
    assert ret.numel() >= 50 * 3 and (ret >= 1).all() and (ret == ret.round()).all()
    # First batch: every env started fresh, so exactly the finished episodes are used.
    finished = sorted(e.length for e in env.drain_episodes())
    assert used_episode_lengths(ret) == finished
    assert algo.discarded == env.global_step - ret.numel()
    algo.update(0.0)

    # Episodes still running at the update were begun by the old policy: played out, not used.
    running = int((~algo.on_policy).sum())
    assert running > 0
    Collector(env, algo).collect()
    finished = sorted(e.length for e in env.drain_episodes())
    used = used_episode_lengths(algo.batch["ret"])
    assert len(used) == len(finished) - running
    assert sum(used) == algo.batch["ret"].numel()
    env.close()


# --- one update of each method ---------------------------------------------------------------
def test_trpo_step_respects_the_kl_radius_and_improves_the_surrogate():
    torch.manual_seed(0)
    env = make_env(n=4)
    algo = build("trpo", env, "algo.num_steps=128", "algo.max_kl=0.01")
    Collector(env, algo).collect()
    out = algo.update(0.0)
    assert out["charts/step_accepted"] == 1.0
    assert 0 < out["losses/kl"] <= 0.01 + 1e-6
    assert out["losses/surrogate_gain"] > 0
    env.close()


def test_npg_takes_the_full_kl_scaled_step():
    torch.manual_seed(0)
    env = make_env(n=4)
    algo = build("npg", env, "algo.num_steps=128", "algo.max_kl=0.01")
    Collector(env, algo).collect()
    out = algo.update(0.0)
    assert out["charts/line_search_backtracks"] == 0.0
    # The quadratic model puts the step on the KL radius; the exact KL is close to it.
    assert 0.003 < out["losses/kl"] < 0.03, out
    env.close()


def test_ppo_kl_penalty_adapts_and_logs_beta():
    torch.manual_seed(0)
    env = make_env(n=4)
    algo = build("ppo_kl", env, "algo.num_steps=64", "algo.kl_beta_init=1.0")
    betas = []
    for _ in range(3):
        Collector(env, algo).collect()
        out = algo.update(0.0)
        betas.append(out["charts/kl_beta"])
        expected_next = adapt_kl_beta(out["charts/kl_beta"], out["losses/kl"], 0.01)
        assert algo.kl_beta == expected_next
    assert betas[0] == 1.0
    env.close()


@pytest.mark.parametrize("name", ["a2c", "ac", "reinforce", "trpo", "npg", "ppo_kl", "ppo_gru"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_each_method_updates_on_discrete_and_continuous_actions(name, env_id):
    torch.manual_seed(0)
    env = make_env(env_id, n=2)
    extra = ["algo.minibatch_size=32"] if name.startswith("ppo") else []
    algo = build(name, env, "algo.num_steps=32", *extra)
    before = {k: v.clone() for k, v in algo.policy.state_dict().items()}
    Collector(env, algo).collect()
    out = algo.update(0.5)
    assert all(np.isfinite(v) for v in out.values()), out
    changed = [k for k, v in algo.policy.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the update changed no parameter"
    actions = algo.predict(env.obs)
    assert env.single_action_space.contains(actions[0].astype(env.single_action_space.dtype))
    # A checkpoint round trip restores the same networks and optimizer state.
    state = algo.state_dict()
    other = build(name, env, "algo.num_steps=32", *extra)
    other.load_state_dict(state)
    for k, v in algo.policy.state_dict().items():
        assert torch.equal(v, other.policy.state_dict()[k])
    env.close()


# --- snapshots and minibatches (issue #14) ---------------------------------------------------
@pytest.mark.parametrize("name", ["ppo", "ppo_kl", "trpo", "a2c", "ppo_gru"])
def test_old_policy_is_a_copy_not_the_live_parameters(name):
    """Each method's pi_old (what its trust region / KL penalty compares against) survives an
    in-place change of every live parameter, log std included."""
    torch.manual_seed(0)
    env = make_env("Pendulum-v1", n=2)
    extra = ["algo.minibatch_size=32"] if name.startswith("ppo") else []
    algo = build(name, env, "algo.num_steps=16", *extra)
    Collector(env, algo).collect()
    obs = algo.buffer.flat("obs")
    if hasattr(algo, "old_dist"):
        old = algo.old_dist(obs)
    else:
        with torch.no_grad():
            old = algo.policy.dist(obs)
    kept = [t.clone() for t in old]
    with torch.no_grad():
        for p in algo.policy.parameters():
            p.add_(0.25)
    for a, b in zip(old, kept):
        assert torch.equal(a, b)
    env.close()


def test_state_dict_is_a_snapshot_and_loading_shares_no_optimizer_state():
    """torch's state dicts share storage with the live tensors, and Optimizer.load_state_dict
    keeps the very moment tensors it is given: two learners loaded from one state (or a state
    kept to save later) must not move together."""
    torch.manual_seed(0)
    env = make_env(n=2)
    algo = build("ppo", env, "algo.num_steps=16", "algo.minibatch_size=32")
    Collector(env, algo).collect()
    algo.update(0.0)
    state = algo.state_dict()
    frozen = copy.deepcopy(state)
    other = build("ppo", env, "algo.num_steps=16", "algo.minibatch_size=32")
    other.load_state_dict(state)
    other_moments = copy.deepcopy(other.optimizers["optimizer"].state_dict())
    Collector(env, algo).collect()
    algo.update(0.0)  # moves algo's parameters and Adam moments in place
    _assert_same(state, frozen)
    _assert_same(other.optimizers["optimizer"].state_dict(), other_moments)
    env.close()


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


@pytest.mark.parametrize(
    "overrides,num_envs,message",
    [
        (
            {"minibatch_size": 100},
            3,
            r"minibatch_size=100 does not divide the rollout .*= 384, so 84 samples .*size=96",
        ),
        ({"minibatch_size": 384, "recurrent": True}, 8, r"does not divide .*= 1024.*=512"),
    ],
)
def test_ppo_refuses_a_minibatch_size_that_does_not_divide_the_rollout(
    overrides, num_envs, message
):
    with pytest.raises(DrlError, match=message):
        validate_ppo(PPOConfig(num_steps=128, **overrides), num_envs)
    validate_ppo(PPOConfig(num_steps=128, minibatch_size=96), 3)


def test_ppo_minibatches_use_every_sample_once_per_epoch():
    info = EnvInfo(gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Discrete(2), 3)
    algo = registry.build(algo_cfg("ppo", "algo.num_steps=8", "algo.minibatch_size=12"), info, CPU)
    seen = torch.cat([idx for idx, _ in algo.minibatches()])
    assert sorted(seen.tolist()) == list(range(24))


def test_trpo_critic_regression_uses_every_sample(monkeypatch):
    torch.manual_seed(0)
    env = make_env(n=2)
    algo = build("trpo", env, "algo.num_steps=10", "algo.critic_minibatch_size=8")
    Collector(env, algo).collect()
    sizes = []
    value = algo.policy.value
    monkeypatch.setattr(algo.policy, "value", lambda obs: sizes.append(len(obs)) or value(obs))
    algo.update(0.0)
    assert sizes == [8, 8, 4] * algo.cfg.critic_epochs
    env.close()
