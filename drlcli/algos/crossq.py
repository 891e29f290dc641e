"""CrossQ (Bhatt et al., "CrossQ: Batch Normalization in Deep Reinforcement Learning for Greater
Sample Efficiency and Simplicity", ICLR 2024, arXiv:1902.05605).

SAC's squashed Gaussian actor and automatic temperature, with three changes:

1. No target networks. The TD target bootstraps from the live critics:
   y = r + gamma (1 - terminated) (min_i Q_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(.|s').
2. Batch normalization before every critic layer (input included), and in the actor. The
   critic runs ONE forward pass in train mode on the concatenation of the batch (s, a) and the
   bootstrap batch (s', a'), so the normalization statistics cover the mixture of both
   distributions; Q(s, a) and Q(s', a') are the two halves of that output, and the target half
   is used under stop-gradient.
3. The actor (and temperature) is updated every ``policy_delay`` critic updates (3), with Adam
   beta1 = 0.5 and wide critics (2048 x 2048 in the paper).

Batch-norm modes follow the authors' reference implementation (also SBX and sb3-contrib):
acting, evaluation and the next actions a' of the target use the actor in eval mode (running
statistics); the critic's joint forward is in train mode (batch statistics, running statistics
updated); the actor update runs the actor in train mode and the critic in eval mode, so that
Q(s, pi(s)) is scored with the running statistics and the actor loss does not move them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from drlcli.algos.base import CONTINUOUS_HINT, AlgoSpec, EnvInfo
from drlcli.algos.offpolicy import (
    ContinuousActions,
    OffPolicy,
    offpolicy_problems,
    raise_offpolicy_problems,
)
from drlcli.algos.sac import LOG_STD_MAX, LOG_STD_MIN, squashed_log_prob
from drlcli.config import OffPolicyConfig
from drlcli.networks import FlatParams, Linear, activation_cls, frozen


@dataclass
class CrossQConfig(OffPolicyConfig):
    """CrossQ (Bhatt et al., ICLR 2024): SAC without target networks, with batch-normalized
    critics evaluated jointly on (s, a) and (s', a'). Defaults are the paper's hyperparameters."""

    name: str = "crossq"
    learning_rate: float = 1e-3  # Adam step size of actor, critics and temperature
    adam_beta1: float = 0.5  # Adam first-moment decay of actor and critics (paper: 0.5)
    policy_delay: int = 3  # critic updates per actor and temperature update
    tau: float = 1.0  # unused: CrossQ has no target networks
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])  # actor hidden layers
    critic_hidden_sizes: list[int] = field(default_factory=lambda: [2048, 2048])  # per critic
    n_critics: int = 2  # independent critics; the target takes their minimum
    actor_batch_norm: bool = True  # batch norm in the actor too (paper, reference code)
    batch_norm_momentum: float = 0.01  # weight of a new batch in the running stats (torch's)
    batch_norm_eps: float = 1e-3  # added to the variance before normalizing
    ent_coef: str = "auto"  # "auto" (tuned to target entropy -|A|) or a fixed alpha, e.g. "0.2"
    ent_coef_init: float = 1.0  # initial alpha when tuned


def entropy_coef_init(cfg: CrossQConfig) -> float:
    """The initial temperature alpha: ``ent_coef_init`` when tuned (``ent_coef=auto``), else
    ``ent_coef`` read as a number; NaN when it is neither (validate_crossq reports it)."""
    if cfg.ent_coef == "auto":
        return float(cfg.ent_coef_init)
    try:
        return float(cfg.ent_coef)
    except ValueError:
        return math.nan


def validate_crossq(cfg: CrossQConfig, num_envs: int, env_cfg: Any = None) -> None:
    """Raise DrlError naming every CrossQ setting that cannot work (before any run dir exists)."""
    problems = offpolicy_problems(cfg, num_envs)
    if cfg.batch_size < 2:
        problems.append(
            f"algo.batch_size must be >= 2 (got {cfg.batch_size}): batch normalization in train "
            "mode needs more than one sample per feature"
        )
    if cfg.policy_delay < 1:
        problems.append(f"algo.policy_delay must be >= 1 (got {cfg.policy_delay})")
    if cfg.n_critics < 1:
        problems.append(f"algo.n_critics must be >= 1 (got {cfg.n_critics})")
    if not 0 <= cfg.adam_beta1 < 1:
        problems.append(f"algo.adam_beta1 must lie in [0, 1) (got {cfg.adam_beta1})")
    if not 0 < cfg.batch_norm_momentum <= 1:
        problems.append(
            f"algo.batch_norm_momentum must lie in (0, 1] (got {cfg.batch_norm_momentum}); it is "
            "the weight of each new batch (torch's convention: SBX's 0.99 is 0.01 here)"
        )
    if cfg.batch_norm_eps <= 0:
        problems.append(f"algo.batch_norm_eps must be > 0 (got {cfg.batch_norm_eps})")
    for key in ("hidden_sizes", "critic_hidden_sizes"):
        sizes = list(getattr(cfg, key))
        if not sizes or min(sizes) < 1:
            problems.append(f"algo.{key} must be a non-empty list of widths >= 1 (got {sizes})")
    init = entropy_coef_init(cfg)
    if math.isnan(init):
        problems.append(f"algo.ent_coef must be 'auto' or a number (got '{cfg.ent_coef}')")
    elif init <= 0:
        problems.append(f"the entropy coefficient must be > 0 (got {init})")
    raise_offpolicy_problems(cfg, problems)


