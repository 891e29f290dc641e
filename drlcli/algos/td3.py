"""Deterministic actor-critics: TD3 (Fujimoto et al. 2018) and DDPG (Lillicrap et al. 2016).

TD3: y = r + gamma (1 - terminated) min_i Q'_i(s', clip(mu'(s') + clip(eps, -c, c), -1, 1)),
critics every step, actor (maximize Q_1(s, mu(s))) and targets every ``policy_delay`` steps.
DDPG is the same loop with one critic, no target smoothing and no delay.
"""

from __future__ import annotations

import copy
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
from drlcli.algos.sac import twin_q
from drlcli.config import TD3Config
from drlcli.hardware import compiled, graph_step
from drlcli.networks import FlatParams, StackedMLP, frozen, mlp
from drlcli.returns import polyak_update


def validate_td3(cfg: TD3Config, num_envs: int, env_cfg: Any = None) -> None:
    """Raise DrlError naming every TD3/DDPG setting that cannot work (before any run dir)."""
    problems = offpolicy_problems(cfg, num_envs)
    if cfg.action_noise not in ("normal", "ou"):
        problems.append(f"algo.action_noise must be normal or ou (got '{cfg.action_noise}')")
    if cfg.policy_delay < 1:
        problems.append(f"algo.policy_delay must be >= 1 (got {cfg.policy_delay})")
    raise_offpolicy_problems(cfg, problems)


class OrnsteinUhlenbeck:
    """Temporally correlated exploration noise, one process per env (reset when it ends)."""

    def __init__(
        self,
        shape: tuple[int, int],
        sigma: float,
        theta: float,
        dt: float,
        rng: np.random.Generator,
    ):
        self.x = np.zeros(shape, dtype=np.float32)
        self.sigma, self.theta, self.dt, self.rng = sigma, theta, dt, rng

    def __call__(self) -> np.ndarray:
        noise = self.rng.standard_normal(self.x.shape).astype(np.float32)
        self.x += -self.theta * self.x * self.dt + self.sigma * np.sqrt(self.dt) * noise
        return self.x

    def reset(self, done: np.ndarray) -> None:
        self.x[done] = 0.0


class DeterministicActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, activation, ortho=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))  # in [-1, 1], scaled to the bounds for the env


