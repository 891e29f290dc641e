"""Algorithm registry: config ``algo.name`` -> implementation. An explicit dict, not
``_target_`` strings in YAML, so saved runs stay loadable after refactors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch

from drlcli.algos.base import Algorithm, EnvInfo
from drlcli.errors import DrlError, did_you_mean


def _ppo(cfg: Any, env_info: EnvInfo, device: torch.device) -> Algorithm:
    from drlcli.algos.ppo import PPO

    return PPO(cfg, env_info, device)


ALGORITHMS: dict[str, Callable[[Any, EnvInfo, torch.device], Algorithm]] = {"ppo": _ppo}


# Action spaces each implementation supports (observation spaces: flat Box for the MLPs).
ACTION_SPACES: dict[str, tuple[type, ...]] = {"ppo": (gym.spaces.Discrete, gym.spaces.Box)}


def check_compatible(name: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """A clear error for an algorithm / env pair that cannot work together."""
    supported = ACTION_SPACES.get(name, ())
    if not isinstance(action_space, supported) or (
        isinstance(action_space, gym.spaces.Box) and len(action_space.shape) != 1
    ):
        names = " or ".join(t.__name__ for t in supported)
        raise DrlError(
            f"algo={name} cannot act in the action space {action_space}: it supports {names} "
            "(1-D Box) action spaces. Pick another algorithm or env (`drl list`)."
        )
    if not isinstance(observation_space, gym.spaces.Box):
        raise DrlError(
            f"algo={name} needs a Box observation space, got {observation_space}; wrap the env "
            "(env.wrappers) to produce array observations."
        )


def build(cfg: Any, env_info: EnvInfo, device: torch.device) -> Algorithm:
    name = getattr(cfg, "name", None)
    if name not in ALGORITHMS:
        raise DrlError(
            f"Unknown algorithm implementation '{name}'.{did_you_mean(str(name), ALGORITHMS)} "
            f"Valid choices: {', '.join(sorted(ALGORITHMS))}."
        )
    check_compatible(name, env_info.observation_space, env_info.action_space)
    return ALGORITHMS[name](cfg, env_info, device)
