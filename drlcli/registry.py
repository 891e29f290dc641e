"""Algorithm registry: ``algo.name`` -> :class:`~drlcli.algos.base.AlgoSpec`.

An explicit table, not ``_target_`` strings in YAML, so saved runs stay loadable after
refactors and an unknown name gets the list of valid ones. Each algorithm module declares its
``SPECS``; adding an algorithm is one line in :data:`ALGORITHM_MODULES` (issue #18). Everything
else derives from the specs: the Hydra schemas (:func:`drlcli.config.register_configs`), the
space checks (:func:`check_compatible`), the settings checks (:func:`validate`), ``drl list``
and the config tests.
"""

from __future__ import annotations

import importlib
from functools import cache

import gymnasium as gym
import numpy as np
import torch

from drlcli.algos.base import Algorithm, AlgoSpec, EnvInfo
from drlcli.errors import DrlError, did_you_mean
from drlcli.spaces import has_images, observation_problem

# One line per algorithm module (each declares SPECS, a tuple of AlgoSpec).
ALGORITHM_MODULES = (
    "drlcli.algos.ppo",
    "drlcli.algos.a2c",
    "drlcli.a3c",  # a runner-level mode: its workers step their own envs
    "drlcli.algos.reinforce",
    "drlcli.algos.trpo",
    "drlcli.algos.dqn",
    "drlcli.algos.sac",
    "drlcli.algos.td3",
    "drlcli.algos.crossq",
)


@cache
def specs() -> dict[str, AlgoSpec]:
    """Every registered algorithm by ``algo.name``, in registration order."""
    out: dict[str, AlgoSpec] = {}
    for module in ALGORITHM_MODULES:
        for spec in importlib.import_module(module).SPECS:
            if spec.name in out:
                raise RuntimeError(f"algorithm '{spec.name}' registered twice ({module})")
            out[spec.name] = spec
    return out


def spec(name: str) -> AlgoSpec:
    """The spec of ``algo.name``; DrlError listing the valid names for an unknown one."""
    table = specs()
    if name not in table:
        raise DrlError(
            f"Unknown algorithm implementation '{name}'.{did_you_mean(str(name), table)} "
            f"Valid choices: {', '.join(sorted(table))}."
        )
    return table[name]


def _space_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def _action_words(s: AlgoSpec) -> str:
    factored = {gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary}
    return _space_names(s.action_spaces) + (" (1-D)" if factored & set(s.action_spaces) else "")


def describe_spaces(s: AlgoSpec) -> tuple[str, str]:
    """(observation spaces, action spaces) in words, for ``drl list``, the README and errors."""
    containers = (gym.spaces.Dict, gym.spaces.Tuple)
    leaves = [t.__name__ for t in s.observation_spaces if t not in containers]
    obs = ", ".join(leaves) + (" vectors" if len(leaves) == 1 else "")
    if set(containers) & set(s.observation_spaces):
        obs += ", Dict/Tuple of these"
    if s.images:
        obs += "; images"
    act = _action_words(s)
    if s.action_masks:
        act += "; action masks"
    return obs, act


def check_compatible(
    name: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    action_masks: bool = False,
    cfg: object = None,
) -> None:
    """Raise DrlError when algorithm ``name`` cannot observe or act in these spaces, or cannot
    honour the action masks the env provides (``action_masks``), naming what it supports (from
    its spec) and a way out. ``cfg``: the algo config, for settings that change what it
    supports (a recurrent PPO policy takes no masks)."""
    s = spec(name)
    supported = s.action_spaces
    factored = (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
    if not isinstance(action_space, supported) or (
        isinstance(action_space, factored) and len(action_space.shape) != 1
    ):
        raise DrlError(
            f"algo={name} cannot act in the action space {action_space}: it supports "
            f"{_action_words(s)} action spaces. {s.hint} "
            "Pick another algorithm or env (`drl list`)."
        )
    if (
        s.bounded_actions
        and isinstance(action_space, gym.spaces.Box)
        and not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all())
    ):
        squashing = sorted(n for n, other in specs().items() if other.bounded_actions)
        raise DrlError(
            f"algo={name} cannot act in the unbounded action space {action_space}: "
            f"{', '.join(squashing)} squash actions into the Box's bounds, so every low and "
            "high must be finite. Declare the bounds the env really takes in its action_space "
            "(or in a wrapper, env.wrappers), or use ppo, a2c or trpo, whose Gaussian policies "
            "take unbounded actions."
        )
    if not isinstance(observation_space, s.observation_spaces):
        raise DrlError(
            f"algo={name} needs a {_space_names(s.observation_spaces)} observation space, got "
            f"{observation_space}; wrap the env (env.wrappers) to produce array observations."
        )
    problem = observation_problem(observation_space)
    if problem is not None:
        raise DrlError(
            f"algo={name} cannot observe {observation_space}: {problem}. "
            "Wrap the env (env.wrappers) to produce supported observations."
        )
    if has_images(observation_space) and not s.images:
        image_algos = sorted(n for n, other in specs().items() if other.images)
        what = (
            f"images {observation_space.shape}"
            if isinstance(observation_space, gym.spaces.Box)
            else f"observations holding images ({observation_space})"
        )
        raise DrlError(
            f"algo={name} takes vector observations; this env gives {what}. Image "
            "observations (also images inside a Dict / Tuple) get a Nature-CNN policy with "
            f"{' or '.join(image_algos)} (e.g. `drl train algo=ppo env=pong`)."
        )
    if has_images(observation_space) and getattr(cfg, "recurrent", False):
        raise DrlError(
            "The recurrent PPO policy (algo.recurrent=true) takes vector observations; this env "
            "gives images. Use algo=ppo (frame stacking gives it memory) or a2c."
        )
    if action_masks:
        masked = sorted(n for n, other in specs().items() if other.action_masks)
        why = ""
        if not s.action_masks:
            why = f"algo={name} does not use them"
        elif getattr(cfg, "recurrent", False):
            why = "the recurrent PPO policy (algo.recurrent=true) does not use them yet"
        elif not isinstance(action_space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
            why = f"masks are supported for Discrete and MultiDiscrete actions, not {action_space}"
        if why:
            raise DrlError(
                f"This env provides action masks (an action_mask info key or an action_masks() "
                f"method) but {why}, so it could pick illegal actions. Algorithms that honour "
                f"masks: {', '.join(masked)} (feed-forward policies, Discrete or MultiDiscrete "
                "actions)."
            )


def build(cfg: object, env_info: EnvInfo, device: torch.device) -> Algorithm:
    """The algorithm ``cfg.name`` for envs described by ``env_info``, its networks on ``device``.

    Raises DrlError for an unknown name, spaces it cannot handle or settings that cannot work.
    """
    name = str(getattr(cfg, "name", None))
    check_compatible(
        name,
        env_info.raw_observation_space or env_info.observation_space,
        env_info.action_space,
        env_info.action_masks,
        cfg,
    )
    validate(cfg, env_info.num_envs)
    return spec(name).factory(cfg, env_info, device)


def validate(cfg: object, num_envs: int, env_cfg: object = None) -> None:
    """Settings checks that need no env or network (the spec's ``validate``); raises DrlError.
    The CLI runs them before any run directory exists."""
    s = spec(str(getattr(cfg, "name", None)))
    if s.validate is not None:
        s.validate(cfg, num_envs, env_cfg)
