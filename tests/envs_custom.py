"""Tiny envs of the kind researchers bring, with the faults real envs have (#17).

Importing this module registers them with gymnasium, as a user's package does, so
``env.id=tests.envs_custom:DrlShifted-v0`` and ``env.imports=[tests.envs_custom]`` both work.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class _Strict(gym.Env):
    """Raises on actions outside its action space, as careful envs do."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space: gym.Space = gym.spaces.Discrete(2)

    def _check(self, action: Any) -> None:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")


class Shifted(_Strict):
    """Discrete(3, start=1): action 3 earns 1, actions 1 and 2 earn 0. Registered with 50-step
    episodes, so the optimal return is 50."""

    action_space = gym.spaces.Discrete(3, start=1)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: Any) -> Any:
        self._check(action)
        return np.zeros(2, np.float32), float(action == 3), False, False, {}


class Endless(_Strict):
    """Never ends an episode; registered without max_episode_steps."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action: Any) -> Any:
        self._check(action)
        obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return obs, float(action == 1), False, False, {}


class _FaultAt(_Strict):
    """A fault from its own step ``at`` on (counted over episodes, in ``t``)."""

    def __init__(self, at: int = 300):
        self.at, self.t = at, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}


class NanAt(_FaultAt):
    """Its ``what`` ("reward" or "observation") becomes NaN at its own step ``at``."""

    def __init__(self, what: str = "reward", at: int = 300):
        super().__init__(at)
        self.what = what

    def step(self, action: Any) -> Any:
        self._check(action)
        self.t += 1
        obs, reward = np.full(2, 0.5, np.float32), float(action)
        if self.t >= self.at:
            if self.what == "reward":
                reward = float("nan")
            else:
                obs[1] = np.nan
        return obs, reward, False, False, {}


class Constant(_Strict):
    """Every episode is one step with reward 1: the returns have no variance."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: Any) -> Any:
        self._check(action)
        return np.zeros(2, np.float32), 1.0, True, False, {}


class Fragile(_Strict):
    """Raises in step() after ``after`` steps, but only the copy reset with seed ``seed``."""

    def __init__(self, seed: int = 2, after: int = 5):
        self.fatal_seed, self.after, self.t, self.doomed = seed, after, 0, False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        if seed is not None:
            self.doomed = seed == self.fatal_seed
        return np.zeros(2, np.float32), {}

    def step(self, action: Any) -> Any:
        self._check(action)
        self.t += 1
        if self.doomed and self.t >= self.after:
            raise RuntimeError("boom: the simulator lost its state")
        return np.zeros(2, np.float32), 0.0, False, False, {}


class HangsAt(_FaultAt):
    """step() never returns from the ``at``-th step of its life on (a simulator that locks
    up); run it in env worker processes, where only killing the worker ends it."""

    def step(self, action: Any) -> Any:
        self._check(action)
        self.t += 1
        while self.t >= self.at:
            time.sleep(1)
        return np.zeros(2, np.float32), 0.0, False, False, {}


class NoRenderMode(Shifted):
    """A constructor without render_mode and no render modes at all."""

    def __init__(self) -> None:
        pass


class HumanOnly(Shifted):
    """Renders only to a window."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["human"]}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode


def _register(name: str, cls: type, **kwargs: Any) -> None:
    gym.register(id=name, entry_point=f"{__name__}:{cls.__name__}", **kwargs)


_register("DrlShifted-v0", Shifted, max_episode_steps=50)
_register("DrlEndless-v0", Endless)  # no time limit: the fault under test
_register("DrlNanAt-v0", NanAt, max_episode_steps=100)
_register("DrlConstant-v0", Constant)
_register("DrlFragile-v0", Fragile, max_episode_steps=100)
_register("DrlHangsAt-v0", HangsAt, max_episode_steps=100)
_register("DrlNoRenderMode-v0", NoRenderMode, max_episode_steps=50)
_register("DrlHumanOnly-v0", HumanOnly, max_episode_steps=50)
