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
