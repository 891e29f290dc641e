"""Rollout storage for on-policy algorithms. Shapes are (num_steps, num_envs, *shape)."""

from __future__ import annotations

import torch


class RolloutBuffer:
    """Preallocated tensors for one rollout; rewritten in place every iteration."""

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device,
    ):
        self.num_steps = num_steps
        self.num_envs = num_envs
        t, n = num_steps, num_envs
        self.obs = torch.zeros((t, n, *obs_shape), device=device)  # (T, N, *obs) observation at t
        # (T, N, *act)
        self.actions = torch.zeros((t, n, *action_shape), dtype=action_dtype, device=device)
        self.logprobs = torch.zeros((t, n), device=device)  # (T, N) log pi_old(a_t | s_t)
        self.rewards = torch.zeros((t, n), device=device)  # (T, N) r_t (normalized if configured)
        self.values = torch.zeros((t, n), device=device)  # (T, N) V_old(s_t)
        # (T, N) V_old(s_{t+1}), true next state
        self.next_values = torch.zeros((t, n), device=device)
        self.terminated = torch.zeros((t, n), dtype=torch.bool, device=device)  # (T, N)
        # (T, N) terminated | truncated
        self.dones = torch.zeros((t, n), dtype=torch.bool, device=device)
        # (T, N) V(final_obs) where truncated
        self.final_values = torch.zeros((t, n), device=device)
        self.advantages = torch.zeros((t, n), device=device)  # (T, N) filled after the rollout
        self.returns = torch.zeros((t, n), device=device)  # (T, N) advantages + values

    @property
    def size(self) -> int:
        return self.num_steps * self.num_envs

    def finish(self, last_values: torch.Tensor) -> None:
        """Fill next_values: V(s_{t+1}) inside an episode, V(final_obs) where it was truncated
        (0 where terminated: masked by the targets anyway), V(s_T) after the last step."""
        self.next_values[:-1] = self.values[1:]
        self.next_values[-1] = last_values
        torch.where(self.dones, self.final_values, self.next_values, out=self.next_values)

    def flat(self, name: str) -> torch.Tensor:
        """(T, N, *shape) -> (T * N, *shape) view for minibatching."""
        x: torch.Tensor = getattr(self, name)
        return x.reshape(self.size, *x.shape[2:])
