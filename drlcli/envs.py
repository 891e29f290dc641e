"""Vector envs: gymnasium construction, autoreset handling, episode statistics, normalization.

Everything env-specific that an algorithm should not care about happens in ``VecEnv.step``:

* gymnasium's vector env runs in ``SAME_STEP`` autoreset mode, so the observation returned for
  a finished env is already the first one of its next episode and the true last observation is
  handed back separately as ``final_obs`` (needed to bootstrap the value on truncation);
* ``terminated`` and ``truncated`` stay separate arrays;
* episode returns and lengths are counted from the raw rewards, before any normalization;
* observation / reward normalization statistics live here, so they are saved with checkpoints
  and used frozen by the evaluation env.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import importlib
import math
import os
import pickle
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from drlcli import interrupts
from drlcli.config import VECTORIZATIONS, EnvConfig
from drlcli.errors import DrlError, did_you_mean
from drlcli.spaces import (
    check_masks,
    encode,
    encode_one,
    encoded_space,
    mask_dim,
    needs_encoding,
    raw_columns,
)

# Install hints for ids that live in optional gymnasium extras.
EXTRAS = {
    "LunarLander": "box2d",
    "BipedalWalker": "box2d",
    "CarRacing": "box2d",
    "HalfCheetah": "mujoco",
    "Hopper": "mujoco",
    "Walker2d": "mujoco",
    "Ant": "mujoco",
    "Humanoid": "mujoco",
    "ALE/": "atari",
}


class MaskVelocity(gym.ObservationWrapper):
    """Zero the given observation indices (e.g. CartPole's velocities) to make an env partially
    observable."""

    def __init__(self, env: gym.Env, indices: list[int]):
        super().__init__(env)
        self._indices = list(indices)

    def observation(self, observation: Any) -> Any:
        observation = np.array(observation, copy=True)
        observation[..., self._indices] = 0.0
        return observation


class FireReset(gym.Wrapper):
    """Press FIRE after a reset and after each lost life in games that wait for it (Breakout,
    ...); a no-op for games without a FIRE action. Without it a deterministic policy that never
    picks FIRE stalls a game until the ALE's 108k-frame limit (what the episodic-life reset of
    the usual wrappers does for training, here also for whole-game evaluation)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        base = env.unwrapped
        meanings = base.get_action_meanings() if hasattr(base, "ale") else []  # type: ignore[attr-defined]
        self._fire = meanings.index("FIRE") if "FIRE" in meanings else None
        self._lives = 0

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        if self._fire is None:
            return obs, info
        obs, _, terminated, truncated, info = self.env.step(self._fire)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        self._lives = int(info.get("lives", 0))
        return obs, info

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._fire is None:
            return obs, reward, terminated, truncated, info
        lives = int(info.get("lives", 0))
        if lives < self._lives and not (terminated or truncated):
            obs, extra, terminated, truncated, info = self.env.step(self._fire)
            reward = float(reward) + float(extra)
            lives = int(info.get("lives", 0))
        self._lives = lives
        return obs, reward, terminated, truncated, info


# drlcli's own per-env wrappers; other names are looked up in gymnasium.wrappers.
WRAPPERS: dict[str, type] = {"MaskVelocity": MaskVelocity, "FireReset": FireReset}


def register_optional_envs(env_id: str) -> None:
    """Suites that register their ids on import (ale-py's ALE/...)."""
    if env_id.startswith("ALE/") and env_id not in gym.registry:
        try:
            import ale_py
        except ImportError:
            return
        gym.register_envs(ale_py)
        copyreg.pickle(ale_py.env.AtariEnv, _reduce_atari)


def _reduce_atari(env: Any) -> tuple[Any, tuple[Any, ...]]:
    """Pickle an ALE env with its emulator state. ale-py's own pickling (EzPickle) rebuilds a
    fresh env from the constructor arguments, so a resumed run would silently start new games
    with a different RNG; this keeps the very same game, frame and random streams."""
    rng = env._np_random.bit_generator.state if env._np_random is not None else None
    return _rebuild_atari, (
        env._ezpickle_args,
        env._ezpickle_kwargs,
        env.clone_state(include_rng=True),
        rng,
    )


