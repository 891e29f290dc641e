"""What every policy-gradient method shares: the actor-critic network, rollout storage and its
collection, advantage computation, learning-rate annealing, prediction and checkpoint state.

A method subclasses :class:`OnPolicy` and writes its ``update`` (the part that differs between
the papers) plus, where it needs more than one, ``build_optimizers``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drlcli.algos.base import Algorithm, EnvInfo, VectorStep, to_env_actions
from drlcli.buffers import RolloutBuffer
from drlcli.config import OnPolicyConfig
from drlcli.errors import DrlError
from drlcli.networks import ActorCritic, sde_problems, snapshot
from drlcli.returns import gae
from drlcli.spaces import mask_dim, mask_logits

#: Algorithms (config names) built with ActorCritic's "separate" layout: actor and critic are
#: separate networks with their own updates, so no shared torso, and why (the one place this is
#: checked; tests/test_config.py keeps it in step with the layouts the algorithms build).
SEPARATE_LAYOUT = {
    "trpo": "trpo and npg move the actor alone by the natural-gradient step",
    "ac": "ac gives the actor and the critic optimizers of their own",
    "reinforce": "reinforce fits its baseline apart from the policy",
    "a3c": "a3c's workers update the actor and critic networks apart",
}


def common_problems(cfg: OnPolicyConfig) -> list[str]:
    problems = []
    name = str(getattr(cfg, "name", ""))
    if cfg.shared_network and name in SEPARATE_LAYOUT:
        # Checked here, before a run directory exists (it used to be raised while the
        # network was built, leaving a failed run directory behind and a sweep to start).
        problems.append(
            f"algo.shared_network=true is not available: {SEPARATE_LAYOUT[name]}, so actor and "
            "critic are separate networks; use algo.shared_network=false (or ppo / a2c for a "
            "shared torso)"
        )
    if cfg.num_steps < 1:
        problems.append(f"algo.num_steps must be >= 1 (got {cfg.num_steps})")
    if cfg.learning_rate <= 0:
        problems.append(f"algo.learning_rate must be > 0 (got {cfg.learning_rate})")
    if not 0 <= cfg.gamma <= 1 or not 0 <= cfg.gae_lambda <= 1:
        problems.append("algo.gamma and algo.gae_lambda must lie in [0, 1]")
    if cfg.max_grad_norm <= 0:
        problems.append(f"algo.max_grad_norm must be > 0 (got {cfg.max_grad_norm})")
    for key in ("critic_learning_rate",):
        value = getattr(cfg, key, None)
        if value is not None and value <= 0:
            problems.append(f"algo.{key} must be > 0 (got {value})")
    return problems + sde_problems(cfg)


def build_actor_critic(cfg: OnPolicyConfig, info: EnvInfo, layout: str) -> ActorCritic:
    # shared_network with layout "separate" is refused by common_problems (SEPARATE_LAYOUT),
    # which every algorithm's constructor runs first.
    return ActorCritic(
        info.observation_space,
        info.action_space,
        cfg.hidden_sizes,
        cfg.activation,
        cfg.shared_network,
        cfg.ortho_init,
        cfg.log_std_init,
        layout=layout,
        use_sde=cfg.use_sde,
        num_envs=info.num_envs,
        sde_sample_freq=cfg.sde_sample_freq,
        full_std=cfg.full_std,
        use_expln=cfg.use_expln,
    )


def descend(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list, max_grad_norm: float
) -> None:
    """One clipped gradient step of ``optimizer`` on ``loss`` over ``params``."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()


def raise_problems(label: str, problems: list[str]) -> None:
    if problems:
        raise DrlError(f"Invalid {label} settings: " + "; ".join(problems) + ".")


