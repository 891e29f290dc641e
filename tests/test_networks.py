"""Policy heads against torch.distributions."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from drlcli.errors import DrlError
from drlcli.networks import ActorCritic, CategoricalHead, GaussianHead


def test_categorical_head_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(64, 5)
    actions = torch.randint(0, 5, (64,))
    head, ref = CategoricalHead(5), Categorical(logits=logits)
    torch.testing.assert_close(head.log_prob(logits, actions), ref.log_prob(actions))
    torch.testing.assert_close(head.entropy(logits), ref.entropy())
    other = torch.randn(64, 5)
    torch.testing.assert_close(
        head.kl(logits, other), kl_divergence(ref, Categorical(logits=other))
    )


def test_categorical_sampling_frequencies():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(60000, 3)
    counts = torch.bincount(CategoricalHead(3).sample(logits), minlength=3).float() / 60000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.6, 0.3]), atol=0.01, rtol=0)


def test_gaussian_head_matches_torch():
    torch.manual_seed(0)
    mean, log_std = torch.randn(32, 3), torch.randn(3)
    actions = torch.randn(32, 3)
    head = GaussianHead(3)
    ref = Normal(mean, log_std.exp().expand_as(mean))
    torch.testing.assert_close(
        head.log_prob((mean, log_std), actions), ref.log_prob(actions).sum(-1)
    )
    torch.testing.assert_close(head.entropy((mean, log_std)), ref.entropy().sum(-1))
    mean2, log_std2 = torch.randn(32, 3), torch.randn(3)
    ref2 = Normal(mean2, log_std2.exp().expand_as(mean2))
    torch.testing.assert_close(
        head.kl((mean, log_std), (mean2, log_std2)), kl_divergence(ref, ref2).sum(-1)
    )


@pytest.mark.parametrize("shared", [False, True])
def test_actor_critic_shapes(shared):
    obs_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    for act_space, cont in [(gym.spaces.Discrete(3), False), (gym.spaces.Box(-2, 2, (2,)), True)]:
        ac = ActorCritic(obs_space, act_space, [16, 16], "tanh", shared=shared)
        params, value = ac.dist_and_value(torch.zeros(7, 4))
        assert value.shape == (7,)
        assert ac.continuous == cont
        action = ac.head.sample(params)
        assert action.shape == ((7, 2) if cont else (7,))


def test_unsupported_spaces_are_clear():
    with pytest.raises(DrlError, match="Box observation space"):
        ActorCritic(gym.spaces.Discrete(4), gym.spaces.Discrete(2), [8])
    with pytest.raises(DrlError, match="1-D MultiDiscrete or 1-D MultiBinary"):
        ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.MultiBinary((2, 2)), [8])


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_stacked_mlp_fused_backward_matches_autograd(activation):
    from drlcli.networks import StackedMLP

    torch.manual_seed(0)
    net = StackedMLP(2, 4, [64, 64], [3, 1], activation)
    x = torch.randn(300, 4)  # large enough for the sigmoid-based tanh path

    def grads(fused):
        net._fused_ok = fused
        actor, critic = net(x)
        loss = (actor.pow(2)).sum() + (critic * 3).sum()
        return [actor, critic], torch.autograd.grad(loss, net._params)

    outs_f, g_f = grads(True)
    outs_a, g_a = grads(False)
    for a, b in zip(outs_f, outs_a):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    for a, b in zip(g_f, g_a):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_stacked_mlp_equals_separate_networks():
    from drlcli.networks import StackedMLP

    torch.manual_seed(1)
    net = StackedMLP(2, 5, [16], [2, 1], "relu")
    x = torch.randn(7, 5)
    actor, critic = net(x)
    for i, out in enumerate((actor, critic)):
        w1, b1 = net.weights[0][i], net.biases[0][i]
        w2, b2 = net.weights[1][i], net.biases[1][i]
        ref = (torch.relu(x @ w1 + b1) @ w2 + b2)[:, : net.out_dims[i]]
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(net.forward_one(x, i), ref)
    # Padding columns of the critic's output layer start at zero and get no gradient.
    assert (net.weights[-1][1, :, 1:] == 0).all()


def test_flat_params_alias_parameters_and_gradients():
    from drlcli.networks import FlatParams

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    flat = FlatParams(list(net.parameters()))
    opt = torch.optim.Adam([flat.param], lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    for _ in range(2):
        flat.zero_grad()
        net(torch.randn(5, 3)).pow(2).sum().backward()
        norm = flat.clip_grad_norm_(1e-3)
        assert norm > 1e-3 and torch.linalg.vector_norm(flat.grad) <= 1e-3 * 1.0001
        opt.step()
    assert flat.check_views()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_sample_and_log_prob_consistent_with_log_prob():
    torch.manual_seed(0)
    logits = torch.randn(50, 4)
    head = CategoricalHead(4)
    a, lp = head.sample_and_log_prob(logits)
    torch.testing.assert_close(lp, head.log_prob(logits, a))
    g = GaussianHead(2)
    params = (torch.randn(50, 2), torch.randn(2))
    a, lp = g.sample_and_log_prob(params)
    torch.testing.assert_close(lp, g.log_prob(params, a), atol=1e-5, rtol=1e-5)


def test_stacked_mlp_fused_input_gradient():
    """Critics take the actor's action as input: the gradient must reach it."""
    from drlcli.networks import StackedMLP

    torch.manual_seed(2)
    net = StackedMLP(2, 5, [32, 32], [1, 1], "relu")
    x = torch.randn(40, 5, requires_grad=True)
    q1, q2 = net(x)
    (g_fused,) = torch.autograd.grad((q1 * 2 + q2).sum(), x)
    net._fused_ok = False
    q1, q2 = net(x)
    (g_ref,) = torch.autograd.grad((q1 * 2 + q2).sum(), x)
    torch.testing.assert_close(g_fused, g_ref, atol=1e-6, rtol=1e-5)