def _rebuild_atari(args: tuple, kwargs: dict, state: Any, rng: dict | None) -> Any:
    from ale_py.env import AtariEnv

    env = AtariEnv(*args, **kwargs)
    env.restore_state(state)
    if rng is not None:
        env._np_random = np.random.Generator(np.random.PCG64())
        env._np_random.bit_generator.state = rng
    return env


def resolve_wrapper(name: str) -> Any:
    """drlcli's own wrappers by name, gymnasium.wrappers by class name, or 'package.module:Class'
    for a user's wrapper."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise DrlError(f"Cannot import wrapper '{name}': {exc}.") from exc
    return WRAPPERS.get(name) or getattr(gym.wrappers, name, None)


def _suggest_extra(env_id: str) -> str:
    for prefix, extra in EXTRAS.items():
        if env_id.startswith(prefix):
            return extra
    return ""


def env_code_failed(what: str, exc: BaseException, tb: TracebackType | None = None) -> DrlError:
    """A DrlError for an exception raised by env code: ``what`` (naming the env), the exception
    and the traceback from ``tb`` (default: the whole traceback) on."""
    tb = tb or exc.__traceback__
    trace = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
    return DrlError(f"{what}: {type(exc).__name__}: {exc}. The env's traceback:\n{trace}")


def _missing_dependency(what: str, env_id: str, exc: Exception) -> DrlError:
    extra = _suggest_extra(env_id) or "the package named below"
    return DrlError(
        f"{what} needs an optional dependency that is not installed: "
        f"pip install 'drlcli[{extra}]'. ({exc})"
    )


def _try_import(name: str, where: str) -> ModuleNotFoundError | None:
    """Import ``name``: None when it worked, the error when ``name`` itself is not found; raises
    a DrlError when it was found but its code (or one of its own imports) failed."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return exc
        raise _import_failed(name, where, exc) from exc  # a dependency of the module is missing
    except Exception as exc:  # SyntaxError, an ImportError, whatever the module's code raised
        raise _import_failed(name, where, exc) from exc
    return None


def _import_user_module(name: str, where: str) -> None:
    """Import a module that registers a user's envs, or fail saying whether the module was not
    found or raised while importing (never that an env id is unknown)."""
    if name in sys.modules:
        return
    missing = _try_import(name, where)
    cwd = os.getcwd()
    if missing is not None and cwd not in sys.path and "" not in sys.path:
        # As with `python -m drlcli` or `python script.py`, a module in the working directory
        # is found (the `drl` console script alone does not put it on sys.path). Appended, so
        # it never shadows an installed module.
        sys.path.append(cwd)
        missing = _try_import(name, where)
    if missing is not None:
        raise _not_found(name, where, missing.name or name)


def _not_found(name: str, where: str, missing: str) -> DrlError:
    return DrlError(
        f"Cannot import the module '{name}' ({where}): there is no module named '{missing}'. "
        "The module that registers your env must be importable by drl and by its env worker "
        "processes: install its package (pip install -e .), run drl from the directory that "
        "holds it, or add that directory to PYTHONPATH."
    )


def _import_failed(name: str, where: str, exc: BaseException) -> DrlError:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return DrlError(
        f"Importing the module '{name}' ({where}) failed: {type(exc).__name__}: {exc}{at}. "
        "The module was found but raised while importing: fix it or install what it imports."
    )


def import_env_modules(env_id: str, imports: Sequence[str] = ()) -> None:
    """Import what registers the env: every module in ``env.imports``, then the ``module`` of an
    id written ``module:Id`` (what ``gymnasium.make`` does with such an id). Called wherever envs
    are made, so it also runs inside env worker and learner processes before their envs."""
    for name in imports:
        _import_user_module(name, "env.imports")
    module, sep, _ = env_id.partition(":")
    if sep:
        _import_user_module(module, f"env.id={env_id}")