def rollout_gae(buf: RolloutBuffer, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) advantages and returns of a finished rollout (lambda = 1: n-step)."""
    return gae(buf.rewards, buf.values, buf.next_values, buf.terminated, buf.dones, gamma, lam)


def rollout_act(
    policy: ActorCritic,
    buf: RolloutBuffer,
    t: int,
    obs: np.ndarray,
    action_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Sample actions for rollout row ``t`` from ``obs`` (num_envs, *obs_shape): stores the
    observation, action, log-prob and V(s) in ``buf`` and returns the env actions. With
    ``action_mask`` (num_envs, mask_dim) bool (the buffer was built with ``mask_dim``), masked
    actions get probability 0 and the mask is stored for the update. Call without grad (the
    collector runs under inference mode)."""
    buf.np_obs[t] = obs
    obs_t = torch.from_numpy(buf.np_obs[t])
    if not buf.on_cpu:
        obs_t = obs_t.to(buf.device, non_blocking=True)
    params, value = policy.dist_and_value(obs_t)
    if action_mask is not None:
        assert buf.np_masks is not None, "a masked rollout needs a buffer with mask_dim"
        buf.np_masks[t] = action_mask
        params = mask_logits(params, torch.as_tensor(action_mask, device=buf.device))
    action, logprob = policy.head.sample_and_log_prob(params)
    buf.actions[t] = action
    buf.logprobs[t] = logprob
    buf.values[t] = value
    return to_env_actions(action, policy.continuous)


def rollout_observe(policy: ActorCritic, buf: RolloutBuffer, t: int, step: VectorStep) -> None:
    """Store row ``t``'s rewards and endings. A time-limit truncation is not a terminal state:
    its value is bootstrapped from V(final_obs) (Pardo et al. 2018; SB3's convention)."""
    buf.np_rewards[t] = step.reward
    buf.np_terminated[t] = step.terminated
    np.logical_or(step.terminated, step.truncated, out=buf.np_dones[t])
    trunc = np.flatnonzero(step.truncated & ~step.terminated)
    if trunc.size:
        final = torch.as_tensor(step.final_obs[trunc], device=buf.device)
        buf.final_values[t, torch.as_tensor(trunc, device=buf.device)] = policy.value(final)


def rollout_finish(policy: ActorCritic, buf: RolloutBuffer, next_obs: np.ndarray) -> None:
    """Close a full rollout: bootstrap values V(next_obs) for its last step."""
    buf.finish(policy.value(torch.as_tensor(next_obs, device=buf.device)))


