"""Algorithm registry: config ``algo.name`` -> implementation. An explicit dict, not
``_target_`` strings in YAML, so saved runs stay loadable after refactors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from drlcli.algos.base import Algorithm, EnvInfo
from drlcli.errors import DrlError, did_you_mean


def _ppo(cfg: Any, env_info: EnvInfo, device: torch.device) -> Algorithm:
    from drlcli.algos.ppo import PPO

    return PPO(cfg, env_info, device)


ALGORITHMS: dict[str, Callable[[Any, EnvInfo, torch.device], Algorithm]] = {"ppo": _ppo}


def build(cfg: Any, env_info: EnvInfo, device: torch.device) -> Algorithm:
    name = getattr(cfg, "name", None)
    if name not in ALGORITHMS:
        raise DrlError(
            f"Unknown algorithm implementation '{name}'.{did_you_mean(str(name), ALGORITHMS)} "
            f"Valid choices: {', '.join(sorted(ALGORITHMS))}."
        )
    return ALGORITHMS[name](cfg, env_info, device)
