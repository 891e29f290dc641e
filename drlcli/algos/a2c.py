"""Advantage actor-critic methods.

A2C — the synchronous, batched form of A3C (Mnih et al. 2016, arXiv:1602.01783, algorithm S3):
every ``num_steps`` steps of ``num_envs`` envs, one gradient step on

    L = -E[log pi(a_t|s_t) A_t] + vf_coef * E[(V(s_t) - R_t)^2] - ent_coef * E[H(pi(.|s_t))]

where R_t is the n-step return bootstrapped from V at the rollout's end (``gae_lambda=1``) or
a GAE(lambda) target, and A_t = R_t - V(s_t). RMSprop as in the paper, or Adam.

AC — the one-step actor-critic of Sutton & Barto (2018, section 13.5): after every env step,
delta = r + gamma V(s') - V(s); the critic descends delta^2 / 2 and the actor ascends
delta * grad log pi(a|s), each with its own optimizer and learning rate.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from drlcli.algos.base import POLICY_GRADIENT_ACTIONS, AlgoSpec, EnvInfo
from drlcli.algos.onpolicy import OnPolicy, common_problems, descend, raise_problems
from drlcli.config import A2CConfig, ACConfig
from drlcli.networks import FlatParams
from drlcli.returns import explained_variance


def validate_a2c(cfg: A2CConfig | ACConfig, num_envs: int, env_cfg: Any = None) -> None:
    problems = common_problems(cfg)
    if isinstance(cfg, A2CConfig) and cfg.optimizer not in ("rmsprop", "adam"):
        problems.append(f"algo.optimizer must be rmsprop or adam (got '{cfg.optimizer}')")
    raise_problems(cfg.name.upper(), problems)


class A2C(OnPolicy):
    def __init__(self, cfg: A2CConfig, env_info: EnvInfo, device: torch.device):
        validate_a2c(cfg, env_info.num_envs)
        self.cfg: A2CConfig = cfg
        super().__init__(cfg, env_info, device)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.cfg
        self.flat = FlatParams(list(self.policy.parameters()))
        opt: torch.optim.Optimizer
        if cfg.optimizer == "rmsprop":
            opt = self.flat.optimizer(
                torch.optim.RMSprop, lr=cfg.learning_rate, alpha=cfg.rms_alpha, eps=cfg.rms_eps
            )
        else:
            opt = self.flat.optimizer(torch.optim.Adam, lr=cfg.learning_rate, eps=cfg.adam_eps)
        return {"optimizer": opt}

    def update(self, progress: float) -> dict[str, float]:
        cfg, buf, head = self.cfg, self.buffer, self.policy.head
        assert buf is not None
        self.anneal(progress)
        self.compute_advantages()
        obs, act = buf.flat("obs"), buf.flat("actions")
        adv, ret = buf.flat("advantages"), buf.flat("returns")
        if cfg.norm_adv and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        dist_params, value = self.policy.dist_and_value(obs)
        dist_params = self.masked(dist_params)  # the rollout's action masks, if any
        logp = head.log_prob(dist_params, act)
        pg_loss = -(logp * adv).mean()
        v_loss = F.mse_loss(value, ret)
        entropy = head.entropy(dist_params).mean()
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy

        self.flat.zero_grad()
        loss.backward()
        grad_norm = self.flat.clip_grad_norm_(cfg.max_grad_norm)
        self.optimizers["optimizer"].step()

        out = self.entropy_metrics(obs)
        out.update(
            {
                "losses/policy_loss": float(pg_loss.detach()),
                "losses/value_loss": float(v_loss.detach()),
                "losses/grad_norm": float(grad_norm),
                "losses/explained_variance": explained_variance(buf.flat("values"), ret),
            }
        )
        return out


class AC(OnPolicy):
    layout = "separate"

    def __init__(self, cfg: ACConfig, env_info: EnvInfo, device: torch.device):
        validate_a2c(cfg, env_info.num_envs)
        self.cfg: ACConfig = cfg
        super().__init__(cfg, env_info, device)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg, policy = self.cfg, self.policy
        return {
            "actor": torch.optim.Adam(
                policy.actor_parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps
            ),
            "critic": torch.optim.Adam(
                policy.critic_parameters(), lr=cfg.critic_learning_rate, eps=cfg.adam_eps
            ),
        }

    def update(self, progress: float) -> dict[str, float]:
        cfg, buf, policy, head = self.cfg, self.buffer, self.policy, self.policy.head
        assert buf is not None
        self.anneal(progress)
        # With gae_lambda = 0 the advantage is the TD error delta and the return the TD target
        # r + gamma V(s') (0 after a termination, V(final_obs) after a truncation).
        self.compute_advantages()
        obs, act = buf.flat("obs"), buf.flat("actions")
        delta, target = buf.flat("advantages"), buf.flat("returns")
        if cfg.norm_adv and delta.numel() > 1:
            delta = (delta - delta.mean()) / (delta.std() + 1e-8)

        # Critic: semi-gradient TD(0), the target held fixed.
        value = policy.value(obs)
        v_loss = 0.5 * (target - value).pow(2).mean()
        descend(self.optimizers["critic"], v_loss, policy.critic_parameters(), cfg.max_grad_norm)

        # Actor: delta * grad log pi(a|s), plus an optional entropy bonus.
        dist_params = policy.dist(obs)
        pg_loss = -(head.log_prob(dist_params, act) * delta).mean()
        entropy = head.entropy(dist_params).mean()
        actor_loss = pg_loss - cfg.ent_coef * entropy
        descend(self.optimizers["actor"], actor_loss, policy.actor_parameters(), cfg.max_grad_norm)

        out = {
            "charts/learning_rate": self.learning_rate,
            "losses/policy_loss": float(pg_loss.detach()),
            "losses/value_loss": float(v_loss.detach()),
            "losses/entropy": float(entropy.detach()),
            "losses/td_error": float(buf.advantages.abs().mean()),
        }
        if policy.continuous:
            out["charts/action_std"] = float(policy.log_std.detach().exp().mean())
        return out


SPECS = (
    AlgoSpec(
        "a2c",
        A2CConfig,
        A2C,
        POLICY_GRADIENT_ACTIONS,
        "on-policy",
        images=True,
        validate=validate_a2c,
        action_masks=True,
    ),
    AlgoSpec("ac", ACConfig, AC, POLICY_GRADIENT_ACTIONS, "on-policy", validate=validate_a2c),
)
