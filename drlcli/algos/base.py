"""The thin interface every algorithm implements, and shared on-policy plumbing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from drlcli.buffers import RolloutBuffer
from drlcli.envs import VecEnv


@dataclass
class EnvInfo:
    """What an algorithm knows of the envs it learns from: one env's spaces and how many run
    side by side (storage is shaped ``(num_steps, num_envs, ...)``)."""

    observation_space: gym.Space
    action_space: gym.Space
    num_envs: int


@dataclass(frozen=True)
class AlgoSpec:
    """Everything drlcli needs to know of one algorithm, in one place (issue #18).

    ``drlcli.registry`` collects the ``SPECS`` of every algorithm module; the Hydra schema
    (``/schema/algo/<name>``), the compatibility checks, ``drl list`` and the config tests are
    all derived from these entries.

    name:               ``algo.name`` in configs (the schema name; variants extend its YAML).
    config:             the typed config dataclass (every hyperparameter declared once).
    factory:            ``factory(cfg, env_info, device) -> Algorithm``.
    action_spaces:      gymnasium space classes the policy can act in (Box: 1-D only).
    observation_spaces: space classes it can observe (Box vectors; images too if ``images``).
    images:             whether its networks switch to a Nature-CNN torso for image Boxes.
    validate:           ``validate(cfg, num_envs, env_cfg)`` raising DrlError on settings that
                        cannot work; needs no env or network, runs before any run dir exists.
    hint:               one sentence added to an incompatible-space error.
    family:             "on-policy", "off-policy" or "asynchronous" (``drl list``).
    """

    name: str
    config: type
    factory: Callable[[Any, EnvInfo, torch.device], Algorithm]
    action_spaces: tuple[type, ...]
    family: str
    observation_spaces: tuple[type, ...] = (gym.spaces.Box,)
    images: bool = False
    validate: Callable[[Any, int, Any], None] | None = None
    hint: str = ""


CONTINUOUS_HINT = "acts in continuous (Box) spaces; for discrete actions use dqn or ppo."
DISCRETE_AND_BOX = (gym.spaces.Discrete, gym.spaces.Box)


class Algorithm(ABC):
    """The runner calls ``collect`` (advance the env, store experience) then ``update``
    (learn from it) until the step budget is spent; ``predict`` serves evaluation."""

    def __init__(self, cfg: Any, env_info: EnvInfo, device: torch.device):
        self.cfg = cfg
        self.env_info = env_info
        self.device = device

    @abstractmethod
    def collect(self, env: VecEnv) -> None: ...

    @abstractmethod
    def update(self, progress: float) -> dict[str, float]:
        """One learning phase; ``progress`` in [0, 1] is the fraction of the step budget used."""

    @abstractmethod
    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def check_finite(self) -> str | None:
        """Name of the first parameter holding NaN/inf, or None."""
        for module_name, module in self.modules().items():
            for pname, p in module.named_parameters():
                if not torch.isfinite(p).all():
                    return f"{module_name}.{pname}"
        return None

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    def set_budget(  # noqa: B027 (optional hook)
        self, total_timesteps: int, step0: float = 0.0, progress0: float = 0.0
    ) -> None:
        """The run's step budget, before the first collect (A3C's workers stop at it), and on a
        resume with a changed budget the progress anchor (returns.budget_progress)."""

    def schedule_progress(self, progress: float) -> float:
        """The budget progress (returns.budget_progress) this learner's schedules last used,
        given the ``progress`` the runner passed to the latest ``update``. A resume that extends
        a finished run continues the schedules from it (#16). A3C's learners keep their own."""
        return progress

    def stream_break(self) -> None:  # noqa: B027 (optional hook)
        """The envs restarted (a resume without an env snapshot: workers, async): what was
        collected before and what comes next are not one trajectory. Multi-step targets, carried
        recurrent states and episode bookkeeping must treat it as an episode boundary (#16)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release processes or other resources; called once the run ends, however it ends."""

    # Stateful (recurrent) policies keep a state per eval env; feed-forward ones ignore these.
    def reset_predict_state(self, num_envs: int) -> None:  # noqa: B027 (optional hook)
        """Evaluation episodes start on ``num_envs`` envs."""

    def episodes_ended(self, done: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """After an evaluation step: ``done[i]`` when env i's episode ended (it auto-reset)."""


def to_env_actions(actions: torch.Tensor, continuous: bool) -> np.ndarray:
    out = actions.detach().cpu().numpy()
    return out.astype(np.float32) if continuous else out.astype(np.int64)


def collect_rollout(policy: Any, env: VecEnv, buf: RolloutBuffer, obs: np.ndarray) -> np.ndarray:
    """Fill ``buf`` with ``buf.num_steps`` vector steps of ``policy`` (an ActorCritic) starting
    from ``obs``; returns the observation to start the next rollout from."""
    device = buf.device
    head = policy.head
    continuous = policy.continuous
    buf.final_values.zero_()
    with torch.inference_mode():
        for t in range(buf.num_steps):
            buf.np_obs[t] = obs
            obs_t = torch.from_numpy(buf.np_obs[t])
            if not buf.on_cpu:
                obs_t = obs_t.to(device, non_blocking=True)
            params, value = policy.dist_and_value(obs_t)
            action, logprob = head.sample_and_log_prob(params)
            buf.actions[t] = action
            buf.logprobs[t] = logprob
            buf.values[t] = value
            result = env.step(to_env_actions(action, continuous))
            buf.np_rewards[t] = result.reward
            buf.np_terminated[t] = result.terminated
            np.logical_or(result.terminated, result.truncated, out=buf.np_dones[t])
            trunc = np.flatnonzero(result.truncated & ~result.terminated)
            if trunc.size:
                # Time-limit truncation is not a terminal state: bootstrap from V(final_obs).
                final = torch.as_tensor(result.final_obs[trunc], device=device)
                buf.final_values[t, torch.as_tensor(trunc, device=device)] = policy.value(final)
            obs = result.obs
        buf.finish(policy.value(torch.as_tensor(obs, device=device)))
    return obs