class OnPolicy(Algorithm):
    #: network layout (see ActorCritic): "separate" for methods with their own actor optimizer
    layout = "stacked"

    def __init__(self, cfg: OnPolicyConfig, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        self.cfg: OnPolicyConfig = cfg
        self.policy = self.build_policy().to(device)
        self.optimizers: dict[str, torch.optim.Optimizer] = self.build_optimizers()
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.lr_scale = 1.0
        self.buffer = self.build_buffer()
        self.t = 0  # rollout row the next act() fills

    # --- construction --------------------------------------------------------------------
    def build_policy(self) -> Any:
        return build_actor_critic(self.cfg, self.env_info, self.layout)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "optimizer": torch.optim.Adam(
                self.policy.parameters(), lr=self.cfg.learning_rate, eps=self.cfg.adam_eps
            )
        }

    def build_buffer(self) -> RolloutBuffer | None:
        info = self.env_info
        obs_shape = tuple(info.observation_space.shape or ())
        act_shape = tuple(info.action_space.shape or ())
        act_dtype = torch.float32 if self.policy.continuous else torch.long
        masks = mask_dim(info.action_space) if info.action_masks else 0
        return RolloutBuffer(
            self.cfg.num_steps,
            info.num_envs,
            obs_shape,
            act_shape,
            act_dtype,
            self.device,
            mask_dim=masks,
        )

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.policy}

    # --- experience: ``num_steps`` vector steps per update ---------------------------------
    def begin_collect(self, obs: np.ndarray) -> None:
        assert self.buffer is not None
        self.buffer.final_values.zero_()
        self.t = 0
        # gSDE: new exploration matrices at the start of every rollout (SB3's
        # OnPolicyAlgorithm.collect_rollouts); sde_sample_freq n >= 1 also every n steps.
        self.policy.reset_noise()

    def act(self, obs: np.ndarray, global_step: int) -> np.ndarray:
        assert self.buffer is not None
        return rollout_act(self.policy, self.buffer, self.t, obs)

    def observe(self, step: VectorStep) -> bool:
        assert self.buffer is not None
        rollout_observe(self.policy, self.buffer, self.t, step)
        self.t += 1
        return self.t == self.buffer.num_steps

    def end_collect(self, next_obs: np.ndarray) -> None:
        assert self.buffer is not None
        rollout_finish(self.policy, self.buffer, next_obs)

    def act_masked(self, obs: np.ndarray, global_step: int, action_mask: np.ndarray) -> np.ndarray:
        assert self.buffer is not None
        return rollout_act(self.policy, self.buffer, self.t, obs, action_mask)

    def masked(self, params: Any, idx: torch.Tensor | None = None) -> Any:
        """Policy parameters of rollout samples (all, or the flat indices ``idx``) with the
        masks stored for them applied (issue #19); unchanged when the rollout has no masks.
        Learning must see the distribution the actions were sampled from."""
        buf = self.buffer
        if buf is None or buf.masks is None:
            return params
        masks = buf.flat("masks")
        return mask_logits(params, masks if idx is None else masks[idx])

    def predict_masked(
        self, obs: np.ndarray, action_mask: np.ndarray, deterministic: bool = True
    ) -> np.ndarray:
        return self._predict(obs, deterministic, action_mask)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self._predict(obs, deterministic, None)

    def _predict(
        self, obs: np.ndarray, deterministic: bool, action_mask: np.ndarray | None
    ) -> np.ndarray:
        with torch.inference_mode():
            params = self.policy.dist(torch.as_tensor(obs, device=self.device))
            if action_mask is not None:
                params = mask_logits(params, torch.as_tensor(action_mask, device=self.device))
            head = self.policy.head
            action = head.mode(params) if deterministic else head.sample(params)
        return to_env_actions(action, self.policy.continuous)

    # --- shared learning pieces ----------------------------------------------------------
    def anneal(self, progress: float) -> None:
        """Linear learning-rate decay to 0 over the budget when ``anneal_lr``."""
        if not self.cfg.anneal_lr:
            return
        self.lr_scale = max(1.0 - progress, 0.0)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * self.lr_scale

    @property
    def learning_rate(self) -> float:
        return self.cfg.learning_rate * self.lr_scale

    def compute_advantages(self) -> None:
        """GAE(gamma, lambda) into ``buffer.advantages`` and ``buffer.returns``."""
        buf, cfg = self.buffer, self.cfg
        assert buf is not None
        adv, ret = rollout_gae(buf, cfg.gamma, cfg.gae_lambda)
        buf.advantages.copy_(adv)
        buf.returns.copy_(ret)

    def entropy_metrics(self, obs: torch.Tensor) -> dict[str, float]:
        out: dict[str, float] = {"charts/learning_rate": self.learning_rate}
        with torch.no_grad():
            params = self.policy.dist(obs)
            if self.buffer is not None and len(obs) == self.buffer.size:
                params = self.masked(params)  # the rollout's own observations
            out["losses/entropy"] = float(self.policy.head.entropy(params).mean())
            if self.policy.continuous:
                out["charts/action_std"] = self.policy.action_std(obs)
        return out

    # --- checkpointing -------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Method-specific state beyond networks and optimizers (e.g. PPO's KL beta)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        # A copy: torch's state dicts share storage with the live parameters and moments.
        return snapshot(
            {
                "policy": self.policy.state_dict(),
                "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
                "lr_scale": self.lr_scale,
                "extra": self.extra_state(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        for key, opt in self.optimizers.items():
            # Optimizer.load_state_dict keeps the given moment tensors: give it its own.
            opt.load_state_dict(snapshot(state["optimizers"][key]))
        self.lr_scale = float(state["lr_scale"])
        self.load_extra_state(state.get("extra", {}))