def check_env_id(env_id: str, imports: Sequence[str] = ()) -> None:
    """Fail with a clear message when ``gymnasium.make(env_id)`` would not find the id, after
    importing the modules that register envs (``env.imports`` and a ``module:`` prefix)."""
    import_env_modules(env_id, imports)
    module, sep, name = env_id.partition(":")
    registered = name if sep else env_id
    register_optional_envs(registered)
    if registered in gym.registry:
        return
    ns, base, version = gym.envs.registration.parse_env_id(registered)
    if version is None and gym.envs.registration.find_highest_version(ns, base) is not None:
        return  # gymnasium makes the latest version of an unversioned id (with a warning)
    close = did_you_mean(registered, gym.registry.keys())
    if sep:
        raise DrlError(
            f"Unknown environment id '{env_id}': the module '{module}' was imported but "
            f"registers no env '{registered}'.{close} Register it in that module (gymnasium."
            f"register(id='{registered}', entry_point=...)), or fix the id."
        )
    extra = _suggest_extra(env_id)
    hint = f" It is provided by an optional extra: pip install 'drlcli[{extra}]'." if extra else ""
    imported = f" (after importing {', '.join(imports)})" if imports else ""
    raise DrlError(
        f"Unknown environment id '{env_id}': gymnasium has no env registered under that name"
        f"{imported}.{close}{hint} Any id listed by "
        "`python -c 'import gymnasium; gymnasium.pprint_registry()'` works with env=gym env.id=...;"
        " for your own env, name the module that registers it: env.id=mymodule:MyEnv-v0 or "
        "env.imports=[mymodule]."
    )


def has_time_limit(env: gym.Env) -> bool:
    """Whether something truncates ``env``'s episodes: a TimeLimit (registered
    max_episode_steps, env.max_episode_steps or a TimeLimit in env.wrappers) or the ALE's own
    frame limit. An env without one may never end an episode."""
    if env.spec is not None and env.spec.max_episode_steps is not None:
        return True
    inner: Any = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, gym.wrappers.TimeLimit):
            return True
        inner = inner.env
    kwargs = env.spec.kwargs if env.spec is not None else {}
    return bool(kwargs.get("max_num_frames_per_episode"))


def check_workers_can_carry(env_id: str, observation_space: gym.Space, masks: bool) -> None:
    """DrlError when ``hardware.vectorization=workers`` (shared-memory float arrays of one
    observation shape) cannot carry what the env gives: Dict / Tuple observations or action
    masks (issue #19)."""
    if isinstance(observation_space, gym.spaces.Dict | gym.spaces.Tuple) or masks:
        what = "action masks" if masks else f"{type(observation_space).__name__} observations"
        raise DrlError(
            f"hardware.vectorization=workers cannot carry {env_id}'s {what}; use "
            "hardware.vectorization=sync or async."
        )


def action_mask_source(env: gym.Env) -> str | None:
    """How ``env`` says which actions are legal (issue #19; sb3-contrib's conventions): "method"
    when it (or a wrapper) has an ``action_masks()`` method, "info" when its reset info holds an
    ``action_mask`` key, else None. Resets ``env`` for the info check; an env whose reset
    raises counts as giving none (its real reset names the error)."""
    try:
        method = env.get_wrapper_attr("action_masks")
    except AttributeError:
        method = None
    if callable(method):
        return "method"
    try:
        _, info = env.reset(seed=0)
    except Exception:
        return None
    return "info" if isinstance(info, dict) and "action_mask" in info else None


