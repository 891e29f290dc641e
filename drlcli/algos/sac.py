"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1812.05905).

Squashed Gaussian actor a = tanh(u), u ~ N(mu(s), sigma(s)), with the change-of-variables
correction log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2); twin critics with the min target
y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')); the temperature
alpha tuned so the policy entropy tracks -|A| (or fixed).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drlcli.algos.base import CONTINUOUS_HINT, AlgoSpec, EnvInfo
from drlcli.algos.offpolicy import (
    ContinuousActions,
    OffPolicy,
    offpolicy_problems,
    raise_offpolicy_problems,
)
from drlcli.config import SACConfig
from drlcli.errors import DrlError
from drlcli.networks import FlatParams, StackedMLP, mlp
from drlcli.returns import polyak_update

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_LOG2 = math.log(2.0)


def entropy_coef_init(cfg: SACConfig) -> float:
    """The initial temperature alpha: ``ent_coef_init`` when tuned (``ent_coef=auto``), else
    ``ent_coef`` as a number. Raises DrlError for anything else or alpha <= 0."""
    if cfg.ent_coef == "auto":
        init = cfg.ent_coef_init
    else:
        try:
            init = float(cfg.ent_coef)
        except ValueError:
            raise DrlError(
                f"Invalid SACConfig settings: algo.ent_coef must be 'auto' or a number, "
                f"got '{cfg.ent_coef}'."
            ) from None
    if init <= 0:
        raise DrlError(
            f"Invalid SACConfig settings: the entropy coefficient must be > 0, got {init}."
        )
    return init


def validate_sac(cfg: SACConfig, num_envs: int, env_cfg: Any = None) -> None:
    """Raise DrlError naming every SAC setting that cannot work (before any run dir exists)."""
    raise_offpolicy_problems(cfg, offpolicy_problems(cfg, num_envs))
    entropy_coef_init(cfg)


def squashed_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)), summed over action dims.

    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact and stable for large |u|.
    """
    z = (u - mean) * torch.exp(-log_std)
    gauss = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    correction = (2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)
    return gauss - correction


class SquashedGaussianActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * act_dim, activation, ortho=False)
        self.act_dim = act_dim

    def dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.dist(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), squashed_log_prob(u, mean, log_std)


def twin_q(
    critics: StackedMLP, obs: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    outs = critics(torch.cat([obs, actions], dim=-1))
    return tuple(q.squeeze(-1) for q in outs)


class SAC(OffPolicy):
    def __init__(self, cfg: SACConfig, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        self.cfg: SACConfig = cfg
        self.actions = ContinuousActions(env_info.action_space)
        act_dim = self.actions.dim
        self.actor = SquashedGaussianActor(
            self.obs_dim, act_dim, cfg.hidden_sizes, cfg.activation
        ).to(device)
        self.critics = StackedMLP(
            2, self.obs_dim + act_dim, cfg.hidden_sizes, [1, 1], cfg.activation, ortho=False
        ).to(device)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_flat = FlatParams(list(self.actor.parameters()))
        self.critic_flat = FlatParams(list(self.critics.parameters()))
        self.target_flat = FlatParams(list(self.critics_target.parameters()))
        self.actor_opt = torch.optim.Adam([self.actor_flat.param], lr=cfg.learning_rate, fused=True)
        self.critic_opt = torch.optim.Adam(
            [self.critic_flat.param], lr=cfg.learning_rate, fused=True
        )
        self.auto_alpha = cfg.ent_coef == "auto"
        init = entropy_coef_init(cfg)
        self.log_alpha = torch.tensor(
            [math.log(init)], device=device, requires_grad=self.auto_alpha
        )
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.learning_rate)
        self.target_entropy = -float(act_dim)
        self.replay = self.make_replay((act_dim,), np.float32)

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics}

    def explore(self, obs: np.ndarray, random: bool) -> tuple[np.ndarray, np.ndarray]:
        if random:
            a = self.actions.uniform(self.rng, len(obs))
        else:
            with torch.inference_mode():
                a_t, _ = self.actor.sample(torch.as_tensor(obs, device=self.device))
            a = a_t.cpu().numpy()
        return self.actions.to_env(a), a

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.inference_mode():
            o = torch.as_tensor(obs, device=self.device)
            a = torch.tanh(self.actor.dist(o)[0]) if deterministic else self.actor.sample(o)[0]
        return self.actions.to_env(a.cpu().numpy())

    def learn(self, gradient_steps: int) -> dict[str, float]:
        cfg = self.cfg
        stats = []
        for _ in range(gradient_steps):
            b = self.batch(self.replay.sample_index(cfg.batch_size, self.rng))
            a_pi, logp_pi = self.actor.sample(b["obs"])
            # The temperature of this step's targets and actor loss is the one from before its
            # own update (Haarnoja et al. 2018, algorithm 1; Stable-Baselines3 SAC.train).
            alpha = self.log_alpha.detach().exp()
            alpha_loss = torch.zeros((), device=self.device)
            if self.auto_alpha:
                alpha_loss = -(self.log_alpha * (logp_pi.detach() + self.target_entropy)).mean()
                self.alpha_opt.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_opt.step()

            with torch.no_grad():
                a_next, logp_next = self.actor.sample(b["next_obs"])
                q1_t, q2_t = twin_q(self.critics_target, b["next_obs"], a_next)
                soft_q = torch.min(q1_t, q2_t) - alpha * logp_next
                y = b["rewards"] + b["discounts"] * (1.0 - b["terminated"].float()) * soft_q
            q1, q2 = twin_q(self.critics, b["obs"], b["actions"])
            critic_loss = 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))
            self.critic_flat.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()

            q1_pi, q2_pi = twin_q(self.critics, b["obs"], a_pi)
            actor_loss = (alpha * logp_pi - torch.min(q1_pi, q2_pi)).mean()
            self.actor_flat.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()

            self.grad_steps += 1
            if self.grad_steps % cfg.target_update_interval == 0:
                polyak_update(self.target_flat.param, self.critic_flat.param, cfg.tau)
            stats.append(
                torch.stack(
                    [
                        critic_loss.detach(),
                        actor_loss.detach(),
                        alpha.squeeze(),
                        -logp_pi.detach().mean(),
                        alpha_loss.detach(),
                    ]
                )
            )
        if not stats:
            return {}
        s = torch.stack(stats).mean(0).tolist()
        out = {
            "losses/critic_loss": s[0],
            "losses/actor_loss": s[1],
            "losses/alpha": s[2],  # the temperature the step's targets and actor loss used
            "losses/entropy": s[3],
            "charts/gradient_steps": float(self.grad_steps),
        }
        if self.auto_alpha:
            out["losses/alpha_loss"] = s[4]
        return out

    stateful = ("actor", "critics", "critics_target", "actor_opt", "critic_opt", "alpha_opt")

    def extra_state(self) -> dict[str, Any]:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])


SPECS = (
    AlgoSpec(
        "sac",
        SACConfig,
        SAC,
        (gym.spaces.Box,),
        "off-policy",
        validate=validate_sac,
        hint="SAC " + CONTINUOUS_HINT,
    ),
)