def bn_mlp(
    in_dim: int,
    hidden: list[int],
    out_dim: int,
    activation: str,
    momentum: float,
    eps: float,
    batch_norm: bool = True,
) -> nn.Sequential:
    """BN -> Linear -> act -> BN -> Linear -> act -> ... -> BN -> Linear(out_dim): a batch norm
    before every linear layer, the input's included (Bhatt et al. 2024; the reference code's
    layout). ``batch_norm=False`` leaves the plain MLP. Input (B, in_dim),
    output (B, out_dim); torch's default Linear init."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for i, width in enumerate([*hidden, out_dim]):
        if batch_norm:
            layers.append(nn.BatchNorm1d(dims[i], eps=eps, momentum=momentum))
        layers.append(Linear(dims[i], width))
        if i < len(hidden):
            layers.append(activation_cls(activation)())
    return nn.Sequential(*layers)


class BatchNormCritics(nn.Module):
    """``n`` independent batch-normalized Q networks on [obs, action]."""

    def __init__(
        self, n: int, in_dim: int, hidden: list[int], activation: str, momentum: float, eps: float
    ):
        super().__init__()
        self.nets = nn.ModuleList(
            bn_mlp(in_dim, hidden, 1, activation, momentum, eps) for _ in range(n)
        )

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), actions (B, act_dim) in [-1, 1] -> Q values (n, B)."""
        x = torch.cat([obs, actions], dim=-1)
        return torch.stack([net(x).squeeze(-1) for net in self.nets])


class BatchNormActor(nn.Module):
    """SAC's squashed Gaussian policy with batch norm before every linear layer."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], cfg: CrossQConfig):
        super().__init__()
        self.net = bn_mlp(
            obs_dim,
            hidden,
            2 * act_dim,
            cfg.activation,
            cfg.batch_norm_momentum,
            cfg.batch_norm_eps,
            cfg.actor_batch_norm,
        )
        self.act_dim = act_dim

    def dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (B, obs_dim) -> (mean, log_std), each (B, act_dim), log_std clamped to [-20, 2]."""
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a = tanh(u) in [-1, 1] (B, act_dim), log pi(a|s) (B,)) with u reparametrized."""
        mean, log_std = self.dist(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), squashed_log_prob(u, mean, log_std)


def critic_loss_and_target(
    critics: BatchNormCritics,
    batch: dict[str, torch.Tensor],
    next_actions: torch.Tensor,
    next_logp: torch.Tensor,
    alpha: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CrossQ's critic loss from one joint forward pass (Bhatt et al. 2024).

    The critics run once, in train mode, on the (2B) concatenation [(s, a); (s', a')], so every
    batch norm normalizes with statistics of both halves and updates its running statistics
    once. The first half is Q(s, a) (n, B); the second gives the target
    y = r + discount (1 - terminated) (min_i Q_i(s', a') - alpha log pi(a'|s')), (B,), under
    stop-gradient. Loss: 0.5 sum_i mean_B (Q_i(s, a) - y)^2, as the reference code. Leaves the
    critics in eval mode. Returns (loss, y, Q(s, a)).
    """
    n = batch["obs"].shape[0]
    critics.train()
    q_all = critics(
        torch.cat([batch["obs"], batch["next_obs"]]), torch.cat([batch["actions"], next_actions])
    )
    critics.eval()
    q, q_next = q_all[:, :n], q_all[:, n:].detach()
    soft_q = q_next.min(0).values - alpha * next_logp
    y = batch["rewards"] + batch["discounts"] * (1.0 - batch["terminated"].float()) * soft_q
    loss = 0.5 * ((q - y) ** 2).mean(1).sum()
    return loss, y, q


