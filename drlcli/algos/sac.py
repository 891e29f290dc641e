"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1812.05905).

Squashed Gaussian actor a = tanh(u), u ~ N(mu(s), sigma(s)), with the change-of-variables
correction log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2); twin critics with the min target
y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')); the temperature
alpha tuned so the policy entropy tracks -|A| (or fixed).

``use_sde=true``: generalized state-dependent exploration (Raffin et al. 2022, as SB3's SAC with
``use_sde``): u = mu(s) + z(s) @ theta_eps, the noise a linear function of the actor's last
hidden layer z(s) through exploration matrices theta_eps ~ N(0, sigma^2) (one per env while
collecting, drawn anew at the start of every collection phase and, with ``sde_sample_freq`` n,
every n steps; one per gradient step while learning), log pi from the Gaussian with variance
z(s)^2 @ sigma^2 plus the tanh correction.
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
from drlcli.hardware import compiled, graph_step
from drlcli.networks import (
    FlatParams,
    Linear,
    StackedMLP,
    StateDependentNoise,
    frozen,
    mlp,
)
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
                f"Invalid SAC settings: algo.ent_coef must be 'auto' or a number, "
                f"got '{cfg.ent_coef}'."
            ) from None
    if not init > 0:  # also NaN
        raise DrlError(f"Invalid SAC settings: the entropy coefficient must be > 0, got {init}.")
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

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """tanh(mean) (B, d): the deterministic action."""
        return torch.tanh(self.dist(obs)[0])

    def sample(
        self, obs: torch.Tensor, matrix: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squashed action (B, d) and its log-prob (B,); ``matrix`` is gSDE's (unused here)."""
        mean, log_std = self.dist(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), squashed_log_prob(u, mean, log_std)

    def training_matrix(self) -> torch.Tensor | None:
        """gSDE's per-gradient-step matrix; None: this actor draws independent noise."""
        return None

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """One collection step's actions (num_envs, d) in [-1, 1]."""
        return self.sample(obs)[0]

    def reset_noise(self) -> None:
        """gSDE only: draw new exploration matrices."""


class SDESquashedGaussianActor(nn.Module):
    """SAC's actor with gSDE (SB3's SAC ``Actor`` with ``use_sde=True``): an MLP torso with an
    activation after every hidden layer gives the features z(s) (B, F); mu(s) = hardtanh(W z + b,
    -clip_mean, clip_mean) (SB3's clip_mean 2.0, against numerical trouble of tanh(u) at large
    means); the std of u for a state is sqrt(z(s)^2 @ sigma^2 + 1e-6) (StateDependentNoise).
    The features are learned through the log-prob and the noise (SB3's learn_features=True).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: list[int],
        activation: str,
        num_envs: int,
        log_std_init: float,
        full_std: bool = True,
        use_expln: bool = False,
        sample_freq: int = -1,
        clip_mean: float = 2.0,
    ):
        super().__init__()
        self.latent = mlp(obs_dim, hidden, None, activation, ortho=False)
        self.mu = Linear(self.latent.out_features, act_dim)
        self.sde = StateDependentNoise(
            self.latent.out_features,
            act_dim,
            num_envs,
            log_std_init,
            full_std,
            use_expln,
            sample_freq,
        )
        self.act_dim = act_dim
        self.clip_mean = clip_mean

    def dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean (B, d), log std of u (B, d), features z (B, F))."""
        z = self.latent(obs)
        mean = self.mu(z)
        if self.clip_mean > 0:
            mean = mean.clamp(-self.clip_mean, self.clip_mean)
        return mean, self.sde.log_std_of(z), z

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """tanh(mean) (B, d): the deterministic action."""
        return torch.tanh(self.dist(obs)[0])

    def sample(
        self, obs: torch.Tensor, matrix: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squashed action (B, d) and log-prob (B,) with noise z(s) @ ``matrix`` (F, d), one
        matrix for the whole batch (a learning step's); None: a fresh matrix per row."""
        mean, log_std, z = self.dist(obs)
        noise = z @ matrix if matrix is not None else self.sde.independent_noise(z)
        u = mean + noise
        return torch.tanh(u), squashed_log_prob(u, mean, log_std)

    def training_matrix(self) -> torch.Tensor:
        """One exploration matrix (F, d) for a gradient step, differentiable in log_std."""
        return self.sde.training_matrix()

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """Collection actions (num_envs, d) in [-1, 1]: tanh(mu(s) + z(s) @ theta_env) with
        each env's current exploration matrix (redrawn every ``sde_sample_freq`` steps)."""
        mean, _, z = self.dist(obs)
        return torch.tanh(mean + self.sde.noise(z))

    def reset_noise(self) -> None:
        """Draw new per-env exploration matrices (the start of a collection phase)."""
        self.sde.resample()


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
        self.actor: SquashedGaussianActor | SDESquashedGaussianActor
        if cfg.use_sde:
            self.actor = SDESquashedGaussianActor(
                self.obs_dim,
                act_dim,
                cfg.hidden_sizes,
                cfg.activation,
                env_info.num_envs,
                cfg.log_std_init,
                cfg.full_std,
                cfg.use_expln,
                cfg.sde_sample_freq,
            ).to(device)
        else:
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
        self.actor_opt = self.actor_flat.optimizer(
            torch.optim.Adam, lr=cfg.learning_rate, fused=True
        )
        self.critic_opt = self.critic_flat.optimizer(
            torch.optim.Adam, lr=cfg.learning_rate, fused=True
        )
        self.auto_alpha = cfg.ent_coef == "auto"
        init = entropy_coef_init(cfg)
        self.log_alpha = torch.tensor(
            [math.log(init)], device=device, requires_grad=self.auto_alpha
        )
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.learning_rate)
        self.target_entropy = -float(act_dim)
        self.replay = self.make_replay((act_dim,), np.float32)
        # The functions a gradient step calls; compile_learner swaps in compiled ones.
        self._sample = self.actor.sample
        self._soft_target = self.soft_target
        self._critic_loss = self.critic_loss
        self._actor_q = self.actor_q

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics}

    def compile_learner(self, mode: str) -> None:
        self._sample = compiled(self.actor.sample, mode)
        self._soft_target = compiled(self.soft_target, mode)
        self._critic_loss = compiled(self.critic_loss, mode)
        self._actor_q = compiled(self.actor_q, mode)

    def soft_target(
        self, b: dict[str, torch.Tensor], alpha: torch.Tensor, matrix: torch.Tensor | None
    ) -> torch.Tensor:
        """y = r + gamma^n (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s')) (B,),
        a' ~ pi(s') (with gSDE's ``matrix`` of this step), no gradients."""
        with torch.no_grad():
            a_next, logp_next = self.actor.sample(b["next_obs"], matrix)
            q1_t, q2_t = twin_q(self.critics_target, b["next_obs"], a_next)
            soft_q = torch.min(q1_t, q2_t) - alpha * logp_next
            return b["rewards"] + b["discounts"] * (1.0 - b["terminated"].float()) * soft_q

    def critic_loss(
        self, obs: torch.Tensor, actions: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """0.5 (MSE(Q1(s, a), y) + MSE(Q2(s, a), y)), a scalar."""
        q1, q2 = twin_q(self.critics, obs, actions)
        return 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))

    def actor_q(self, obs: torch.Tensor, a_pi: torch.Tensor) -> torch.Tensor:
        """min_i Q_i(s, a_pi) (B,); called with the critics frozen."""
        q1_pi, q2_pi = twin_q(self.critics, obs, a_pi)
        return torch.min(q1_pi, q2_pi)

    def explore(self, obs: np.ndarray, random: bool) -> tuple[np.ndarray, np.ndarray]:
        if random:
            a = self.actions.uniform(self.rng, len(obs))
        else:
            with torch.inference_mode():
                a_t = self.actor.explore(torch.as_tensor(obs, device=self.device))
            a = a_t.cpu().numpy()
        return self.actions.to_env(a), a

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.inference_mode():
            o = torch.as_tensor(obs, device=self.device)
            a = self.actor.mean_action(o) if deterministic else self.actor.sample(o)[0]
        return self.actions.to_env(a.cpu().numpy())

    def update(self, progress: float) -> dict[str, float]:
        out = super().update(progress)
        # gSDE: the next collection phase explores with new matrices drawn from the updated
        # std (SB3 draws them at the start of every collect_rollouts, which follows train).
        self.actor.reset_noise()
        return out

    def learn(self, gradient_steps: int) -> dict[str, float]:
        cfg = self.cfg
        stats = []
        for _ in range(gradient_steps):
            graph_step()
            b = self.batch(self.replay.sample_index(cfg.batch_size, self.rng))
            # gSDE: one exploration matrix per gradient step for the batch and its targets.
            matrix = self.actor.training_matrix()
            a_pi, logp_pi = self._sample(b["obs"], matrix)
            # The temperature of this step's targets and actor loss is the one from before its
            # own update (Haarnoja et al. 2018, algorithm 1; Stable-Baselines3 SAC.train).
            alpha = self.log_alpha.detach().exp()
            alpha_loss = torch.zeros((), device=self.device)
            if self.auto_alpha:
                alpha_loss = -(self.log_alpha * (logp_pi.detach() + self.target_entropy)).mean()
                self.alpha_opt.zero_grad(set_to_none=True)
                alpha_loss.backward()
                self.alpha_opt.step()

            y = self._soft_target(b, alpha, matrix)
            critic_loss = self._critic_loss(b["obs"], b["actions"], y)
            self.critic_flat.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()

            with frozen(self.critics):  # no critic weight gradients from the actor's loss
                q_pi = self._actor_q(b["obs"], a_pi)
            actor_loss = (alpha * logp_pi - q_pi).mean()
            self.actor_flat.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()

            self.grad_steps += 1
            if self.grad_steps % cfg.target_update_interval == 0:
                polyak_update(self.target_flat.data, self.critic_flat.data, cfg.tau)
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
        compilable=True,
        bounded_actions=True,
    ),
)
