"""Rollout storage (on-policy) and replay buffers (off-policy). Shapes are (steps, envs, *shape)."""

from __future__ import annotations

from typing import Any

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
        mask_dim: int = 0,
    ):
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = device
        t, n = num_steps, num_envs
        self.on_cpu = device.type == "cpu"
        # Host side, written by the env loop. On CUDA these are page-locked (pinned) so the
        # once-per-rollout copy to the device is a DMA transfer that does not stage through
        # pageable memory.
        host = self._host_array
        self.np_obs = host((t, n, *obs_shape), torch.float32)  # (T, N, *obs) s_t
        self.np_rewards = host((t, n), torch.float32)  # (T, N) r_t (normalized if on)
        self.np_terminated = host((t, n), torch.bool)  # (T, N) true terminal at t
        self.np_dones = host((t, n), torch.bool)  # (T, N) terminated | truncated at t
        self.obs = self._mirror(self.np_obs)
        self.rewards = self._mirror(self.np_rewards)
        self.terminated = self._mirror(self.np_terminated)
        self.dones = self._mirror(self.np_dones)
        # Action masks (issue #19), only when the env gives them: (T, N, mask_dim) bool, True
        # where legal in s_t; the update re-masks the logits it recomputes with them.
        self.np_masks: np.ndarray | None = None
        self.masks: torch.Tensor | None = None
        if mask_dim:
            self.np_masks = host((t, n, mask_dim), torch.bool)
            self.masks = self._mirror(self.np_masks)
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

    def _host_array(self, shape: tuple[int, ...], dtype: torch.dtype) -> np.ndarray:
        pin = self.device.type == "cuda"
        return torch.zeros(shape, dtype=dtype, pin_memory=pin).numpy()

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
            names = ("obs", "rewards", "terminated", "dones")
            for name in (*names, "masks") if self.masks is not None else names:
                src = torch.from_numpy(getattr(self, "np_" + name))
                getattr(self, name).copy_(src, non_blocking=True)
            if self.device.type == "cuda":
                # The host buffers are rewritten by the next rollout: let the DMA finish first.
                torch.cuda.current_stream(self.device).synchronize()
        self.next_values[:-1] = self.values[1:]
        self.next_values[-1] = last_values
        torch.where(self.dones, self.final_values, self.next_values, out=self.next_values)

    def flat(self, name: str) -> torch.Tensor:
        """(T, N, *shape) -> (T * N, *shape) view for minibatching."""
        x: torch.Tensor = getattr(self, name)
        return x.reshape(self.size, *x.shape[2:])


