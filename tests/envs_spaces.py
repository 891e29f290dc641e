"""Tiny envs with the spaces users bring (issue #19): each observation space carries
information the reward needs, each action space has a known optimum, and the masked envs raise
on any masked action. Importing this module registers them (``env.id=tests.envs_spaces:Id``).

Every env plays episodes of ``LENGTH`` one-step contexts: a new random context per step, the
reward for the step's action in it; so the optimal return is ``LENGTH`` times the best reward
per step, and a policy that ignores part of the observation cannot reach it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

LENGTH = 10


class _Contexts(gym.Env):
    """A fresh random context every step; subclasses define the spaces, ``_draw``, ``_obs``
    and ``_reward``."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        self._draw()
        return self._obs(), self._info()

    def step(self, action: Any) -> Any:
        reward = self._reward(action)
        self.t += 1
        self._draw()
        return self._obs(), reward, False, False, self._info()  # TimeLimit: LENGTH

    def _info(self) -> dict[str, Any]:
        return {}

    def _draw(self) -> None:
        raise NotImplementedError

    def _obs(self) -> Any:
        raise NotImplementedError

    def _reward(self, action: Any) -> float:
        raise NotImplementedError


# --- observations: the right action needs every part of the observation ------------------------
class MultiDiscreteObs(_Contexts):
    """Observes MultiDiscrete([3, 3]) (a, b); action max(a, b) earns 1 (it needs both entries).
    Optimum 10."""

    observation_space = gym.spaces.MultiDiscrete([3, 3])
    action_space = gym.spaces.Discrete(3)

    def _draw(self) -> None:
        self.s = self.np_random.integers(0, 3, size=2)

    def _obs(self) -> Any:
        return self.s.astype(np.int64)

    def _reward(self, action: Any) -> float:
        return float(int(action) == int(self.s.max()))


class MultiBinaryObs(_Contexts):
    """Observes MultiBinary(3) bits; action bits[0] + bits[1] (0..2) earns 1 (bit 2 is
    noise). Optimum 10."""

    observation_space = gym.spaces.MultiBinary(3)
    action_space = gym.spaces.Discrete(3)

    def _draw(self) -> None:
        self.s = self.np_random.integers(0, 2, size=3).astype(np.int8)

    def _obs(self) -> Any:
        return self.s.copy()

    def _reward(self, action: Any) -> float:
        return float(int(action) == int(self.s[0]) + int(self.s[1]))


class DictObs(_Contexts):
    """Observes {"cell": Discrete(4), "sign": Box(-1, 1, (2,))}; action (cell + [sign[0] > 0])
    mod 4 earns 1: it needs both keys. Optimum 10."""

    observation_space = gym.spaces.Dict(
        {"cell": gym.spaces.Discrete(4), "sign": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)}
    )
    action_space = gym.spaces.Discrete(4)

    def _draw(self) -> None:
        self.cell = int(self.np_random.integers(0, 4))
        self.sign = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.sign[0] = np.sign(self.sign[0]) * max(abs(self.sign[0]), 0.2)  # a clear sign

    def _obs(self) -> Any:
        return {"cell": self.cell, "sign": self.sign.copy()}

    def target(self) -> int:
        return (self.cell + int(self.sign[0] > 0)) % 4

    def _reward(self, action: Any) -> float:
        return float(int(action) == self.target())


class TupleObs(DictObs):
    """DictObs as a Tuple (Discrete(4), Box(2)). Optimum 10."""

    observation_space = gym.spaces.Tuple(  # type: ignore[assignment]
        (gym.spaces.Discrete(4), gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    )

    def _obs(self) -> Any:
        return (self.cell, self.sign.copy())


class DictImageObs(_Contexts):
    """Observes {"frame": a 36 x 36 grey image (uint8) with a bright block in its left or right
    half, "sign": Box(-1, 1, (1,))}; action 2 * [block on the left] + [sign > 0] earns 1: it
    needs the image key and the vector key. Optimum 10."""

    observation_space = gym.spaces.Dict(
        {
            "frame": gym.spaces.Box(0, 255, (36, 36, 1), np.uint8),
            "sign": gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        }
    )
    action_space = gym.spaces.Discrete(4)

    def _draw(self) -> None:
        self.left = bool(self.np_random.integers(0, 2))
        self.sign = float(self.np_random.choice([-1.0, 1.0]) * self.np_random.uniform(0.2, 1.0))

    def _obs(self) -> Any:
        frame = np.zeros((36, 36, 1), np.uint8)
        col = 3 if self.left else 21
        frame[12:24, col : col + 12] = 255
        return {"frame": frame, "sign": np.array([self.sign], np.float32)}

    def _reward(self, action: Any) -> float:
        return float(int(action) == 2 * int(self.left) + int(self.sign > 0))


# --- factored actions ------------------------------------------------------------------------
class _OneHotContext(_Contexts):
    n_contexts = 3

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.n_contexts,), np.float32)

    def _draw(self) -> None:
        self.c = int(self.np_random.integers(0, self.n_contexts))

    def _obs(self) -> Any:
        out = np.zeros(self.n_contexts, np.float32)
        out[self.c] = 1.0
        return out


