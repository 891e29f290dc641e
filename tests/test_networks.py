"""Policy heads against torch.distributions."""

from __future__ import annotations

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
    with pytest.raises(DrlError, match="Discrete or 1-D Box"):
        ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.MultiBinary(3), [8])


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