class SplitColumns:
    """A float32 array (rows, num_envs, D) kept as two: the ``pixel`` columns as uint8 (the
    pixels of images inside a Dict observation, issue #19: 1 byte each instead of 4) and the
    other columns as float32. Indexing on the leading axes reads and writes like the float32
    array it stands for (a read assembles a new array). Pixel values must be integers in
    [0, 255]; they are what a uint8 image space holds."""

    def __init__(self, shape: tuple[int, ...], pixel_columns: np.ndarray):
        d = shape[-1]
        self.shape = shape
        self.dtype = np.dtype(np.float32)
        self.pix_cols = np.asarray(pixel_columns, dtype=np.int64)
        keep = np.ones(d, dtype=bool)
        keep[self.pix_cols] = False
        self.vec_cols = np.flatnonzero(keep)
        self.pixels = np.zeros((*shape[:-1], len(self.pix_cols)), dtype=np.uint8)
        self.vectors = np.zeros((*shape[:-1], len(self.vec_cols)), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes + self.vectors.nbytes

    def __getitem__(self, idx: Any) -> np.ndarray:
        pix = self.pixels[idx]
        out = np.empty((*pix.shape[:-1], self.shape[-1]), dtype=np.float32)
        out[..., self.pix_cols] = pix
        out[..., self.vec_cols] = self.vectors[idx]
        return out

    def __setitem__(self, idx: Any, value: Any) -> None:
        value = np.asarray(value)
        self.pixels[idx] = value[..., self.pix_cols]
        self.vectors[idx] = value[..., self.vec_cols]


class ReplayBuffer:
    """Preallocated ring buffer of transitions from a vector env.

    Rows are vector-env steps: arrays are (rows, num_envs, *shape), rows = capacity // num_envs.
    ``next_obs`` is the true next observation, i.e. gymnasium's ``final_obs`` where an episode
    ended, so a time-limit truncation bootstraps from the right state. ``terminated`` and
    ``truncated`` are kept apart: only a termination cuts the bootstrap, both cut n-step sums.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: type | np.dtype = np.float32,
        obs_dtype: type | np.dtype = np.float32,
        compact: bool = False,
        mask_dim: int = 0,
        pixel_columns: np.ndarray | None = None,
    ):
        self.num_envs = num_envs
        self.rows = max(capacity // num_envs, 1)
        r, n = self.rows, num_envs
        # ``pixel_columns``: the uint8 pixels of images inside a Dict observation (flat obs
        # columns), stored as uint8 (SplitColumns); every other column stays float32.
        obs_array: Any = np.zeros
        if pixel_columns is not None and len(pixel_columns) and not compact:
            obs_array = lambda shape, dtype: SplitColumns(shape, pixel_columns)  # noqa: E731
        self.obs = obs_array((r, n, *obs_shape), dtype=obs_dtype)  # (R, N, *obs) s_t
        # Compact storage (frames): s_{t+1} of row t is row t+1's s_t, so observations are kept
        # once. The exceptions sit in ``aside`` keyed by flat index: where an episode ended
        # (gymnasium's final observation) or the stream broke (e.g. fresh envs after a resume);
        # the newest row's s_{t+1} waits in ``pending`` until the next row arrives.
        self.compact = compact
        self.next_obs: np.ndarray | None = None
        if compact:
            self.aside: dict[int, np.ndarray] = {}
            self.pending = np.zeros((n, *obs_shape), dtype=obs_dtype)
            self.pending_done = np.zeros(n, dtype=bool)
        else:
            self.next_obs = obs_array((r, n, *obs_shape), dtype=obs_dtype)  # (R, N, *obs) s_{t+1}
        self.actions = np.zeros((r, n, *action_shape), dtype=action_dtype)  # (R, N, *act)
        self.rewards = np.zeros((r, n), dtype=np.float32)  # (R, N)
        self.terminated = np.zeros((r, n), dtype=bool)  # (R, N)
        self.truncated = np.zeros((r, n), dtype=bool)  # (R, N)
        # Legal actions in s_{t+1} when the env gives action masks (issue #19): (R, N, mask_dim)
        # bool, written by the caller at ``pos`` before ``add`` (``set_next_mask``).
        self.next_masks: np.ndarray | None = None
        if mask_dim:
            self.next_masks = np.ones((r, n, mask_dim), dtype=bool)
        self.pos = 0  # next row to write
        self.full = False

    @property
    def capacity(self) -> int:
        return self.rows * self.num_envs

    @property
    def nbytes(self) -> int:
        arrays = [self.obs, self.actions, self.rewards, self.terminated, self.truncated]
        arrays.append(self.pending if self.next_obs is None else self.next_obs)
        if self.next_masks is not None:
            arrays.append(self.next_masks)
        return sum(a.nbytes for a in arrays)

    def __len__(self) -> int:
        return (self.rows if self.full else self.pos) * self.num_envs

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> int:
        """Store one vector step; returns the row written."""
        row = self.pos
        if self.next_obs is None:
            self._add_compact(row, obs, next_obs, terminated | truncated)
        else:
            self.next_obs[row] = next_obs
        self.obs[row] = obs
        self.actions[row] = actions
        self.rewards[row] = rewards
        self.terminated[row] = terminated
        self.truncated[row] = truncated
        self.pos = (self.pos + 1) % self.rows
        self.full = self.full or self.pos == 0
        return row

    def set_next_mask(self, next_mask: np.ndarray) -> None:
        """The legal actions (num_envs, mask_dim) in s_{t+1} of the vector step the next
        ``add`` stores (issue #19)."""
        assert self.next_masks is not None, "the buffer was built without mask_dim"
        self.next_masks[self.pos] = next_mask

    def mark_stream_break(self) -> None:
        """End every env's stream at the newest stored row: a restarted env's next observation is
        no successor of it. Marked as a truncation (never a termination: the true s_{t+1} is
        kept and bootstrapped from), so n-step sums stop there (issue #16)."""
        if not len(self):
            return
        newest = (self.pos - 1) % self.rows
        self.truncated[newest] |= ~self.terminated[newest]
        if self.compact:
            n = self.num_envs
            for e in range(n):
                self.aside[newest * n + e] = self.pending[e].copy()
            self.pending_done[...] = True

    def _add_compact(
        self, row: int, obs: np.ndarray, next_obs: np.ndarray, done: np.ndarray
    ) -> None:
        n = self.num_envs
        if len(self):
            # The previous row's s_{t+1} is this row's s_t unless the stream broke.
            prev = (row - 1) % self.rows
            obs_cast = np.asarray(obs).astype(self.obs.dtype, copy=False)
            for e in range(n):
                if not self.pending_done[e] and not np.array_equal(obs_cast[e], self.pending[e]):
                    self.aside[prev * n + e] = self.pending[e].copy()
        for e in range(n):  # the transitions being overwritten
            self.aside.pop(row * n + e, None)
        self.pending[...] = next_obs
        self.pending_done[...] = done
        for i in np.flatnonzero(done).tolist():
            self.aside[row * n + i] = self.pending[i].copy()

    def _next_obs(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """s_{t+1} of the transitions (rows, envs)."""
        if self.next_obs is not None:
            return self.next_obs[rows, envs]
        out = self.obs[(rows + 1) % self.rows, envs]
        newest = (self.pos - 1) % self.rows
        keys = (rows * self.num_envs + envs).tolist()
        for i, key in enumerate(keys):
            kept = self.aside.get(key)
            if kept is not None:
                out[i] = kept
            elif rows[i] == newest:
                out[i] = self.pending[envs[i]]
        return out

    def sample_index(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform flat indices (row * num_envs + env) over the stored transitions."""
        return rng.integers(0, len(self), size=batch_size)

    def gather(
        self, flat_idx: np.ndarray, n_step: int = 1, gamma: float = 0.99
    ) -> dict[str, np.ndarray]:
        """The transitions at ``flat_idx``; with ``n_step > 1`` the n-step return, the state n
        steps ahead (or where the episode ended) and its discount gamma^k."""
        from drlcli.returns import nstep_returns

        rows, envs = np.divmod(flat_idx, self.num_envs)
        out = {"obs": self.obs[rows, envs], "actions": self.actions[rows, envs]}
        if n_step == 1:
            out["rewards"] = self.rewards[rows, envs]
            out["next_obs"] = self._next_obs(rows, envs)
            out["terminated"] = self.terminated[rows, envs]
            out["discounts"] = np.full(len(flat_idx), gamma, dtype=np.float32)
            if self.next_masks is not None:
                out["next_masks"] = self.next_masks[rows, envs]
            return out
        # Transitions from rows onward, never past the newest row (pos - 1).
        available = (self.pos - 1 - rows) % self.rows + 1
        ks = np.arange(n_step)
        seq_rows = (rows[:, None] + ks) % self.rows  # (B, n)
        valid = ks[None, :] < available[:, None]
        ret, last, term = nstep_returns(
            self.rewards[seq_rows, envs[:, None]],
            self.terminated[seq_rows, envs[:, None]],
            self.truncated[seq_rows, envs[:, None]],
            valid,
            gamma,
        )
        end_rows = (rows + last) % self.rows
        out["rewards"] = ret.astype(np.float32)
        out["next_obs"] = self._next_obs(end_rows, envs)
        out["terminated"] = term
        out["discounts"] = (gamma ** (last + 1)).astype(np.float32)
        if self.next_masks is not None:
            out["next_masks"] = self.next_masks[end_rows, envs]
        return out

    @property
    def _arrays(self) -> tuple[str, ...]:
        names: tuple[str, ...] = ("obs", "actions", "rewards", "terminated", "truncated")
        if self.next_masks is not None:
            names = (*names, "next_masks")
        return names if self.compact else (*names, "next_obs")

    def state_dict(self) -> dict:
        """The filled rows only (a fresh 1M-transition buffer costs nothing to save)."""
        filled = self.rows if self.full else self.pos
        state: dict[str, Any] = {
            name: torch.from_numpy(getattr(self, name)[:filled].copy()) for name in self._arrays
        }
        state.update(pos=self.pos, full=self.full, rows=self.rows, compact=self.compact)
        if self.compact:
            keys = sorted(self.aside)
            state["aside_keys"] = torch.tensor(keys, dtype=torch.int64)
            state["aside_obs"] = torch.from_numpy(
                np.stack([self.aside[k] for k in keys]) if keys else self.pending[:0].copy()
            )
            state["pending"] = torch.from_numpy(self.pending.copy())
            state["pending_done"] = torch.from_numpy(self.pending_done.copy())
        return state

    def load_state_dict(self, state: dict) -> None:
        if int(state["rows"]) != self.rows:
            raise ValueError(f"replay buffer has {state['rows']} rows, expected {self.rows}")
        if bool(state.get("compact", False)) != self.compact:
            raise ValueError("replay buffer storage (compact frames or not) does not match")
        for name in self._arrays:
            src = state[name].numpy()
            getattr(self, name)[: len(src)] = src
        self.pos = int(state["pos"])
        self.full = bool(state["full"])
        if self.compact:
            kept = state["aside_obs"].numpy()
            self.aside = {int(k): kept[i].copy() for i, k in enumerate(state["aside_keys"])}
            self.pending[...] = state["pending"].numpy()
            self.pending_done[...] = state["pending_done"].numpy()


class SumTree:
    """Binary sum tree over ``capacity`` leaves: O(log n) batched update and prefix-sum search."""

    def __init__(self, capacity: int):
        self.leaves = 1
        while self.leaves < capacity:
            self.leaves *= 2
        self.tree = np.zeros(2 * self.leaves, dtype=np.float64)  # node i: children 2i, 2i+1

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(idx) + self.leaves]

    def update(self, idx: np.ndarray, values: np.ndarray) -> None:
        nodes = np.asarray(idx) + self.leaves
        self.tree[nodes] = values
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index i with prefix_sum(i) <= value < prefix_sum(i + 1), for each value."""
        values = np.array(values, dtype=np.float64)
        nodes = np.ones(len(values), dtype=np.int64)
        while nodes[0] < self.leaves:
            left = 2 * nodes
            left_sum = self.tree[left]
            right = values >= left_sum
            values = np.where(right, values - left_sum, values)
            nodes = np.where(right, left + 1, left)
        return nodes - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016): P(i) = p_i / sum p, with
    p_i = (|delta_i| + eps)^alpha; importance weights (N P(i))^-beta normalized by the batch max."""

    def __init__(self, *args: Any, alpha: float = 0.6, eps: float = 1e-6, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        self.eps = eps
        self.tree = SumTree(self.capacity)
        self.max_priority = 1.0  # new transitions get the largest priority seen

    def add(self, *args: Any, **kwargs: Any) -> int:
        row = super().add(*args, **kwargs)
        flat = row * self.num_envs + np.arange(self.num_envs)
        self.tree.update(flat, np.full(self.num_envs, self.max_priority))
        return row

    def sample_index(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        # Stratified: one draw from each of batch_size equal slices of the total priority.
        bounds = (np.arange(batch_size) + rng.random(batch_size)) * (self.tree.total / batch_size)
        idx = self.tree.find(bounds)
        return np.minimum(idx, len(self) - 1)

    def weights(self, flat_idx: np.ndarray, beta: float) -> np.ndarray:
        probs = self.tree[flat_idx] / self.tree.total
        w = (len(self) * probs) ** (-beta)
        return (w / w.max()).astype(np.float32)

    def update_priorities(self, flat_idx: np.ndarray, td_errors: np.ndarray) -> None:
        p = (np.abs(td_errors) + self.eps) ** self.alpha
        self.tree.update(flat_idx, p)
        self.max_priority = max(self.max_priority, float(p.max()))

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["tree"] = torch.from_numpy(self.tree.tree.copy())
        state["max_priority"] = self.max_priority
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tree.tree[...] = state["tree"].numpy()
        self.max_priority = float(state["max_priority"])
