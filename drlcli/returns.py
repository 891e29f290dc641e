"""Pure return math. Shapes are (num_steps, num_envs); tested against naive loops.

Conventions shared by every function here, so that time limits never leak into targets:

* ``next_values[t]`` is V(s_{t+1}) of the *true* next state: for a step that ended an episode it
  is the value of the final observation (gymnasium's ``final_obs``), not of the reset one;
* ``terminated[t]`` cuts the bootstrap (a real terminal state has value 0);
* ``dones[t] = terminated[t] | truncated[t]`` cuts the recursion between episodes; a truncated
  step still bootstraps from ``next_values[t]``.
"""

from __future__ import annotations

import numpy as np
import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16).

    delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

    Returns (advantages, returns = advantages + values), both (num_steps, num_envs).
    """
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - dones.to(rewards.dtype)
    deltas = rewards + gamma * not_term * next_values - values
    decay = gamma * gae_lambda * not_done
    advantages = torch.empty_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = deltas[t] + decay[t] * last
        advantages[t] = last
    return advantages, advantages + values


def discounted_returns(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    bootstrap_last: bool = True,
) -> torch.Tensor:
    """n-step / reward-to-go returns G_t = r_t + gamma * G_{t+1} within an episode.

    At a truncation the return bootstraps from V(final_obs); at the end of the rollout it
    bootstraps from ``next_values[-1]`` if ``bootstrap_last`` (A2C) or not at all (Monte Carlo).
    """
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_done = 1.0 - dones.to(rewards.dtype)
    out = torch.empty_like(rewards)
    num_steps = rewards.shape[0]
    tail = next_values[-1] if bootstrap_last else torch.zeros_like(rewards[0])
    for t in range(num_steps - 1, -1, -1):
        cont = tail if t == num_steps - 1 else out[t + 1]
        # Episode ended at t: 0 after a termination, V(final_obs) after a truncation.
        at_boundary = not_term[t] * next_values[t]
        out[t] = rewards[t] + gamma * (not_done[t] * cont + (1.0 - not_done[t]) * at_boundary)
    return out


def explained_variance(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """1 - Var[y - y_pred] / Var[y]: 1 is perfect, 0 is no better than the mean, < 0 is worse.
    NaN, a diagnostic only, when Var[y] is 0 or undefined (one sample)."""
    if y_true.numel() < 2:
        return float("nan")
    var_y = torch.var(y_true)
    if var_y.item() == 0:
        return float("nan")
    return float(1.0 - torch.var(y_true - y_pred) / var_y)


def nstep_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    valid: np.ndarray,
    gamma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns for windows of consecutive transitions of one env, shapes (B, n).

    The sum G = sum_{k<=K} gamma^k r_k stops at the first step K that terminated or was
    truncated, or at the last valid step. Returns (G, K, terminated_K): the caller bootstraps
    with gamma^(K+1) * Q(next_obs_K) unless terminated_K (a truncation still bootstraps, from the
    final observation stored as next_obs).
    """
    batch, n = rewards.shape
    ret = np.zeros(batch, dtype=np.float64)
    last = np.zeros(batch, dtype=np.int64)
    alive = valid[:, 0].copy()
    for k in range(n):
        active = alive & valid[:, k]
        ret += np.where(active, gamma**k * rewards[:, k], 0.0)
        last = np.where(active, k, last)
        alive = active & ~(terminated[:, k] | truncated[:, k])
    term = terminated[np.arange(batch), last]
    return ret, last, term


def polyak_update(target: torch.Tensor, online: torch.Tensor, tau: float) -> None:
    """target <- (1 - tau) target + tau online, in place (tau = 1 copies)."""
    with torch.no_grad():
        if tau >= 1.0:
            target.copy_(online)
        else:
            target.lerp_(online, tau)


def budget_progress(
    step: float, total_timesteps: float, step0: float = 0.0, progress0: float = 0.0
) -> float:
    """Share of the step budget used at ``step``, in [0, 1], the clock of every schedule.

    ``step / total_timesteps`` for a run on its first budget. After a resume at ``step0`` with a
    changed budget, continue from the progress ``progress0`` reached there and spend the rest
    linearly over the new remaining budget: ``p0 + (1 - p0) (step - s0) / (total - s0)``, so no
    schedule jumps at the resume step (issue #16). Units: env steps. Raises nothing.
    """
    if step0 == 0.0:
        return min(step / total_timesteps, 1.0)
    return min(
        progress0 + (1.0 - progress0) * (step - step0) / max(total_timesteps - step0, 1.0), 1.0
    )