class TD3(OffPolicy):
    def __init__(self, cfg: TD3Config, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        self.cfg: TD3Config = cfg
        validate_td3(cfg, env_info.num_envs)
        self.actions = ContinuousActions(env_info.action_space)
        act_dim = self.actions.dim
        n_critics = 2 if cfg.twin_critics else 1
        self.actor = DeterministicActor(self.obs_dim, act_dim, cfg.hidden_sizes, cfg.activation).to(
            device
        )
        self.critics = StackedMLP(
            n_critics,
            self.obs_dim + act_dim,
            cfg.hidden_sizes,
            [1] * n_critics,
            cfg.activation,
            ortho=False,
        ).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_flat = FlatParams(list(self.actor.parameters()))
        self.critic_flat = FlatParams(list(self.critics.parameters()))
        self.actor_target_flat = FlatParams(list(self.actor_target.parameters()))
        self.critic_target_flat = FlatParams(list(self.critics_target.parameters()))
        self.actor_opt = self.actor_flat.optimizer(
            torch.optim.Adam, lr=cfg.learning_rate, fused=True
        )
        self.critic_opt = self.critic_flat.optimizer(
            torch.optim.Adam, lr=cfg.learning_rate, fused=True
        )
        self.replay = self.make_replay((act_dim,), np.float32)
        self.ou = OrnsteinUhlenbeck(
            (env_info.num_envs, act_dim), cfg.action_noise_std, cfg.ou_theta, cfg.ou_dt, self.rng
        )

        # The functions a gradient step calls; compile_learner swaps in compiled ones.
        self._target = self.target
        self._critic_loss = self.critic_loss
        self._actor_loss = self.actor_loss

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics}

    def compile_learner(self, mode: str) -> None:
        self._target = compiled(self.target, mode)
        self._critic_loss = compiled(self.critic_loss, mode)
        self._actor_loss = compiled(self.actor_loss, mode)

    def target(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """y = r + gamma^n (1 - terminated) min_i Q'_i(s', clip(mu'(s') + clip(eps))) (B,),
        eps ~ N(0, target_policy_noise) clipped to +-target_noise_clip (TD3's target policy
        smoothing; none for DDPG), no gradients."""
        cfg = self.cfg
        with torch.no_grad():
            a_next = self.actor_target(b["next_obs"])
            if cfg.twin_critics and cfg.target_policy_noise > 0:
                noise = (torch.randn_like(a_next) * cfg.target_policy_noise).clamp(
                    -cfg.target_noise_clip, cfg.target_noise_clip
                )
                a_next = (a_next + noise).clamp(-1.0, 1.0)
            q_next = torch.stack(twin_q(self.critics_target, b["next_obs"], a_next)).min(0)
            return b["rewards"] + b["discounts"] * (1.0 - b["terminated"].float()) * q_next.values

    def critic_loss(
        self, obs: torch.Tensor, actions: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """Sum over the critics of MSE(Q_i(s, a), y), a scalar."""
        qs = twin_q(self.critics, obs, actions)
        loss = F.mse_loss(qs[0], y)
        for q in qs[1:]:
            loss = loss + F.mse_loss(q, y)
        return loss

    def actor_loss(self, obs: torch.Tensor) -> torch.Tensor:
        """-mean Q_1(s, mu(s)): only the first critic drives the actor (evaluated alone)."""
        x = torch.cat([obs, self.actor(obs)], dim=-1)
        return -self.critics.forward_one(x, 0).mean()

    def explore(self, obs: np.ndarray, random: bool) -> tuple[np.ndarray, np.ndarray]:
        if random:
            a = self.actions.uniform(self.rng, len(obs))
        else:
            with torch.inference_mode():
                a = self.actor(torch.as_tensor(obs, device=self.device)).cpu().numpy()
            if self.cfg.action_noise == "ou":
                a = a + self.ou()
            else:
                a = a + self.cfg.action_noise_std * self.rng.standard_normal(a.shape)
            a = np.clip(a, -1.0, 1.0).astype(np.float32)
        return self.actions.to_env(a), a

    def on_step(self, done: np.ndarray) -> None:
        self.ou.reset(done)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.inference_mode():
            a = self.actor(torch.as_tensor(obs, device=self.device))
        return self.actions.to_env(a.cpu().numpy())

    def learn(self, gradient_steps: int) -> dict[str, float]:
        cfg = self.cfg
        critic_losses, actor_losses = [], []
        for _ in range(gradient_steps):
            graph_step()
            b = self.batch(self.replay.sample_index(cfg.batch_size, self.rng))
            y = self._target(b)
            critic_loss = self._critic_loss(b["obs"], b["actions"], y)
            self.critic_flat.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()
            critic_losses.append(critic_loss.detach())
            self.grad_steps += 1

            if self.grad_steps % cfg.policy_delay == 0:
                with frozen(self.critics):  # no critic weight gradients from the actor's loss
                    actor_loss = self._actor_loss(b["obs"])
                self.actor_flat.zero_grad()
                actor_loss.backward()
                self.actor_opt.step()
                actor_losses.append(actor_loss.detach())
                polyak_update(self.critic_target_flat.data, self.critic_flat.data, cfg.tau)
                polyak_update(self.actor_target_flat.data, self.actor_flat.data, cfg.tau)
        out = {"charts/gradient_steps": float(self.grad_steps)}
        if critic_losses:
            out["losses/critic_loss"] = float(torch.stack(critic_losses).mean())
        if actor_losses:
            out["losses/actor_loss"] = float(torch.stack(actor_losses).mean())
        return out

    stateful = ("actor", "critics", "actor_target", "critics_target", "actor_opt", "critic_opt")

    def extra_state(self) -> dict[str, Any]:
        return {"ou": torch.from_numpy(self.ou.x.copy())}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ou.x[...] = state["ou"].numpy()


SPECS = tuple(
    AlgoSpec(
        name,
        TD3Config,
        TD3,
        (gym.spaces.Box,),
        "off-policy",
        validate=validate_td3,
        hint=f"{name.upper()} " + CONTINUOUS_HINT,
        compilable=True,
        bounded_actions=True,
    )
    for name in ("td3", "ddpg")
)