# --- snapshots (issue #14) ---------------------------------------------------------------
@pytest.mark.parametrize("layout", ["stacked", "separate", "shared"])
def test_old_gaussian_policy_does_not_move_with_log_std(layout):
    """The issue's minimal repro: an "old" policy taken under no_grad, then log_std moved in
    place. The old policy held the live Parameter, so the KL came out 0.0; a +0.5 shift of the
    log std costs 0.5 + e^-1 / 2 - 0.5 per dimension, e^-1 = 0.368 for two."""
    torch.manual_seed(0)
    box2 = gym.spaces.Box(-1, 1, (2,))
    policy = ActorCritic(gym.spaces.Box(-1, 1, (3,)), box2, [8], layout=layout)
    obs = torch.randn(5, 3)
    with torch.no_grad():
        old = policy.dist(obs)
        policy.log_std.add_(0.5)
    with torch.no_grad():
        kl = policy.head.kl(old, policy.dist(obs))
    torch.testing.assert_close(kl, torch.full((5,), math.exp(-1.0)), rtol=1e-6, atol=0)
    assert abs(float(kl.mean()) - 0.368) < 1e-3
    # While autograd records, dist() hands out the live Parameter: losses need its gradient.
    assert policy.dist(obs)[1] is policy.log_std


def test_recurrent_old_gaussian_policy_does_not_move_with_log_std():
    from drlcli.networks import RecurrentActorCritic

    torch.manual_seed(0)
    net = RecurrentActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), [8])
    obs, starts = torch.randn(4, 2, 3), torch.zeros(4, 2, dtype=torch.bool)
    with torch.no_grad():
        old, _ = net.unroll(obs, net.initial_state(2), starts)
        net.log_std.add_(0.5)
        new, _ = net.unroll(obs, net.initial_state(2), starts)
    assert float(net.head.kl(old, new).mean()) == pytest.approx(math.exp(-1.0), rel=1e-5)


def test_snapshot_copies_every_tensor_and_keeps_the_structure():
    from collections import OrderedDict, namedtuple

    from drlcli.networks import snapshot

    pair = namedtuple("pair", "a b")
    live = torch.nn.Parameter(torch.zeros(3))
    state = OrderedDict(w=live, opt={"m": [live, 2.0], "step": torch.tensor(1.0)}, name="x")
    state._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    value = (torch.ones(2), live)
    nested = pair(a=value, b=None)
    copied = snapshot({"state": state, "dist": value, "nested": nested})
    with torch.no_grad():
        live.add_(1.0)
    assert isinstance(copied["state"], OrderedDict) and copied["state"]._metadata == state._metadata
    assert type(copied["nested"]) is pair and copied["nested"].b is None
    for t in (copied["state"]["w"], copied["state"]["opt"]["m"][0], copied["dist"][1]):
        assert not t.requires_grad and torch.equal(t, torch.zeros(3))
    assert copied["state"]["opt"]["m"][1] == 2.0 and copied["state"]["name"] == "x"
    assert copied["dist"][1].data_ptr() != live.data_ptr()


def test_deepcopy_of_a_flat_params_module_is_independent():
    """FlatParams turns parameters into views of one flat tensor; a deepcopy (e.g. a target
    network, or a test's copy of the pre-update policy) must own its storage and still run
    through its own parameters (the plain lists StackedMLP and MLP keep for speed)."""
    import copy

    from drlcli.networks import FlatParams

    torch.manual_seed(0)
    policy = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), [8])
    flat = FlatParams(list(policy.parameters()))
    twin = copy.deepcopy(policy)
    storage = flat.param.untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() != storage for p in twin.parameters())
    own = [p for wb in zip(twin.nets.weights, twin.nets.biases) for p in wb]
    assert all(a is b for a, b in zip(twin.nets._params, own, strict=True))
    obs = torch.randn(4, 3)
    with torch.no_grad():
        before = twin.dist_and_value(obs)
        flat.param.add_(0.1)  # an optimizer step on the original
        after = twin.dist_and_value(obs)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert not torch.equal(policy.log_std, twin.log_std)