class CrossQ(OffPolicy):
    """CrossQ on 1-D bounded Box actions (the actor acts in [-1, 1], scaled to the bounds), vector
    observations (B, obs_dim). Raises DrlError for settings validate_crossq refuses or an
    unbounded action space. Checkpoints hold actor, critics (batch-norm running statistics
    included), the three optimizers, log alpha and the replay buffer."""

    def __init__(self, cfg: CrossQConfig, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        self.cfg: CrossQConfig = cfg
        validate_crossq(cfg, env_info.num_envs)
        self.actions = ContinuousActions(env_info.action_space)
        act_dim = self.actions.dim
        self.actor = BatchNormActor(self.obs_dim, act_dim, list(cfg.hidden_sizes), cfg).to(device)
        self.critics = BatchNormCritics(
            cfg.n_critics,
            self.obs_dim + act_dim,
            list(cfg.critic_hidden_sizes),
            cfg.activation,
            cfg.batch_norm_momentum,
            cfg.batch_norm_eps,
        ).to(device)
        # Eval mode (running statistics) except inside the updates that need batch statistics.
        self.actor.eval()
        self.critics.eval()
        self.actor_flat = FlatParams(list(self.actor.parameters()))
        self.critic_flat = FlatParams(list(self.critics.parameters()))
        betas = (cfg.adam_beta1, 0.999)
        self.actor_opt = self.actor_flat.optimizer(
            torch.optim.Adam, lr=cfg.learning_rate, betas=betas, fused=True
        )
        self.critic_opt = self.critic_flat.optimizer(
            torch.optim.Adam, lr=cfg.learning_rate, betas=betas, fused=True
        )
        self.auto_alpha = cfg.ent_coef == "auto"
        init = entropy_coef_init(cfg)  # raises for a non-number or alpha <= 0 / NaN
        self.log_alpha = torch.tensor(
            [math.log(init)], device=device, requires_grad=self.auto_alpha
        )
        # The temperature keeps Adam's default betas (as the reference code).
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.learning_rate)
        self.target_entropy = -float(act_dim)
        self.replay = self.make_replay((act_dim,), np.float32)

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critics": self.critics}

    def explore(self, obs: np.ndarray, random: bool) -> tuple[np.ndarray, np.ndarray]:
        if random:
            a = self.actions.uniform(self.rng, len(obs))
        else:
            if self.actor.training:
                self.actor.eval()
            with torch.inference_mode():
                a_t, _ = self.actor.sample(torch.as_tensor(obs, device=self.device))
            a = a_t.cpu().numpy()
        return self.actions.to_env(a), a

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        if self.actor.training:
            self.actor.eval()
        with torch.inference_mode():
            o = torch.as_tensor(obs, device=self.device)
            a = torch.tanh(self.actor.dist(o)[0]) if deterministic else self.actor.sample(o)[0]
        return self.actions.to_env(a.cpu().numpy())

    def learn(self, gradient_steps: int) -> dict[str, float]:
        cfg = self.cfg
        critic_stats, actor_stats = [], []
        for _ in range(gradient_steps):
            b = self.batch(self.replay.sample_index(cfg.batch_size, self.rng))
            alpha = self.log_alpha.detach().exp()
            with torch.no_grad():
                self.actor.eval()
                a_next, logp_next = self.actor.sample(b["next_obs"])
            critic_loss, _, _ = critic_loss_and_target(self.critics, b, a_next, logp_next, alpha)
            self.critic_flat.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()
            critic_stats.append(torch.stack([critic_loss.detach(), alpha.squeeze()]))

            self.grad_steps += 1
            if self.grad_steps % cfg.policy_delay == 0:
                actor_stats.append(self.update_actor(b["obs"], alpha))
        if not critic_stats:
            return {}
        c = torch.stack(critic_stats).mean(0).tolist()
        out = {
            "losses/critic_loss": c[0],
            "losses/alpha": c[1],  # the temperature the step's targets used
            "charts/gradient_steps": float(self.grad_steps),
        }
        if actor_stats:
            s = torch.stack(actor_stats).mean(0).tolist()
            out["losses/actor_loss"] = s[0]
            out["losses/entropy"] = s[1]
            if self.auto_alpha:
                out["losses/alpha_loss"] = s[2]
        return out

    def update_actor(self, obs: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """One actor and temperature step on obs (B, obs_dim): the actor in train mode (its batch
        norms use and update batch statistics), the critics in eval mode. Returns the detached
        (actor loss, entropy estimate, temperature loss)."""
        self.actor.train()
        a_pi, logp_pi = self.actor.sample(obs)
        self.actor.eval()
        alpha_loss = torch.zeros((), device=self.device)
        if self.auto_alpha:
            alpha_loss = -(self.log_alpha * (logp_pi.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
        self.critics.eval()
        with frozen(self.critics):  # no critic weight gradients from the actor's loss
            q_pi = self.critics(obs, a_pi).min(0).values
        actor_loss = (alpha * logp_pi - q_pi).mean()
        self.actor_flat.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        return torch.stack([actor_loss.detach(), -logp_pi.detach().mean(), alpha_loss.detach()])

    # The batch-norm running statistics are module buffers: the module state dicts carry them.
    stateful = ("actor", "critics", "actor_opt", "critic_opt", "alpha_opt")

    def extra_state(self) -> dict[str, Any]:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])


SPECS = (
    AlgoSpec(
        "crossq",
        CrossQConfig,
        CrossQ,
        (gym.spaces.Box,),
        "off-policy",
        validate=validate_crossq,
        hint="CrossQ " + CONTINUOUS_HINT,
        bounded_actions=True,
    ),
)
