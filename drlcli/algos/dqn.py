"""DQN (Mnih et al. 2015) and its switches.

    y = r^(n) + gamma^n * (1 - terminated) * Q_target(s', a*),
    a* = argmax_a Q_target(s', a)          (vanilla)
    a* = argmax_a Q_online(s', a)          (double: van Hasselt et al. 2016)

Dueling heads (Wang et al. 2016) compute Q = V + A - mean(A). Prioritized replay (Schaul et al.
2016) samples by |TD error| and weights the loss by importance weights, beta annealed to 1.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drlcli.algos.base import AlgoSpec, EnvInfo, VectorStep
from drlcli.algos.offpolicy import OffPolicy, offpolicy_problems, raise_offpolicy_problems
from drlcli.buffers import PrioritizedReplayBuffer
from drlcli.config import DQNConfig
from drlcli.errors import DrlError
from drlcli.networks import FlatParams, Linear, image_torso, is_image, mlp, obs_dim
from drlcli.returns import polyak_update
from drlcli.spaces import image_parts


def double_dqn_target(
    q_online_next: torch.Tensor,
    q_target_next: torch.Tensor,
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    discounts: torch.Tensor,
    double: bool,
    next_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD target from next-state Q values (B, A) of the online and target networks.

    ``next_mask`` (B, A) bool, True where an action is legal in s' (issue #19): the max (and
    double DQN's argmax) runs over legal next actions only. Every row must allow one action.
    """
    if next_mask is not None:
        q_online_next = q_online_next.masked_fill(~next_mask, -torch.inf)
        q_target_next = q_target_next.masked_fill(~next_mask, -torch.inf)
    if double:
        best = q_online_next.argmax(dim=1, keepdim=True)
        next_q = q_target_next.gather(1, best).squeeze(1)
    else:
        next_q = q_target_next.max(dim=1).values
    return rewards + discounts * (1.0 - terminated.float()) * next_q


def validate_dqn(cfg: DQNConfig, num_envs: int, env_cfg: Any = None) -> None:
    """Raise DrlError naming every DQN setting that cannot work (before any run dir exists)."""
    problems = offpolicy_problems(cfg, num_envs)
    if cfg.n_step < 1:
        problems.append(f"algo.n_step must be >= 1 (got {cfg.n_step})")
    if cfg.loss not in ("huber", "mse"):
        problems.append(f"algo.loss must be huber or mse (got '{cfg.loss}')")
    raise_offpolicy_problems(cfg, problems)