class MultiDiscreteAct(_OneHotContext):
    """Acts in MultiDiscrete([3, 4]); in context c, entry 0 = c earns 1 and entry 1 =
    (c + 1) mod 4 earns 1. Optimum 2 per step, 20 per episode. Raises on an action outside
    the space."""

    action_space = gym.spaces.MultiDiscrete([3, 4])

    def _reward(self, action: Any) -> float:
        a = np.asarray(action)
        if not self.action_space.contains(a.astype(self.action_space.dtype)) or a.shape != (2,):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        return float(a[0] == self.c) + float(a[1] == (self.c + 1) % 4)


class ShiftedMultiDiscreteAct(MultiDiscreteAct):
    """MultiDiscreteAct with ``start=[1, -2]``: the env receives start + index and raises on
    anything outside the space. Optimum 20."""

    action_space = gym.spaces.MultiDiscrete([3, 4], start=[1, -2])

    def _reward(self, action: Any) -> float:
        return self._shifted(np.asarray(action))

    def _shifted(self, a: np.ndarray) -> float:
        if a.shape != (2,) or not self.action_space.contains(a.astype(self.action_space.dtype)):
            raise ValueError(f"action {a!r} is not in {self.action_space}")
        idx = a - self.action_space.start
        return float(idx[0] == self.c) + float(idx[1] == (self.c + 1) % 4)


class MultiBinaryAct(_OneHotContext):
    """Acts in MultiBinary(4); each bit equal to bit i of PATTERNS[c] earns 0.25. Optimum 1
    per step, 10 per episode."""

    action_space = gym.spaces.MultiBinary(4)
    PATTERNS = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 1]])

    def _reward(self, action: Any) -> float:
        a = np.asarray(action)
        if a.shape != (4,) or not np.isin(a, (0, 1)).all():
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        return 0.25 * float((a == self.PATTERNS[self.c]).sum())


# --- action masks ------------------------------------------------------------------------------
class MaskedChoice(_Contexts):
    """Discrete(5): each step a random non-empty set of legal actions, shown in the observation
    (1.0 = legal); picking the highest legal action earns 1, any other legal one 0, and a masked
    action raises ValueError. Optimum 10. The mask comes as ``info["action_mask"]``
    (``MaskedChoiceMethod``: an ``action_masks()`` method, sb3-contrib's convention)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (5,), np.float32)
    action_space = gym.spaces.Discrete(5)

    def _draw(self) -> None:
        legal = self.np_random.random(5) < 0.5
        legal[int(self.np_random.integers(0, 5))] = True
        self.legal = legal

    def _obs(self) -> Any:
        return self.legal.astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self.legal.copy()}

    def _reward(self, action: Any) -> float:
        a = int(action)
        if not self.legal[a]:
            raise ValueError(f"masked action {a} (legal: {np.flatnonzero(self.legal).tolist()})")
        return float(a == int(np.flatnonzero(self.legal).max()))


class MaskedChoiceMethod(MaskedChoice):
    def _info(self) -> dict[str, Any]:
        return {}

    def action_masks(self) -> np.ndarray:
        return self.legal.copy()


class MaskedMultiChoice(_Contexts):
    """MultiDiscrete([4, 4]): each entry has its own random legal set (flat mask of 8, shown in
    the observation); each entry at its highest legal value earns 0.5, a masked value raises.
    Optimum 1 per step, 10 per episode. Mask through ``action_masks()``."""

    observation_space = gym.spaces.Box(0.0, 1.0, (8,), np.float32)
    action_space = gym.spaces.MultiDiscrete([4, 4])

    def _draw(self) -> None:
        legal = self.np_random.random(8) < 0.5
        legal[int(self.np_random.integers(0, 4))] = True
        legal[4 + int(self.np_random.integers(0, 4))] = True
        self.legal = legal

    def _obs(self) -> Any:
        return self.legal.astype(np.float32)

    def action_masks(self) -> np.ndarray:
        return self.legal.copy()

    def _reward(self, action: Any) -> float:
        a = np.asarray(action)
        reward = 0.0
        for j in range(2):
            legal = self.legal[4 * j : 4 * j + 4]
            if not legal[int(a[j])]:
                raise ValueError(f"masked value {int(a[j])} of entry {j}")
            reward += 0.5 * float(int(a[j]) == int(np.flatnonzero(legal).max()))
        return reward


# --- spaces refused before a run ------------------------------------------------------------
class UnboundedAct(_Contexts):
    """A continuous action without bounds (Box(-inf, inf)): reward -(a - context)^2."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def _draw(self) -> None:
        self.c = float(self.np_random.uniform(-1, 1))

    def _obs(self) -> Any:
        return np.array([self.c], np.float32)

    def _reward(self, action: Any) -> float:
        return -float((np.asarray(action)[0] - self.c) ** 2)


class TinyImageObs(UnboundedAct):
    """A 20 x 20 colour image: too small for the Nature-CNN."""

    observation_space = gym.spaces.Box(0, 255, (20, 20, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def _obs(self) -> Any:
        return np.zeros((20, 20, 3), np.uint8)

    def _reward(self, action: Any) -> float:
        return 0.0


for _name in (
    "UnboundedAct",
    "TinyImageObs",
    "MultiDiscreteObs",
    "MultiBinaryObs",
    "DictObs",
    "TupleObs",
    "DictImageObs",
    "MultiDiscreteAct",
    "ShiftedMultiDiscreteAct",
    "MultiBinaryAct",
    "MaskedChoice",
    "MaskedChoiceMethod",
    "MaskedMultiChoice",
):
    _id = f"Drl{_name}-v0"
    if _id not in gym.registry:
        gym.register(_id, entry_point=f"tests.envs_spaces:{_name}", max_episode_steps=LENGTH)
