"""Rollout storage for on-policy algorithms. Shapes are (num_steps, num_envs, *shape)."""

from __future__ import annotations

import numpy as np
import torch


class RolloutBuffer:
    """Preallocated tensors for one rollout; rewritten in place every iteration.

    What the env returns (observations, rewards, flags) is written into numpy arrays, which on
    the CPU are the very memory of the torch tensors (``torch.from_numpy``): a numpy row write
    costs a fraction of a torch indexing op. On an accelerator they are host staging buffers
    copied to the device once per rollout by ``finish``.
    """

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
        self.device = device
        t, n = num_steps, num_envs
        self.on_cpu = device.type == "cpu"
        # Host side, written by the env loop.
        self.np_obs = np.zeros((t, n, *obs_shape), dtype=np.float32)  # (T, N, *obs) s_t
        self.np_rewards = np.zeros((t, n), dtype=np.float32)  # (T, N) r_t (normalized if on)
        self.np_terminated = np.zeros((t, n), dtype=bool)  # (T, N) true terminal at t
        self.np_dones = np.zeros((t, n), dtype=bool)  # (T, N) terminated | truncated at t
        self.obs = self._mirror(self.np_obs)
        self.rewards = self._mirror(self.np_rewards)
        self.terminated = self._mirror(self.np_terminated)
        self.dones = self._mirror(self.np_dones)
        # Device side, written by the policy.
        self.actions = torch.zeros(
            (t, n, *action_shape), dtype=action_dtype, device=device
        )  # (T,N,*a)
        self.logprobs = torch.zeros((t, n), device=device)  # (T, N) log pi_old(a_t | s_t)
        self.values = torch.zeros((t, n), device=device)  # (T, N) V_old(s_t)
        self.final_values = torch.zeros(
            (t, n), device=device
        )  # (T, N) V(final_obs) where truncated
        self.next_values = torch.zeros((t, n), device=device)  # (T, N) V_old of the true next state
        self.advantages = torch.zeros((t, n), device=device)  # (T, N) filled after the rollout
        self.returns = torch.zeros((t, n), device=device)  # (T, N) advantages + values

    def _mirror(self, array: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(array)
        return host if self.on_cpu else torch.empty_like(host, device=self.device)

    @property
    def size(self) -> int:
        return self.num_steps * self.num_envs

    def finish(self, last_values: torch.Tensor) -> None:
        """Move env data to the device, then fill next_values: V(s_{t+1}) inside an episode,
        V(final_obs) where it was truncated (0 where terminated: masked by the targets anyway),
        V(s_T) after the last step."""
        if not self.on_cpu:
            for name in ("obs", "rewards", "terminated", "dones"):
                src = torch.from_numpy(getattr(self, "np_" + name))
                getattr(self, name).copy_(src, non_blocking=False)
        self.next_values[:-1] = self.values[1:]
        self.next_values[-1] = last_values
        torch.where(self.dones, self.final_values, self.next_values, out=self.next_values)

    def flat(self, name: str) -> torch.Tensor:
        """(T, N, *shape) -> (T * N, *shape) view for minibatching."""
        x: torch.Tensor = getattr(self, name)
        return x.reshape(self.size, *x.shape[2:])
