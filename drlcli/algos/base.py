"""The thin interface every algorithm implements (issue #18, Tianshou's split).

An algorithm receives spaces when it is built and data when it learns; it never sees an env.
The collector (``drlcli.collector``, on the runner's side) owns env stepping: it asks
:meth:`Algorithm.act` for actions, steps the envs, and hands each vector step back through
:meth:`Algorithm.observe` until the algorithm says its next update is due; the runner then calls
:meth:`Algorithm.update`. Evaluation, episode statistics and stream breaks are the runner's too.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from drlcli.errors import DrlError
from drlcli.spaces import encoded_space


@dataclass
class EnvInfo:
    """What an algorithm knows of the envs it learns from: one env's spaces and how many run
    side by side (storage is shaped ``(num_steps, num_envs, ...)``).

    ``observation_space`` is what the algorithm observes: pass the env's own space; a space
    other than a Box (Discrete, MultiDiscrete, MultiBinary, Dict, Tuple) is replaced by the Box
    of its float encoding (``drlcli.spaces.encoded_space``; the env side encodes the
    observations alike) and kept as ``raw_observation_space``. Raises DrlError for a space
    that has no encoding. ``action_masks``: the env says which actions are legal (issue #19);
    the collector then calls ``act_masked`` / ``predict_masked``.
    """

    observation_space: gym.Space
    action_space: gym.Space
    num_envs: int
    action_masks: bool = False
    raw_observation_space: gym.Space | None = None

    def __post_init__(self) -> None:
        if self.raw_observation_space is None:
            self.raw_observation_space = self.observation_space
        self.observation_space = encoded_space(self.observation_space)


# Observation spaces every vector algorithm takes (non-Box ones through drlcli.spaces.encode).
VECTOR_OBSERVATIONS: tuple[type, ...] = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
    gym.spaces.Dict,
    gym.spaces.Tuple,
)


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
    observation_spaces: space classes it can observe (Box vectors; images too if ``images``;
                        Discrete, MultiDiscrete, MultiBinary, Dict and Tuple of vector parts
                        through their float encoding, ``drlcli.spaces``).
    images:             whether its networks switch to a Nature-CNN torso for image Boxes.
    action_masks:       whether it honours the action masks an env provides (never picks a
                        masked action, in training or evaluation; issue #19).
    validate:           ``validate(cfg, num_envs, env_cfg)`` raising DrlError on settings that
                        cannot work; needs no env or network, runs before any run dir exists.
    hint:               one sentence added to an incompatible-space error.
    family:             "on-policy", "off-policy" or "asynchronous" (``drl list``).
    compilable:         whether ``hardware.compile`` applies: its Algorithm implements
                        ``compile_learner(mode)``.
    bounded_actions:    whether its actor squashes actions into a Box's bounds (tanh, then
                        scaled), so every bound must be finite.
    """

    name: str
    config: type
    factory: Callable[[Any, EnvInfo, torch.device], Algorithm]
    action_spaces: tuple[type, ...]
    family: str
    observation_spaces: tuple[type, ...] = VECTOR_OBSERVATIONS
    images: bool = False
    validate: Callable[[Any, int, Any], None] | None = None
    hint: str = ""
    action_masks: bool = False
    compilable: bool = False
    bounded_actions: bool = False


CONTINUOUS_HINT = "acts in continuous (Box) spaces; for discrete actions use dqn or ppo."
DISCRETE_AND_BOX = (gym.spaces.Discrete, gym.spaces.Box)
# The policy-gradient family's heads (drlcli.networks.make_head): Box and the factored spaces 1-D.
POLICY_GRADIENT_ACTIONS = (
    gym.spaces.Discrete,
    gym.spaces.Box,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


@dataclass
class VectorStep:
    """One step of the ``num_envs`` training envs, as the collector hands it to an algorithm.

    obs:         (num_envs, *obs_shape) the observations the actions were chosen from.
    reward:      (num_envs,) float32, normalized when reward normalization is on.
    terminated:  (num_envs,) bool, an MDP terminal state: no bootstrap.
    truncated:   (num_envs,) bool, cut by a time limit (or a stream break): bootstrap from
                 ``final_obs``. Kept apart from ``terminated`` all the way into the targets.
    final_obs:   (num_envs, *obs_shape) the true last observation where an episode ended,
                 else the same as ``next_obs``.
    next_obs:    (num_envs, *obs_shape) what the next action is chosen from (envs auto-reset).
    global_step: env steps of the run after this step (all envs together).
    action_mask, next_action_mask: see the fields (None without masks).
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    next_obs: np.ndarray
    global_step: int
    # Action masks (issue #19), None when the env gives none: (num_envs, mask_dim) bool.
    # action_mask: the mask ``act_masked`` got for ``obs``; next_action_mask: the legal actions
    # in the true next state (``final_obs``'s where an episode ended, all legal where the env
    # did not say), for targets that maximize over next actions (DQN).
    action_mask: np.ndarray | None = None
    next_action_mask: np.ndarray | None = None


class Algorithm(ABC):
    """The runner's collector calls ``begin_collect``, then ``act`` / ``observe`` per vector
    step until ``observe`` returns True, then ``end_collect``; the runner then calls ``update``
    (learn from what was stored), until the step budget is spent. ``predict`` serves evaluation.

    The collector runs ``begin_collect`` under ``torch.no_grad()`` and ``act`` / ``observe`` /
    ``end_collect`` under ``torch.inference_mode()`` (measurably faster per op). Tensors those
    three create are inference tensors: autograd refuses to save them and in-place writes to
    them outside inference mode raise (loudly). Build a batch meant for training under
    ``torch.inference_mode(False)`` (REINFORCE does); write into preallocated buffers in place.
    """

    def __init__(self, cfg: Any, env_info: EnvInfo, device: torch.device):
        self.cfg = cfg
        self.env_info = env_info
        self.device = device

    def begin_collect(self, obs: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """A collection phase starts from observations ``obs`` (num_envs, *obs_shape)."""

    @abstractmethod
    def act(self, obs: np.ndarray, global_step: int) -> np.ndarray:
        """Actions for the training envs: (num_envs, *action_shape), float32 for Box and int64
        for Discrete, in the env's own units. ``global_step``: env steps of the run so far (for
        warm-up and exploration schedules)."""

    @abstractmethod
    def observe(self, step: VectorStep) -> bool:
        """Store what the envs returned for the latest ``act``; True when the next ``update`` is
        due (a full rollout, enough env steps since the last learning phase, ...)."""

    def end_collect(self, next_obs: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """The phase ended; ``next_obs`` is where the next one starts (e.g. to bootstrap V)."""

    @abstractmethod
    def update(self, progress: float) -> dict[str, float]:
        """One learning phase; ``progress`` in [0, 1] is the fraction of the step budget used."""

    @abstractmethod
    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...

    def act_masked(self, obs: np.ndarray, global_step: int, action_mask: np.ndarray) -> np.ndarray:
        """``act`` for an env that gives action masks: ``action_mask`` (num_envs, mask_dim) bool,
        True where legal (``drlcli.spaces``); a masked action is never returned. Algorithms
        whose spec declares ``action_masks`` override it; the registry refuses masked envs for
        the others before a run starts, so reaching this default is a bug (DrlError)."""
        raise DrlError(f"{type(self).__name__} cannot honour action masks.")

    def predict_masked(
        self, obs: np.ndarray, action_mask: np.ndarray, deterministic: bool = True
    ) -> np.ndarray:
        """``predict`` honouring ``action_mask`` (B, mask_dim) bool; see :meth:`act_masked`."""
        raise DrlError(f"{type(self).__name__} cannot honour action masks.")

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def compile_learner(self, mode: str) -> None:
        """Replace the functions the update calls (losses, targets, policy sampling) with
        ``torch.compile``d ones (``hardware.compile``, drlcli.hardware.compiled). Only for
        algorithms whose AlgoSpec says ``compilable``; raises DrlError otherwise."""
        raise DrlError(f"{type(self).__name__} has no compiled learner (hardware.compile).")

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
