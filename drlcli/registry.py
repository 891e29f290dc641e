"""Algorithm registry: config ``algo.name`` -> implementation. An explicit dict, not
``_target_`` strings in YAML, so saved runs stay loadable after refactors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch

from drlcli.algos.base import Algorithm, EnvInfo
from drlcli.errors import DrlError, did_you_mean


def _lazy(module: str, cls: str) -> Callable[[Any, EnvInfo, torch.device], Algorithm]:
    def build(cfg: Any, env_info: EnvInfo, device: torch.device) -> Algorithm:
        import importlib

        algo: Algorithm = getattr(importlib.import_module(module), cls)(cfg, env_info, device)
        return algo

    return build


def _ppo(cfg: Any, env_info: EnvInfo, device: torch.device) -> Algorithm:
    name = "RecurrentPPO" if getattr(cfg, "recurrent", False) else "PPO"
    module = "drlcli.algos.ppo_recurrent" if cfg.recurrent else "drlcli.algos.ppo"
    return _lazy(module, name)(cfg, env_info, device)


ALGORITHMS: dict[str, Callable[[Any, EnvInfo, torch.device], Algorithm]] = {
    "ppo": _ppo,
    "a2c": _lazy("drlcli.algos.a2c", "A2C"),
    "a3c": _lazy("drlcli.algos.a3c", "A3C"),
    "ac": _lazy("drlcli.algos.a2c", "AC"),
    "reinforce": _lazy("drlcli.algos.reinforce", "Reinforce"),
    "trpo": _lazy("drlcli.algos.trpo", "TRPO"),
    "dqn": _lazy("drlcli.algos.dqn", "DQN"),
    "sac": _lazy("drlcli.algos.sac", "SAC"),
    "td3": _lazy("drlcli.algos.td3", "TD3"),
    "ddpg": _lazy("drlcli.algos.td3", "TD3"),
}


# Action spaces each implementation supports (observation spaces: flat Box for the MLPs).
_BOX = (gym.spaces.Box,)
_ANY = (gym.spaces.Discrete, gym.spaces.Box)
ACTION_SPACES: dict[str, tuple[type, ...]] = {
    "ppo": _ANY,
    "a2c": _ANY,
    "a3c": _ANY,
    "ac": _ANY,
    "reinforce": _ANY,
    "trpo": _ANY,
    "dqn": (gym.spaces.Discrete,),
    "sac": _BOX,
    "td3": _BOX,
    "ddpg": _BOX,
}
# Algorithms whose networks switch to a Nature-CNN torso for image observations.
IMAGE_ALGOS = ("ppo", "a2c", "dqn")
HINTS = {
    "dqn": "DQN picks among discrete actions; for continuous actions use sac, td3 or ddpg.",
    "sac": "SAC acts in continuous (Box) spaces; for discrete actions use dqn or ppo.",
    "td3": "TD3 acts in continuous (Box) spaces; for discrete actions use dqn or ppo.",
    "ddpg": "DDPG acts in continuous (Box) spaces; for discrete actions use dqn or ppo.",
}


def check_compatible(name: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """A clear error for an algorithm / env pair that cannot work together."""
    supported = ACTION_SPACES.get(name, ())
    if not isinstance(action_space, supported) or (
        isinstance(action_space, gym.spaces.Box) and len(action_space.shape) != 1
    ):
        names = " or ".join(t.__name__ for t in supported)
        raise DrlError(
            f"algo={name} cannot act in the action space {action_space}: it supports {names} "
            f"action spaces{' (Box: 1-D)' if gym.spaces.Box in supported else ''}. "
            f"{HINTS.get(name, '')} Pick another algorithm or env (`drl list`)."
        )
    if (
        isinstance(observation_space, gym.spaces.Box)
        and len(observation_space.shape) == 3
        and name not in IMAGE_ALGOS
    ):
        raise DrlError(
            f"algo={name} takes vector observations; this env gives images "
            f"{observation_space.shape}. Image observations get a Nature-CNN policy with "
            f"{' or '.join(sorted(IMAGE_ALGOS))} (e.g. `drl train algo=ppo env=pong`)."
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


def validate(cfg: Any, num_envs: int, env_cfg: Any = None) -> None:
    """Settings checks that need no env or network: run before anything is built."""
    name = getattr(cfg, "name", None)
    if name == "ppo":
        from drlcli.algos.ppo import validate_ppo

        validate_ppo(cfg, num_envs)
    elif name in ("a2c", "ac"):
        from drlcli.algos.a2c import validate_a2c

        validate_a2c(cfg, num_envs)
    elif name == "a3c":
        from drlcli.algos.a3c import validate_a3c

        validate_a3c(cfg, num_envs, env_cfg)
    elif name == "reinforce":
        from drlcli.algos.reinforce import validate_reinforce

        validate_reinforce(cfg, num_envs)
    elif name == "trpo":
        from drlcli.algos.trpo import validate_trpo

        validate_trpo(cfg, num_envs)
    elif name in ("dqn", "sac", "td3", "ddpg"):
        from drlcli.algos.offpolicy import validate_offpolicy

        validate_offpolicy(cfg, num_envs)
