"""EnvPool (Weng et al. 2022, arXiv:2206.10558) as a vectorization backend:
``hardware.vectorization=envpool`` (issue #15; ``pip install drlcli[envpool]``).

EnvPool steps a batch of C++ envs on its own thread pool, with no Python per env. This module
maps a drlcli env config to an EnvPool task and presents the pool as the gymnasium vector env
:class:`drlcli.envs.VecEnv` drives, with the same semantics as the gymnasium path:

- Autoreset. EnvPool resets a finished env on its *next* step (that step's action is ignored
  and its reward is 0). drlcli's gymnasium envs reset in the same step and report the true last
  observation in ``info["final_obs"]``. The adapter steps the finished envs once more at once
  (``step(..., env_id=finished)``, EnvPool's partial step) and returns their first observation,
  the last one going to ``final_obs``: learners see the same transitions on either path, and a
  truncated episode still bootstraps from its real last state.
- Atari. drlcli's Atari config (``conf/env/atari.yaml``: ``AtariPreprocessing``, ``FireReset``,
  ``FrameStackObservation``) maps to EnvPool's options one for one: noop reset, frame skip with
  max-pooling of the last two frames, 84x84 grayscale (INTER_AREA resize), fire on reset, stacked
  frames; sticky actions as the v5 id defines them (``repeat_action_probability`` 0.25 unless
  ``env.kwargs`` says otherwise; EnvPool's own default is 0); the time limit of 108k frames
  (27k agent steps). Episodic life and reward clipping stay drlcli's (from ``info["lives"]``,
  training only), so EnvPool's are off. ``env.max_episode_steps`` counts frames on Atari (the
  gymnasium path's time limit sits under the frame skip), so EnvPool gets it divided by the skip.
  One difference remains: the gymnasium path's limit also counts the noop reset's frames (up to
  30) and FIRE's, EnvPool's only the agent's steps after them - up to 8 agent steps longer
  episodes at the limit (27k steps by default), documented rather than emulated.
- Other envs (classic control, Box2D, MuJoCo): only without ``env.wrappers`` and
  ``env.imports``; ``env.kwargs`` go to EnvPool (``LunarLander-v3`` with ``continuous: true`` is
  EnvPool's ``LunarLanderContinuous-v3``); ``env.max_episode_steps`` is EnvPool's option of that
  name.

Not available: your own envs and wrappers (EnvPool runs its own C++ implementations), action
masks, and exact resume (a pool cannot be pickled: a resumed run starts new episodes, as with
``workers`` and ``async``). Evaluation always runs gymnasium's envs, so eval returns come from
the reference implementation whatever trains.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from drlcli.config import EnvConfig
from drlcli.errors import DrlError

ATARI_WRAPPERS = ("AtariPreprocessing", "FireReset", "FrameStackObservation")
ATARI_FRAMES_PER_EPISODE = 108_000  # the ALE v5 limit, in frames


def _import_envpool() -> Any:
    try:
        import envpool
    except ImportError as exc:
        raise DrlError(
            "hardware.vectorization=envpool needs EnvPool: pip install 'drlcli[envpool]' "
            "(or choose hardware.vectorization=sync, workers or async)."
        ) from exc
    return envpool


def _atari_options(cfg: EnvConfig) -> dict[str, Any]:
    names = tuple(w.name for w in cfg.wrappers)
    if names not in (ATARI_WRAPPERS, ATARI_WRAPPERS[:1] + ATARI_WRAPPERS[2:]):
        raise DrlError(
            f"hardware.vectorization=envpool maps drlcli's Atari preprocessing "
            f"({', '.join(ATARI_WRAPPERS)}, as conf/env/atari.yaml sets it) onto EnvPool's "
            f"options; {cfg.id} has env.wrappers {list(names)}. Use env=atari's wrappers, or "
            "hardware.vectorization=sync, workers or async."
        )
    pre = dict(cfg.wrappers[0].kwargs)
    stack = dict(cfg.wrappers[-1].kwargs)
    if pre.get("terminal_on_life_loss") or pre.get("scale_obs"):
        raise DrlError(
            "hardware.vectorization=envpool: AtariPreprocessing's terminal_on_life_loss and "
            "scale_obs have no EnvPool equivalent; use env.episodic_life=true for the first."
        )
    size = pre.get("screen_size", 84)
    height, width = (size, size) if isinstance(size, int) else size
    kwargs = dict(cfg.kwargs)
    kwargs.pop("frameskip", None)  # the ALE's own skip; AtariPreprocessing's is frame_skip
    frame_skip = int(pre.get("frame_skip", 4))
    # drlcli's env.max_episode_steps limits the ALE env under the preprocessing, in frames.
    steps = (cfg.max_episode_steps or ATARI_FRAMES_PER_EPISODE) // frame_skip
    return {
        "noop_max": int(pre.get("noop_max", 30)),
        "frame_skip": frame_skip,
        "img_height": int(height),
        "img_width": int(width),
        "gray_scale": bool(pre.get("grayscale_obs", True)),
        "stack_num": int(stack.get("stack_size", 4)),
        "use_fire_reset": "FireReset" in names,
        "episodic_life": False,
        "reward_clip": False,
        "repeat_action_probability": float(kwargs.pop("repeat_action_probability", 0.25)),
        "max_episode_steps": int(steps),
        **kwargs,
    }


def task_and_options(cfg: EnvConfig) -> tuple[str, dict[str, Any]]:
    """The EnvPool task id and ``envpool.make`` options for ``cfg``. Raises DrlError (naming
    what is not available and the other vectorizations) for envs or settings EnvPool lacks."""
    envpool = _import_envpool()
    if cfg.imports or ":" in cfg.id:
        raise DrlError(
            f"hardware.vectorization=envpool runs EnvPool's own C++ envs; '{cfg.id}' comes from "
            "your module (env.imports). Use hardware.vectorization=sync, workers or async."
        )
    if cfg.id.startswith("ALE/"):
        task, options = cfg.id.removeprefix("ALE/"), _atari_options(cfg)
    else:
        if cfg.wrappers:
            raise DrlError(
                f"hardware.vectorization=envpool cannot apply env.wrappers "
                f"({', '.join(w.name for w in cfg.wrappers)}): EnvPool's envs are C++. Drop "
                "them, or use hardware.vectorization=sync, workers or async."
            )
        task, options = cfg.id, dict(cfg.kwargs)
        if task.startswith("LunarLander-") and options.pop("continuous", False):
            task = task.replace("LunarLander-", "LunarLanderContinuous-")
        if cfg.max_episode_steps is not None:
            options["max_episode_steps"] = int(cfg.max_episode_steps)
    known = set(envpool.list_all_envs())
    if task not in known:
        raise DrlError(
            f"EnvPool has no '{task}' (env.id {cfg.id}). It covers Atari (ALE/<Game>-v5), "
            "MuJoCo (e.g. HalfCheetah-v5), Box2D and classic control (CartPole-v1, Acrobot-v1, "
            "MountainCar-v0, Pendulum-v1, LunarLander-v3, ...). Use hardware.vectorization="
            "sync, workers or async for other envs."
        )
    return task, options


def check_envpool(cfg: EnvConfig, masks: bool) -> tuple[str, dict[str, Any]]:
    """The checks that need no pool, also run by ``drl train``'s preflight (before a run
    directory exists): EnvPool installed, an EnvPool task for ``cfg``, no action masks. Returns
    :func:`task_and_options`; raises DrlError."""
    if masks:
        raise DrlError(
            f"{cfg.id} provides action masks, which EnvPool's envs cannot carry; use "
            "hardware.vectorization=sync, workers or async."
        )
    return task_and_options(cfg)


def _same_space(a: gym.Space, b: gym.Space) -> bool:
    """Equal up to dtype (EnvPool's Boxes are float64, gymnasium's float32): same type and
    shape, the same Discrete n and start, Box bounds equal within float32 precision."""
    if type(a) is not type(b) or a.shape != b.shape:
        return False
    if isinstance(a, gym.spaces.Discrete) and isinstance(b, gym.spaces.Discrete):
        return bool(a.n == b.n and a.start == b.start)
    if isinstance(a, gym.spaces.Box) and isinstance(b, gym.spaces.Box):
        return bool(np.allclose(a.low, b.low) and np.allclose(a.high, b.high))
    return bool(a == b)


class EnvPoolVectorEnv:
    """An EnvPool batch of ``num_envs`` envs seen as a gymnasium vector env in same-step
    autoreset mode (``reset`` -> (obs, info); ``step`` -> (obs, reward, terminated, truncated,
    info) with ``info["final_obs"]`` for finished envs). ``num_threads`` is EnvPool's thread
    pool size. Env ``i`` of a pool seeded ``s`` draws from ``s + i`` (EnvPool's convention).
    ``masks``: the env provides action masks (refused). ``expect``: gymnasium's (observation,
    action) spaces for the same config; a pool whose spaces differ raises DrlError."""

    def __init__(
        self,
        cfg: EnvConfig,
        num_envs: int,
        seed: int,
        num_threads: int,
        masks: bool = False,
        expect: tuple[gym.Space, gym.Space] | None = None,
    ):
        self.task, self.options = check_envpool(cfg, masks)
        self.num_envs = num_envs
        self.num_threads = num_threads
        self._seed: int | None = None
        self._pool: Any = None
        self._make(seed)
        if expect is not None:
            obs_space, act_space = expect
            if self.observation_space.shape != obs_space.shape or not _same_space(
                self.action_space, act_space
            ):
                self.close()
                raise DrlError(
                    f"EnvPool's {self.task} does not match gymnasium's {cfg.id}: observations "
                    f"{self.observation_space.shape} vs {obs_space.shape}, actions "
                    f"{self.action_space} vs {act_space}. Use hardware.vectorization=sync, "
                    "workers or async."
                )

    def _make(self, seed: int) -> None:
        envpool = _import_envpool()
        if self._pool is not None:
            self._pool.close()
        with warnings.catch_warnings():
            # gymnasium's note that EnvPool's float64 Box bounds are cast to float32
            warnings.filterwarnings("ignore", message=".*precision lowered", category=UserWarning)
            try:
                self._pool = envpool.make(
                    self.task,
                    env_type="gymnasium",
                    num_envs=self.num_envs,
                    seed=int(seed),
                    num_threads=self.num_threads,
                    **self.options,
                )
            except (TypeError, ValueError, RuntimeError) as exc:
                raise DrlError(
                    f"EnvPool could not make '{self.task}' with {self.options}: {exc}"
                ) from exc
            self.observation_space = self._pool.observation_space
            self.action_space = self._pool.action_space
        self._seed = int(seed)
        self._discrete = self.action_space.dtype is not None and np.issubdtype(
            self.action_space.dtype, np.integer
        )

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        return {k: np.asarray(v) for k, v in info.items() if k in ("lives", "elapsed_step")}

    def reset(self, seed: int | None = None, **_: Any) -> tuple[np.ndarray, dict[str, Any]]:
        # A pool is seeded when made: a new seed makes a new pool (resume, a second reset).
        if seed is not None and seed != self._seed:
            self._make(seed)
        obs, info = self._pool.reset()
        return obs, self._info(info)

    def step(self, actions: np.ndarray) -> tuple[Any, ...]:
        actions = np.asarray(actions)
        actions = actions.astype(np.int32 if self._discrete else np.float64, copy=False)
        obs, reward, terminated, truncated, info = self._pool.step(actions)
        info = self._info(info)
        done = np.logical_or(terminated, truncated)
        if done.any():
            ids = np.flatnonzero(done).astype(np.int32)
            info["final_obs"] = obs.copy()  # rows of finished envs: their true last state
            # EnvPool's reset step for the finished envs (actions ignored, reward 0).
            first, _, _, _, rinfo = self._pool.step(actions[ids], env_id=ids)
            order = np.asarray(rinfo["env_id"])
            obs = obs.copy()
            obs[order] = first
            if "lives" in info and "lives" in rinfo:
                info["lives"] = info["lives"].copy()
                info["lives"][order] = np.asarray(rinfo["lives"])
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
