"""PPO-Clip (Schulman et al. 2017, arXiv:1707.06347).

Collect ``num_steps`` x ``num_envs`` transitions with the current policy, compute GAE
advantages (Schulman et al. 2016), then run ``update_epochs`` passes of minibatch Adam on

    L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + vf_coef * E[(V - R)^2] - ent_coef * E[H]

with r = pi(a|s) / pi_old(a|s). Implementation details follow "The 37 implementation details of
PPO" (Huang et al. 2022): orthogonal init, advantage normalization per minibatch, optional value
clipping, global grad-norm clip, linear learning-rate annealing, approx-KL early stop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from drlcli.algos.base import Algorithm, EnvInfo, collect_rollout, to_env_actions
from drlcli.buffers import RolloutBuffer
from drlcli.config import PPOConfig
from drlcli.envs import VecEnv
from drlcli.errors import DrlError
from drlcli.networks import ActorCritic, FlatParams
from drlcli.returns import explained_variance, gae


def validate_ppo(cfg: PPOConfig, num_envs: int) -> None:
    batch = cfg.num_steps * num_envs
    problems = []
    if cfg.num_steps < 1:
        problems.append(f"algo.num_steps must be >= 1 (got {cfg.num_steps})")
    if cfg.minibatch_size < 1 or cfg.minibatch_size > batch:
        problems.append(
            f"algo.minibatch_size={cfg.minibatch_size} must be between 1 and the rollout size "
            f"num_steps x num_envs = {cfg.num_steps} x {num_envs} = {batch}"
        )
    if cfg.learning_rate <= 0:
        problems.append(f"algo.learning_rate must be > 0 (got {cfg.learning_rate})")
    if cfg.update_epochs < 1:
        problems.append(f"algo.update_epochs must be >= 1 (got {cfg.update_epochs})")
    if not 0 <= cfg.gamma <= 1 or not 0 <= cfg.gae_lambda <= 1:
        problems.append("algo.gamma and algo.gae_lambda must lie in [0, 1]")
    if cfg.clip_coef <= 0:
        problems.append(f"algo.clip_coef must be > 0 (got {cfg.clip_coef})")
    if problems:
        raise DrlError("Invalid PPO settings: " + "; ".join(problems) + ".")


class PPO(Algorithm):
    def __init__(self, cfg: PPOConfig, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        validate_ppo(cfg, env_info.num_envs)
        self.cfg: PPOConfig = cfg
        self.policy = ActorCritic(
            env_info.observation_space,
            env_info.action_space,
            cfg.hidden_sizes,
            cfg.activation,
            cfg.shared_network,
            cfg.ortho_init,
            cfg.log_std_init,
        ).to(device)
        # Per-op overhead, not FLOPs, bounds small nets: all parameters live in one flat tensor
        # so Adam is one fused kernel and the gradient-norm clip two ops.
        self.flat = FlatParams(list(self.policy.parameters()))
        self.optimizer = torch.optim.Adam(
            [self.flat.param], lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True
        )
        obs_shape = tuple(env_info.observation_space.shape or ())
        act_space = env_info.action_space
        act_shape = tuple(act_space.shape or ())
        act_dtype = torch.float32 if self.policy.continuous else torch.long
        self.buffer = RolloutBuffer(
            cfg.num_steps, env_info.num_envs, obs_shape, act_shape, act_dtype, device
        )
        self.learning_rate = cfg.learning_rate

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy}

    # --- experience ----------------------------------------------------------------------
    def collect(self, env: VecEnv) -> None:
        obs = env.obs if env.obs is not None else env.reset()
        collect_rollout(self.policy, env, self.buffer, obs)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.inference_mode():
            params = self.policy.dist(torch.as_tensor(obs, device=self.device))
            head = self.policy.head
            action = head.mode(params) if deterministic else head.sample(params)
        return to_env_actions(action, self.policy.continuous)

    # --- learning ------------------------------------------------------------------------
    def update(self, progress: float) -> dict[str, float]:
        cfg, buf, policy, head = self.cfg, self.buffer, self.policy, self.policy.head
        if cfg.anneal_lr:
            self.learning_rate = cfg.learning_rate * max(1.0 - progress, 0.0)
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate
        adv, ret = gae(
            buf.rewards,
            buf.values,
            buf.next_values,
            buf.terminated,
            buf.dones,
            cfg.gamma,
            cfg.gae_lambda,
        )
        buf.advantages.copy_(adv)
        buf.returns.copy_(ret)

        b_obs, b_act = buf.flat("obs"), buf.flat("actions")
        b_logp, b_adv = buf.flat("logprobs"), buf.flat("advantages")
        b_ret, b_val = buf.flat("returns"), buf.flat("values")
        size, mb = buf.size, cfg.minibatch_size
        full_batch = mb >= size
        if cfg.norm_adv and full_batch:
            # Per-minibatch normalization of a single full-batch minibatch, hoisted out of the loop.
            b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)

        logratios, pg_losses, v_losses = [], [], []
        epochs_done = 0
        stop = False
        for _ in range(cfg.update_epochs):
            # A minibatch as large as the rollout needs no shuffling: the loss is a mean.
            perm = None if full_batch else torch.randperm(size, device=self.device)
            for start in range(0, size - mb + 1, mb):
                if perm is None:
                    obs, act, old_logp, adv, ret, old_v = b_obs, b_act, b_logp, b_adv, b_ret, b_val
                else:
                    idx = perm[start : start + mb]
                    obs, act, old_logp = b_obs[idx], b_act[idx], b_logp[idx]
                    adv, ret, old_v = b_adv[idx], b_ret[idx], b_val[idx]
                    if cfg.norm_adv and mb > 1:
                        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

                dist_params, value = policy.dist_and_value(obs)
                logratio = head.log_prob(dist_params, act) - old_logp
                if cfg.target_kl is not None:
                    with torch.no_grad():
                        # Schulman's low-variance unbiased KL estimator k3 = (r - 1) - log r.
                        kl = (logratio.exp() - 1 - logratio).mean().item()
                    if kl > 1.5 * cfg.target_kl:
                        stop = True
                        break
                ratio = logratio.exp()
                pg_loss = -torch.min(
                    ratio * adv, ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef) * adv
                ).mean()
                if cfg.clip_vloss:
                    v_clipped = old_v + (value - old_v).clamp(-cfg.vf_clip_coef, cfg.vf_clip_coef)
                    v_loss = torch.max((value - ret).pow(2), (v_clipped - ret).pow(2)).mean()
                else:
                    v_loss = F.mse_loss(value, ret)
                loss = pg_loss + cfg.vf_coef * v_loss
                if cfg.ent_coef != 0.0:
                    loss = loss - cfg.ent_coef * head.entropy(dist_params).mean()

                self.flat.zero_grad()
                loss.backward()
                self.flat.clip_grad_norm_(cfg.max_grad_norm)
                self.optimizer.step()
                # Metrics are reduced once per update, not per minibatch.
                logratios.append(logratio.detach())
                pg_losses.append(pg_loss.detach())
                v_losses.append(v_loss.detach())
            epochs_done += 1
            if stop:
                break

        out = {
            "charts/learning_rate": self.learning_rate,
            "charts/update_epochs": float(epochs_done),
            "losses/explained_variance": explained_variance(b_val, b_ret),
        }
        with torch.no_grad():
            out["losses/entropy"] = float(head.entropy(policy.dist(b_obs)).mean())
            if logratios:
                lr_all = torch.stack(logratios)
                ratio_all = lr_all.exp()
                out["losses/policy_loss"] = float(torch.stack(pg_losses).mean())
                out["losses/value_loss"] = float(torch.stack(v_losses).mean())
                out["losses/approx_kl"] = float((ratio_all - 1 - lr_all).mean())
                out["losses/clipfrac"] = float(
                    ((ratio_all - 1).abs() > cfg.clip_coef).float().mean()
                )
            if self.policy.continuous:
                out["charts/action_std"] = float(self.policy.log_std.exp().mean())
        return out

    # --- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "learning_rate": self.learning_rate,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.learning_rate = float(state["learning_rate"])