class QNetwork(nn.Module):
    """Q(s, .) for every action: an MLP on vector observations, the Nature-CNN torso (Mnih et al.
    2015) on image observations; linear Q head or dueling V/A heads on top."""

    def __init__(
        self,
        space: gym.Space,
        n_actions: int,
        hidden: list[int],
        activation: str,
        dueling: bool,
    ):
        super().__init__()
        self.dueling = dueling
        self.image = is_image(space) or bool(image_parts(space))
        self.torso: nn.Module
        if self.image:  # the Nature-CNN, or the combined encoder for images inside a Dict
            self.torso = image_torso(space, hidden, activation, False)
            if not dueling:
                self.q: nn.Module = Linear(self.torso.out_features, n_actions)
        elif dueling:
            self.torso = mlp(obs_dim(space), hidden, None, activation, ortho=False)
        else:
            self.q = mlp(obs_dim(space), hidden, n_actions, activation, ortho=False)
        if dueling:
            width = int(self.torso.out_features)
            self.value = Linear(width, 1)
            self.advantage = Linear(width, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs if self.image else obs.reshape(obs.shape[0], -1)
        if not self.dueling and not self.image:
            return self.q(x)
        h = self.torso(x)
        if not self.dueling:
            return self.q(h)
        adv = self.advantage(h)
        return self.value(h) + adv - adv.mean(dim=1, keepdim=True)


class DQN(OffPolicy):
    def __init__(self, cfg: DQNConfig, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        self.cfg: DQNConfig = cfg
        if not isinstance(env_info.action_space, gym.spaces.Discrete):
            raise DrlError(
                f"algo=dqn needs a Discrete action space, got {env_info.action_space}; "
                "use sac, td3 or ddpg for continuous actions."
            )
        validate_dqn(cfg, env_info.num_envs)
        self.n_actions = int(env_info.action_space.n)
        self.q = QNetwork(
            env_info.observation_space,
            self.n_actions,
            cfg.hidden_sizes,
            cfg.activation,
            cfg.dueling,
        ).to(device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.flat = FlatParams(list(self.q.parameters()))
        self.flat_target = FlatParams(list(self.q_target.parameters()))
        self.optimizer = self.flat.optimizer(torch.optim.Adam, lr=cfg.learning_rate, fused=True)
        self.masks = env_info.action_masks
        self._act_mask: np.ndarray | None = None  # the masks of the observations being acted on
        self.replay = self.make_replay(
            (),
            np.int64,
            cfg.prioritized,
            mask_dim=self.n_actions if self.masks else 0,
            **({"alpha": cfg.per_alpha, "eps": cfg.per_eps} if cfg.prioritized else {}),
        )
        self.last_target_update = 0
        self.epsilon = cfg.exploration_initial_eps

    def modules(self) -> dict[str, nn.Module]:
        return {"q": self.q}

    def epsilon_at(self, progress: float) -> float:
        cfg = self.cfg
        frac = min(progress / cfg.exploration_fraction, 1.0) if cfg.exploration_fraction > 0 else 1
        return cfg.exploration_initial_eps + frac * (
            cfg.exploration_final_eps - cfg.exploration_initial_eps
        )

    def explore(self, obs: np.ndarray, random: bool) -> tuple[np.ndarray, np.ndarray]:
        n = len(obs)
        self.epsilon = 1.0 if random else self.epsilon_at(self.progress)
        mask = self._act_mask
        if mask is None:
            actions = self.rng.integers(0, self.n_actions, size=n)
        else:  # uniform over the legal actions: the argmax of uniform noise on them
            actions = np.where(mask, self.rng.random(mask.shape), -1.0).argmax(axis=1)
        greedy = self.rng.random(n) >= self.epsilon
        if greedy.any():
            actions[greedy] = self._predict(
                obs[greedy], True, None if mask is None else mask[greedy]
            )
        return actions, actions

    def act_masked(self, obs: np.ndarray, global_step: int, action_mask: np.ndarray) -> np.ndarray:
        """epsilon-greedy over the legal actions only (issue #19)."""
        self._act_mask = action_mask
        try:
            return self.act(obs, global_step)
        finally:
            self._act_mask = None

    def observe(self, step: VectorStep) -> bool:
        if self.masks:
            nxt = step.next_action_mask
            self.replay.set_next_mask(True if nxt is None else nxt)  # type: ignore[arg-type]
        return super().observe(step)

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
            q = self.q(torch.as_tensor(obs, device=self.device))
            if action_mask is not None:
                q = q.masked_fill(~torch.as_tensor(action_mask, device=self.device), -torch.inf)
        return q.argmax(dim=1).cpu().numpy()

    def learn(self, gradient_steps: int) -> dict[str, float]:
        cfg = self.cfg
        if self.env_steps - self.last_target_update >= cfg.target_update_interval:
            polyak_update(self.flat_target.data, self.flat.data, cfg.tau)
            self.last_target_update = self.env_steps
        per = isinstance(self.replay, PrioritizedReplayBuffer)
        beta = cfg.per_beta + (1.0 - cfg.per_beta) * min(self.progress, 1.0)
        losses, qs = [], []
        for _ in range(gradient_steps):
            idx = self.replay.sample_index(cfg.batch_size, self.rng)
            b = self.batch(idx, cfg.n_step)
            with torch.no_grad():
                next_target = self.q_target(b["next_obs"])
                next_online = self.q(b["next_obs"]) if cfg.double else next_target
                y = double_dqn_target(
                    next_online,
                    next_target,
                    b["rewards"],
                    b["terminated"],
                    b["discounts"],
                    cfg.double,
                    b.get("next_masks"),
                )
            q = self.q(b["obs"]).gather(1, b["actions"].long().unsqueeze(1)).squeeze(1)
            if cfg.loss == "huber":
                elementwise = F.smooth_l1_loss(q, y, reduction="none")
            else:
                elementwise = F.mse_loss(q, y, reduction="none")
            if per:
                assert isinstance(self.replay, PrioritizedReplayBuffer)
                w = torch.as_tensor(self.replay.weights(idx, beta), device=self.device)
                loss = (w * elementwise).mean()
            else:
                loss = elementwise.mean()
            self.flat.zero_grad()
            loss.backward()
            self.flat.clip_grad_norm_(cfg.max_grad_norm)
            self.optimizer.step()
            if isinstance(self.replay, PrioritizedReplayBuffer):
                self.replay.update_priorities(idx, (q.detach() - y).abs().cpu().numpy())
            losses.append(loss.detach())
            qs.append(q.detach().mean())
            self.grad_steps += 1
        out = {"charts/epsilon": self.epsilon, "charts/gradient_steps": float(self.grad_steps)}
        if losses:
            out["losses/td_loss"] = float(torch.stack(losses).mean())
            out["losses/q_values"] = float(torch.stack(qs).mean())
        if per:
            out["charts/per_beta"] = beta
        return out

    stateful = ("q", "q_target", "optimizer")

    def extra_state(self) -> dict[str, Any]:
        return {"last_target_update": self.last_target_update}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.last_target_update = int(state["last_target_update"])


SPECS = (
    AlgoSpec(
        "dqn",
        DQNConfig,
        DQN,
        (gym.spaces.Discrete,),
        "off-policy",
        images=True,
        validate=validate_dqn,
        hint="DQN picks among discrete actions; for continuous actions use sac, td3 or ddpg.",
        action_masks=True,
    ),
)