def make_single_env(cfg: EnvConfig) -> gym.Env:
    """One gymnasium env with the config's kwargs and wrappers."""
    check_env_id(cfg.id, cfg.imports)
    kwargs = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    try:
        env = gym.make(cfg.id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise _missing_dependency(f"Environment '{cfg.id}'", cfg.id, exc) from exc
    except TypeError as exc:
        if "render_mode" in kwargs and "render_mode" in str(exc):
            raise DrlError(
                f"{cfg.id} cannot render: its constructor takes no render_mode argument ({exc})."
            ) from exc
        if cfg.kwargs and "keyword argument" in str(exc):
            raise DrlError(f"Bad env.kwargs for '{cfg.id}': {exc}") from exc
        raise env_code_failed(f"Making the env '{cfg.id}' raised", exc) from exc
    except DrlError:
        raise
    except Exception as exc:  # the env's constructor (or what it imports) raised
        raise env_code_failed(f"Making the env '{cfg.id}' raised", exc) from exc
    for spec in cfg.wrappers:
        wrapper_cls = resolve_wrapper(spec.name)
        if wrapper_cls is None:
            choices = sorted(WRAPPERS) + [n for n in dir(gym.wrappers) if n[0].isupper()]
            raise DrlError(
                f"Unknown wrapper '{spec.name}' in env.wrappers.{did_you_mean(spec.name, choices)}"
                f" Valid wrappers: {', '.join(choices)}."
            )
        try:
            kwargs = dict(spec.kwargs)
            if wrapper_cls.__module__.startswith("gymnasium."):
                kwargs = {k: _as_tuples(v) for k, v in kwargs.items()}
            env = wrapper_cls(env, **kwargs)
        except gym.error.DependencyNotInstalled as exc:
            what = f"The wrapper {spec.name} for '{cfg.id}'"
            raise _missing_dependency(what, cfg.id, exc) from exc
        except TypeError as exc:
            raise DrlError(f"Bad kwargs for the wrapper {spec.name}: {exc}") from exc
    return env


class RunningMeanStd:
    """Running mean and variance (Chan et al. parallel update), float64 for stability."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        batch_mean = x.mean(axis=0)
        batch_var = x.var(axis=0)
        batch_count = x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = (
            self.var * self.count
            + batch_var * batch_count
            + delta**2 * self.count * batch_count / total
        )
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(self.mean.shape)
        self.var = np.asarray(state["var"], dtype=np.float64).reshape(self.var.shape)
        self.count = float(state["count"])


@dataclass
class Episode:
    """A finished episode: undiscounted raw return, length and the global env step it ended at."""

    ret: float
    length: int
    step: int


@dataclass
class StepResult:
    """What :meth:`VecEnv.step` returns for the ``num_envs`` envs (the collector turns it into
    the algorithm's ``VectorStep``)."""

    obs: np.ndarray  # (num_envs, *obs_shape) next observations (reset obs where an episode ended)
    reward: np.ndarray  # (num_envs,) float32, normalized if reward normalization is on
    terminated: np.ndarray  # (num_envs,) bool: MDP terminal state, no bootstrap
    truncated: np.ndarray  # (num_envs,) bool: time limit etc., bootstrap from final_obs
    final_obs: np.ndarray  # (num_envs, *obs_shape): true last obs where done, else == obs
    action_mask: np.ndarray | None = None  # (num_envs, mask_dim) bool: legal actions in obs
    final_action_mask: np.ndarray | None = None  # (num_envs, mask_dim): ... in final_obs


class EnvRaised(DrlError):
    """An env's own code raised; the message names the env and carries the env's traceback.
    Constructible from its own instance, as gymnasium's AsyncVectorEnv re-raises it that way."""

    def __init__(self, message: Any):
        super().__init__(str(message))


class _EnvGuard(gym.Wrapper):
    """In an async worker process: turn an exception of the env's code into an EnvRaised that
    names the env, because gymnasium hands only the exception's type and text to the parent."""

    def __init__(self, env: gym.Env, name: str):
        super().__init__(env)
        self._name = name

    def reset(self, **kwargs: Any) -> Any:
        try:
            return self.env.reset(**kwargs)
        except Exception as exc:
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            raise EnvRaised(env_code_failed(f"{self._name} raised in reset()", exc, tb)) from None

    def step(self, action: Any) -> Any:
        try:
            return self.env.step(action)
        except Exception as exc:
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            raise EnvRaised(env_code_failed(f"{self._name} raised in step()", exc, tb)) from None


def _make_guarded_env(cfg: EnvConfig, name: str) -> gym.Env:
    """An async worker's env. The worker is another process: it first ignores SIGINT /
    SIGTERM, which a group signal also delivers there, and leaves them to the training process
    (drlcli.workers.ignore_interrupts; issue #16)."""
    from drlcli.workers import ignore_interrupts

    ignore_interrupts()
    return _EnvGuard(make_single_env(cfg), name)


_ASYNC_POLL_S = 0.1  # how often a wait on async env workers checks for a stop request


def _as_tuples(value: Any) -> Any:
    """A gymnasium wrapper's keyword argument with its lists as tuples: YAML and Hydra have
    only lists, and gymnasium's wrappers want tuples for shapes (``ResizeObservation(env,
    shape=(84, 84))`` refuses a list). Your own wrappers get the values as written."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


class VecEnv:
    """A gymnasium vector env plus drlcli's bookkeeping. Observations come out as float32."""

    _async_pending = False  # an async call was cut before its reply (close() kills the workers)

    def __init__(
        self,
        cfg: EnvConfig,
        num_envs: int,
        seed: int,
        vectorization: str = "sync",
        gamma: float = 0.99,
        training: bool = True,
        num_workers: int = 0,
    ):
        if num_envs < 1:
            raise DrlError(f"env.num_envs must be at least 1, got {num_envs}.")
        if vectorization not in VECTORIZATIONS:
            raise DrlError(
                f"hardware.vectorization must be one of {', '.join(VECTORIZATIONS)}, got "
                f"'{vectorization}'."
            )
        self.cfg = cfg
        self.num_envs = num_envs
        self.seed = seed
        self.training = training
        self.gamma = gamma
        # Build one env up front so id / kwargs / wrapper errors surface here, in this process.
        probe = make_single_env(cfg)
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.has_time_limit = has_time_limit(probe)
        # Action masks (issue #19): "method" (action_masks()), "info" (info["action_mask"]).
        self.mask_source = action_mask_source(probe)
        probe.close()
        raw_space = self.single_observation_space
        if vectorization == "workers":
            check_workers_can_carry(cfg.id, raw_space, self.mask_source is not None)
        self.env: Any
        if vectorization == "workers":
            from drlcli.workers import WorkerVecEnv

            self.env = WorkerVecEnv(
                functools.partial(make_single_env, cfg),
                num_envs,
                num_workers or num_envs,
                self.single_observation_space,
                self.single_action_space,
                cfg.id,
            )
        elif vectorization == "envpool":
            from drlcli.envpool_backend import EnvPoolVectorEnv

            self.env = EnvPoolVectorEnv(
                cfg,
                num_envs,
                seed,
                num_workers or num_envs,
                masks=self.mask_source is not None,
                expect=(self.single_observation_space, self.single_action_space),
            )
        elif vectorization == "sync":
            fns = [functools.partial(make_single_env, cfg) for _ in range(num_envs)]
            self.env = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        else:
            fns = [
                functools.partial(_make_guarded_env, cfg, self._env_name(i))
                for i in range(num_envs)
            ]
            self.env = gym.vector.AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        self._async = vectorization == "async"
        # What algorithms observe: the Box itself, or the float encoding of other spaces.
        self.encoded = needs_encoding(raw_space)
        algo_space = encoded_space(raw_space)
        obs_shape = algo_space.shape or ()
        # Normalization applies to vector keys only (issue #19).
        keep_raw = raw_columns(raw_space)
        self._raw_columns: np.ndarray | None = keep_raw if len(keep_raw) else None
        self.obs_shape: tuple[int, ...] = tuple(obs_shape)
        self.obs_rms = RunningMeanStd(self.obs_shape)
        self.ret_rms = RunningMeanStd(())
        self._disc_return = np.zeros(num_envs, dtype=np.float64)
        self._ep_return = np.zeros(num_envs, dtype=np.float64)
        self._ep_length = np.zeros(num_envs, dtype=np.int64)
        self.global_step = 0  # env steps taken, summed over all envs
        self.episodes: list[Episode] = []  # finished since the last drain_episodes()
        space = self.single_action_space
        self._is_box = isinstance(space, gym.spaces.Box)
        if isinstance(space, gym.spaces.Box):
            self._low, self._high = space.low, space.high
        # Algorithms pick indices 0..n-1 (what their networks and buffers hold); a
        # Discrete(n, start=k) env gets k + index.
        # MultiDiscrete(nvec, start) alike, entry by entry.
        self._action_start: Any = 0
        if isinstance(space, gym.spaces.Discrete):
            self._action_start = int(space.start)
        elif isinstance(space, gym.spaces.MultiDiscrete) and np.any(space.start):
            self._action_start = np.asarray(space.start)
        self._shift_actions = bool(np.any(self._action_start))
        obs_dtype = self.single_observation_space.dtype
        self._float_obs = self.encoded or (
            obs_dtype is not None and np.issubdtype(obs_dtype, np.floating)
        )
        self._mask_dim = mask_dim(space) if self.mask_source else 0
        self._action_mask: np.ndarray | None = None
        self._obs: np.ndarray | None = None
        self._lives = np.zeros(num_envs)

    # --- observation normalization -----------------------------------------------------
    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.cfg.normalize_obs:
            return obs
        out = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        out = np.clip(out, -self.cfg.clip_obs, self.cfg.clip_obs).astype(np.float32)
        if self._raw_columns is not None:  # one-hot, bits and pixels are not normalized
            out[..., self._raw_columns] = obs[..., self._raw_columns]
        return out

    def _process_obs(self, raw: np.ndarray, update: bool) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        if self.cfg.normalize_obs and update and self.training:
            self.obs_rms.update(raw)
        return self.normalize_obs(raw)

    # --- gymnasium API ---------------------------------------------------------------
    def _env_name(self, index: int) -> str:
        return f"Env {index} of {self.cfg.id}" + ("" if self.training else " (evaluation)")

    def _call_env(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``self.env.<method>(...)``, an exception of an env's code turned into a DrlError
        naming the env, alike for every vectorization: workers and async envs (``_EnvGuard``)
        name it in their process; in a sync vector env it is found from the traceback. Async:
        gymnasium's own printing of the error (and its traceback) is kept quiet."""
        level = gym.logger.min_level
        if self._async:
            gym.logger.min_level = gym.logger.ERROR + 1
        try:
            if self._async:
                return self._call_async(method, *args, **kwargs)
            return getattr(self.env, method)(*args, **kwargs)
        except DrlError:
            raise
        except Exception as exc:
            named = self._name_failing_env(exc, method)
            if named is None:
                raise
            raise named from exc
        finally:
            gym.logger.min_level = level

    def _call_async(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """An AsyncVectorEnv's ``method`` (step, reset or call), waited for in short polls
        that honour a stop request (:func:`drlcli.interrupts.check`): gymnasium's own wait
        blocks without end on an env that hangs, and no SIGTERM would stop the run. A wait cut
        this way leaves the workers mid-call; :meth:`close` then kills them."""
        getattr(self.env, f"{method}_async")(*args, **kwargs)
        self._async_pending = True
        for pipe in self.env.parent_pipes:
            while not pipe.poll(_ASYNC_POLL_S):  # True on a reply, or on EOF (a dead worker)
                interrupts.check()
        self._async_pending = False
        return getattr(self.env, f"{method}_wait")()

    def _name_failing_env(self, exc: Exception, method: str) -> DrlError | None:
        envs = getattr(self.env, "envs", None) or []
        tb = exc.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            for i, sub in enumerate(envs):
                if owner is sub:  # the outermost frame of env i's own code
                    return env_code_failed(f"{self._env_name(i)} raised in {method}()", exc, tb)
            tb = tb.tb_next
        return None

    def _non_finite(self, what: str, values: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Stop at a NaN / inf the env returned (SB3's VecCheckNan), naming env, step, value."""
        bad = ~np.isfinite(values)
        if rows is not None:
            bad &= rows.reshape((-1,) + (1,) * (values.ndim - 1))
        if not bad.any():
            return  # a finite batch whose sum overflowed
        where = np.argwhere(bad)
        i = int(where[0][0])
        entry = tuple(int(j) for j in where[0][1:])
        label = what if not entry else f"{what}[{', '.join(map(str, entry))}]"
        more = f" (and {len(where) - 1} more non-finite entries)" if len(where) > 1 else ""
        raise DrlError(
            f"{self._env_name(i)} returned a non-finite {what} at env step {self.global_step} "
            f"(step {int(self._ep_length[i])} of its episode): {label} = "
            f"{values[tuple(where[0])]}{more}. A NaN or infinity from the env itself is a bug "
            "or an unguarded edge case in the env or a wrapper (a division by zero, an "
            f"overflow, an invalid state), not a training problem: fix the env's {what}."
        )

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, info = self._call_env("reset", seed=self.seed if seed is None else seed)
        obs = encode(self.single_observation_space, obs)
        self._action_mask = self._read_masks(info)
        self._lives = np.asarray(info.get("lives", np.zeros(self.num_envs)))
        self._ep_return[:] = 0
        self._ep_length[:] = 0
        self._disc_return[:] = 0
        if self._float_obs and not math.isfinite(obs.sum()):
            self._non_finite("observation", np.asarray(obs))
        self._obs = self._process_obs(obs, update=True)
        return self._obs

    def step(self, actions: np.ndarray) -> StepResult:
        if self._is_box:
            actions = np.clip(actions, self._low, self._high)
        elif self._shift_actions:
            actions = actions + self._action_start
        obs, reward, terminated, truncated, info = self._call_env("step", actions)
        obs = encode(self.single_observation_space, obs)
        reward = np.asarray(reward, dtype=np.float64)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        done = terminated | truncated
        self.global_step += self.num_envs
        self._ep_length += 1
        # One cheap reduction per batch; the exact search only runs when it is not finite.
        if not math.isfinite(reward.sum()):
            self._non_finite("reward", reward)
        if self._float_obs and not math.isfinite(obs.sum()):
            self._non_finite("observation", np.asarray(obs))
        learner_terminated = terminated
        if self.training and self.cfg.episodic_life and "lives" in info:
            lives = np.asarray(info["lives"])
            # A lost life is terminal for the learner; the game (and its episode) goes on.
            learner_terminated = terminated | ((lives < self._lives) & ~done)
            self._lives = lives
        self._ep_return += reward

        raw_final = obs
        if done.any():
            raw_final = np.array(obs, dtype=np.float32, copy=True)
            for i in np.flatnonzero(done):
                raw_final[i] = self._encode_one(info["final_obs"][i])
                self.episodes.append(
                    Episode(float(self._ep_return[i]), int(self._ep_length[i]), self.global_step)
                )
            if self._float_obs and not math.isfinite(raw_final[done].sum()):
                self._non_finite("final observation", raw_final, done)
            self._ep_return[done] = 0
            self._ep_length[done] = 0

        if self.cfg.clip_reward_sign and self.training:
            reward = np.sign(reward)
        if self.cfg.normalize_reward and self.training:
            # Scale by the std of the discounted return (as in OpenAI baselines' VecNormalize).
            self._disc_return = self._disc_return * self.gamma + reward
            self.ret_rms.update(self._disc_return)
            reward = np.clip(
                reward / np.sqrt(self.ret_rms.var + 1e-8),
                -self.cfg.clip_reward,
                self.cfg.clip_reward,
            )
            self._disc_return[done] = 0

        next_obs = self._process_obs(obs, update=True)
        final_obs = (
            next_obs if raw_final is obs else self.normalize_obs(raw_final.astype(np.float32))
        )
        self._obs = next_obs
        result = StepResult(
            next_obs, reward.astype(np.float32), learner_terminated, truncated, final_obs
        )
        if self.mask_source:
            result.action_mask = self._action_mask = self._read_masks(info)
            result.final_action_mask = self._final_masks(info, done)
        return result

    # --- observation encoding and action masks (issue #19) -------------------------------
    def _encode_one(self, obs: Any) -> np.ndarray:
        return encode_one(self.single_observation_space, obs)

    @property
    def action_mask(self) -> np.ndarray | None:
        """The legal actions in the latest observations, (num_envs, mask_dim) bool, or None
        when the env gives no masks (``drlcli.spaces``)."""
        return self._action_mask

    def _read_masks(self, info: dict[str, Any]) -> np.ndarray | None:
        """Masks of the current observations: from the envs' ``action_masks()`` or the
        ``action_mask`` key of ``info`` (all legal for an env whose info lacks it)."""
        if not self.mask_source:
            return None
        space, n = self.single_action_space, self.num_envs
        if self.mask_source == "method":
            got = self._call_env("call", "action_masks")
            masks = np.stack([np.asarray(m, dtype=bool).reshape(-1) for m in got])
            return check_masks(masks, space, "action_masks()")
        masks = np.ones((n, self._mask_dim), dtype=bool)
        if "action_mask" in info:
            given = np.asarray(info["action_mask"]).reshape(n, -1)
            present = np.asarray(info.get("_action_mask", np.ones(n, dtype=bool)), dtype=bool)
            if given.shape[1] != self._mask_dim:
                check_masks(given, space, "info['action_mask']")  # raises, naming the shape
            masks[present] = given[present].astype(bool)
        return check_masks(masks, space, "info['action_mask']")

    def _final_masks(self, info: dict[str, Any], done: np.ndarray) -> np.ndarray:
        """Masks of the true next states: the current ones inside episodes; where an episode
        ended, the final info's ``action_mask`` if the env gave one, else all legal (an
        ``action_masks()`` method can no longer be asked about a state it left)."""
        assert self._action_mask is not None
        if not done.any():
            return self._action_mask
        out = self._action_mask.copy()
        out[done] = True
        final = info.get("final_info")
        if isinstance(final, dict) and "action_mask" in final:
            given = np.asarray(final["action_mask"]).reshape(self.num_envs, -1)
            present = np.asarray(final.get("_action_mask", done), dtype=bool) & done
            if given.shape[1] == self._mask_dim:
                out[present] = given[present].astype(bool)
        return out

    @property
    def obs(self) -> np.ndarray | None:
        """The latest observation batch (None before the first reset)."""
        return self._obs

    def snapshot(self) -> bytes | None:
        """Pickled state of the sub-envs and the episode bookkeeping, so that a resumed run
        continues the very same episodes. Only sync vector envs can be captured (async ones live
        in other processes); None when the env cannot be pickled."""
        if not isinstance(self.env, gym.vector.SyncVectorEnv) or self._obs is None:
            return None
        try:
            return pickle.dumps(
                {
                    "envs": self.env.envs,
                    "obs": self._obs,
                    "ep_return": self._ep_return,
                    "ep_length": self._ep_length,
                    "disc_return": self._disc_return,
                    "lives": self._lives,
                    "action_mask": self._action_mask,
                }
            )
        except Exception:  # an env holding sockets, renderers, ...
            return None

    def restore(self, blob: bytes) -> None:
        """Inverse of :meth:`snapshot`. The blob comes from this run's own checkpoint directory
        (unpickling runs code, so never load one from an untrusted source)."""
        if not isinstance(self.env, gym.vector.SyncVectorEnv):
            raise DrlError("Env snapshots can only be restored into a sync vector env.")
        state = pickle.loads(blob)
        if len(state["envs"]) != self.num_envs:
            raise DrlError(
                f"The env snapshot holds {len(state['envs'])} envs but env.num_envs is "
                f"{self.num_envs}."
            )
        for env in self.env.envs:
            env.close()
        self.env.envs = state["envs"]
        self._obs = state["obs"]
        self._ep_return = state["ep_return"]
        self._ep_length = state["ep_length"]
        self._disc_return = state["disc_return"]
        self._lives = state.get("lives", np.zeros(self.num_envs))
        self._action_mask = state.get("action_mask")

    def drain_episodes(self) -> list[Episode]:
        eps, self.episodes = self.episodes, []
        return eps

    def close(self) -> None:
        if self._async_pending:
            # Cut mid-call (an env that hangs): gymnasium's close would wait for the reply
            # for ever, and the workers ignore SIGTERM (_make_guarded_env), so kill them.
            for process in self.env.processes:
                if process.is_alive():
                    process.kill()
            self._async_pending = False
            self.env.close(terminate=True)
            return
        self.env.close()

    # --- checkpointing ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "obs_rms": self.obs_rms.state_dict(),
            "ret_rms": self.ret_rms.state_dict(),
            "global_step": self.global_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        self.global_step = int(state["global_step"])

    def sync_normalization_from(self, other: VecEnv) -> None:
        """Copy (freeze) another env's observation statistics, e.g. training -> eval."""
        self.obs_rms.load_state_dict(other.obs_rms.state_dict())


def eval_env_config(cfg: EnvConfig) -> EnvConfig:
    """The eval env: same env and observation preprocessing, raw rewards."""
    return dataclasses.replace(
        cfg, normalize_reward=False, episodic_life=False, clip_reward_sign=False
    )
