"""Network builders, layer init and policy heads.

The heads are small stateless objects with closed-form log-prob / entropy / KL instead of
``torch.distributions``: for the small MLPs RL uses on CPU, distribution objects (argument
validation, broadcasting, per-call Python objects) cost more than the math.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from drlcli.errors import DrlError

# Policy-head parameters: logits (B, n) for categorical heads, (mean (B, d), log_std (d,)) for
# Gaussian ones. Typed loosely so algorithms can hold either head behind one interface.
DistParams = Any

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def activation_cls(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise DrlError(f"Unknown activation '{name}'. Valid choices: {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def layer_init(layer: nn.Linear, gain: float, ortho: bool = True) -> nn.Linear:
    """Orthogonal weights with the given gain and zero bias (Engstrom et al. 2020, sec. 3)."""
    if ortho:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int | None,
    activation: str = "tanh",
    out_gain: float = 1.0,
    ortho: bool = True,
) -> nn.Sequential:
    """in -> hidden... -> out (linear output). ``out_dim=None`` ends after the last hidden layer."""
    act = activation_cls(activation)
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [layer_init(nn.Linear(last, width), math.sqrt(2), ortho), act()]
        last = width
    if out_dim is not None:
        layers.append(layer_init(nn.Linear(last, out_dim), out_gain, ortho))
    return nn.Sequential(*layers)


class CategoricalHead:
    """Discrete actions; the network outputs logits (B, n)."""

    def __init__(self, n: int):
        self.n = n
        self.param_dim = n

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        # Gumbel-max: argmax(logits + Gumbel noise) is an exact sample of softmax(logits).
        u = torch.rand_like(logits)
        return torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.argmax(logits, dim=-1)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return -(logp.exp() * logp).sum(-1)

    def kl(self, old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
        """KL(old || new) per sample."""
        old_logp = torch.log_softmax(old_logits, dim=-1)
        new_logp = torch.log_softmax(new_logits, dim=-1)
        return (old_logp.exp() * (old_logp - new_logp)).sum(-1)


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussianHead:
    """Diagonal Gaussian; the network outputs means (B, d), the log std is a state-independent
    parameter owned by the policy and passed in alongside (broadcast to the means)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.param_dim = dim

    @staticmethod
    def _split(params: DistParams) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = params
        return mean, log_std.expand_as(mean)

    def sample(self, params: DistParams) -> torch.Tensor:
        mean, log_std = self._split(params)
        return mean + log_std.exp() * torch.randn_like(mean)

    def mode(self, params: DistParams) -> torch.Tensor:
        return params[0]

    def log_prob(self, params: DistParams, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(params)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self, params: DistParams) -> torch.Tensor:
        _, log_std = self._split(params)
        return (log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)

    def kl(self, old: DistParams, new: DistParams) -> torch.Tensor:
        m0, s0 = self._split(old)
        m1, s1 = self._split(new)
        var0, var1 = torch.exp(2 * s0), torch.exp(2 * s1)
        return (s1 - s0 + (var0 + (m0 - m1).pow(2)) / (2 * var1) - 0.5).sum(-1)


def obs_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box):
        raise DrlError(
            f"Observation space {space} is not supported by the MLP policies: drlcli needs a "
            "Box observation space (wrap discrete observations, e.g. with a one-hot wrapper)."
        )
    return int(np.prod(space.shape))


class ActorCritic(nn.Module):
    """Separate (or shared-torso) MLP actor and critic for a Discrete or Box action space."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int],
        activation: str = "tanh",
        shared: bool = False,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
    ):
        super().__init__()
        in_dim = obs_dim(observation_space)
        self.head: CategoricalHead | GaussianHead
        if isinstance(action_space, gym.spaces.Discrete):
            self.head = CategoricalHead(int(action_space.n))
            self.continuous = False
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.head = GaussianHead(int(action_space.shape[0]))
            self.continuous = True
        else:
            raise DrlError(
                f"Action space {action_space} is not supported: actor-critic policies take "
                "Discrete or 1-D Box action spaces."
            )
        out = self.head.param_dim
        self.shared = shared
        self.actor: nn.Module
        self.critic: nn.Module
        if shared:
            self.torso = mlp(in_dim, hidden_sizes, None, activation, ortho=ortho_init)
            last = hidden_sizes[-1] if hidden_sizes else in_dim
            self.actor = layer_init(nn.Linear(last, out), 0.01, ortho_init)
            self.critic = layer_init(nn.Linear(last, 1), 1.0, ortho_init)
        else:
            self.actor = mlp(in_dim, hidden_sizes, out, activation, 0.01, ortho_init)
            self.critic = mlp(in_dim, hidden_sizes, 1, activation, 1.0, ortho_init)
        if self.continuous:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.reshape(obs.shape[0], -1) if obs.dim() > 2 else obs

    def dist_and_value(self, obs: torch.Tensor) -> tuple[DistParams, torch.Tensor]:
        """Policy parameters and state value (B,) in one pass."""
        x = self._flat(obs)
        if self.shared:
            h = self.torso(x)
            out, value = self.actor(h), self.critic(h)
        else:
            out, value = self.actor(x), self.critic(x)
        params = (out, self.log_std) if self.continuous else out
        return params, value.squeeze(-1)

    def dist(self, obs: torch.Tensor) -> DistParams:
        x = self._flat(obs)
        out = self.actor(self.torso(x)) if self.shared else self.actor(x)
        return (out, self.log_std) if self.continuous else out

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        x = self._flat(obs)
        out = self.critic(self.torso(x)) if self.shared else self.critic(x)
        return out.squeeze(-1)
