"""Shared plumbing for replay-based algorithms: collection into the replay buffer, warm-up,
learning phases, checkpointing of the buffer. Each algorithm adds ``explore`` and ``learn``."""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from drlcli.algos.base import Algorithm, EnvInfo, VectorStep
from drlcli.buffers import PrioritizedReplayBuffer, ReplayBuffer
from drlcli.config import OffPolicyConfig
from drlcli.errors import DrlError
from drlcli.networks import is_image, obs_dim, sde_problems, snapshot
from drlcli.spaces import image_parts


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, buffer_size: int) -> None:
    """Refuse a replay buffer that cannot fit in RAM before a run fills it and gets killed."""
    total = physical_memory()
    if total and nbytes > 0.8 * total:
        raise DrlError(
            f"algo.buffer_size={buffer_size:,} needs {nbytes / 2**30:.1f} GiB of replay memory "
            f"but this machine has {total / 2**30:.1f} GiB of RAM; lower algo.buffer_size "
            f"(e.g. algo.buffer_size={int(buffer_size * 0.5 * total / nbytes):,})."
        )


def offpolicy_problems(cfg: OffPolicyConfig, num_envs: int) -> list[str]:
    """Settings problems every replay-based algorithm shares (empty list: none)."""
    problems = []
    if cfg.learning_rate <= 0:
        problems.append(f"algo.learning_rate must be > 0 (got {cfg.learning_rate})")
    if cfg.batch_size < 1:
        problems.append(f"algo.batch_size must be >= 1 (got {cfg.batch_size})")
    if cfg.buffer_size < max(cfg.batch_size, num_envs):
        problems.append(
            f"algo.buffer_size={cfg.buffer_size} must hold at least one batch "
            f"(algo.batch_size={cfg.batch_size}) and one step of {num_envs} envs"
        )
    if cfg.train_freq < 1 or cfg.gradient_steps < 0:
        problems.append("algo.train_freq must be >= 1 and algo.gradient_steps >= 0")
    if not 0 < cfg.tau <= 1:
        problems.append(f"algo.tau must lie in (0, 1] (got {cfg.tau})")
    if not 0 <= cfg.gamma <= 1:
        problems.append(f"algo.gamma must lie in [0, 1] (got {cfg.gamma})")
    problems += sde_problems(cfg)
    return problems


def raise_offpolicy_problems(cfg: OffPolicyConfig, problems: list[str]) -> None:
    if problems:
        # The algorithm as users name it (ddpg shares TD3Config: not the class name).
        name = str(getattr(cfg, "name", ""))
        label = {"crossq": "CrossQ"}.get(name, name.upper())
        raise DrlError(f"Invalid {label} settings: " + "; ".join(problems) + ".")


def validate_offpolicy(cfg: OffPolicyConfig, num_envs: int, env_cfg: Any = None) -> None:
    """Raise DrlError naming every shared off-policy setting that cannot work."""
    raise_offpolicy_problems(cfg, offpolicy_problems(cfg, num_envs))


class OffPolicy(Algorithm):
    def __init__(self, cfg: OffPolicyConfig, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        validate_offpolicy(cfg, env_info.num_envs)
        self.cfg: OffPolicyConfig = cfg
        self.obs_dim = obs_dim(env_info.observation_space)
        self.rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        self.env_steps = 0  # env steps seen by this learner (for schedules)
        self.total_steps = 1  # set by the runner through `progress`
        self.grad_steps = 0
        self.progress = 0.0  # share of the step budget done, as of the latest update
        # Replay ratio (issue #21): gradient_steps per train_freq env steps, whatever num_envs.
        self.steps_since_learn = 0  # env steps stored since the last learning phase
        self.owed = 0  # gradient_steps x env steps not yet paid, in units of 1/train_freq
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def make_replay(
        self,
        action_shape: tuple[int, ...],
        action_dtype: Any,
        prioritized: bool = False,
        mask_dim: int = 0,
        **per: Any,
    ) -> ReplayBuffer:
        space = self.env_info.observation_space
        obs_shape = tuple(space.shape or ())
        # Frames are stored as the env's uint8 pixels, each once (compact): 28 KB per Atari
        # transition instead of 2 x 113 KB as float32 obs + next_obs.
        image = is_image(space)
        pixels = image and np.dtype(space.dtype) == np.uint8
        cls = PrioritizedReplayBuffer if prioritized else ReplayBuffer
        # Images inside a Dict observation: their uint8 pixels stay uint8 in replay (issue #19).
        pixel_parts = [p for p in image_parts(space) if p.uint8]
        pixel_columns = (
            np.concatenate([np.arange(p.start, p.start + p.size) for p in pixel_parts])
            if pixel_parts
            else None
        )
        replay = cls(
            self.cfg.buffer_size,
            self.env_info.num_envs,
            obs_shape,
            action_shape,
            action_dtype,
            obs_dtype=np.uint8 if pixels else np.float32,
            compact=image,
            mask_dim=mask_dim,
            pixel_columns=pixel_columns,
            **per,
        )
        check_memory(replay.nbytes, self.cfg.buffer_size)
        return replay

    def summary_lines(self) -> list[str]:
        replay: ReplayBuffer = self.replay  # type: ignore[attr-defined]
        kind = "prioritized replay" if isinstance(replay, PrioritizedReplayBuffer) else "replay"
        saved = "saved with checkpoints" if self.cfg.save_replay else "not checkpointed"
        return [
            f"drl: {kind} buffer: {replay.capacity:,} transitions, "
            f"{replay.nbytes / 2**20:.1f} MiB preallocated ({saved})"
        ]

    # --- experience ----------------------------------------------------------------------
    @abstractmethod
    def explore(self, obs: np.ndarray, random: bool) -> tuple[np.ndarray, np.ndarray]:
        """(action for the env, action to store) for a batch of observations."""

    def act(self, obs: np.ndarray, global_step: int) -> np.ndarray:
        env_action, stored = self.explore(obs, global_step < self.cfg.learning_starts)
        self._pending = (obs, stored)
        return env_action

    def observe(self, step: VectorStep) -> bool:
        """Store the transition; a learning phase is due every ``train_freq`` env steps (all
        envs together: 8 envs make 8 env steps per vector step)."""
        replay: ReplayBuffer = self.replay  # type: ignore[attr-defined]
        assert self._pending is not None
        obs, stored = self._pending
        replay.add(obs, stored, step.reward, step.final_obs, step.terminated, step.truncated)
        self.on_step(step.terminated | step.truncated)
        self.env_steps = step.global_step
        self.steps_since_learn += self.env_info.num_envs
        return self.steps_since_learn >= self.cfg.train_freq

    def due_gradient_steps(self) -> int:
        """Gradient steps for the env steps stored since the last learning phase, so that the
        replay ratio is ``gradient_steps / train_freq`` per env step for any ``num_envs``
        (issue #21; with one env: ``gradient_steps`` every ``train_freq`` steps, as SB3 and the
        RL Zoo). Fractions carry over to the next phase."""
        self.owed += self.steps_since_learn * self.cfg.gradient_steps
        self.steps_since_learn = 0
        due, self.owed = divmod(self.owed, self.cfg.train_freq)
        return int(due)

    def stream_break(self) -> None:
        """The newest stored step ends its trajectory as a truncation: it still bootstraps from
        its own next observation, and no n-step return sums across the break (issue #16)."""
        replay: ReplayBuffer = self.replay  # type: ignore[attr-defined]
        replay.mark_stream_break()
        self.on_step(np.ones(self.env_info.num_envs, dtype=bool))

    def on_step(self, done: np.ndarray) -> None:
        """Hook after every vector step (e.g. to reset exploration noise of finished envs)."""

    # --- learning ------------------------------------------------------------------------
    def update(self, progress: float) -> dict[str, float]:
        replay: ReplayBuffer = self.replay  # type: ignore[attr-defined]
        self.progress = progress
        if self.env_steps < self.cfg.learning_starts or len(replay) < self.cfg.batch_size:
            # Warm-up steps owe no gradient steps (learning starts after them, as in SB3).
            self.steps_since_learn = self.owed = 0
            return {}
        if not self.cfg.anneal_lr:
            return self.learn(self.due_gradient_steps())
        lr = self.anneal(progress)
        return {**self.learn(self.due_gradient_steps()), "charts/learning_rate": lr}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The learner's optimizers (the ``stateful`` attributes that are optimizers)."""
        found = (getattr(self, name) for name in self.stateful)
        return [opt for opt in found if isinstance(opt, torch.optim.Optimizer)]

    def anneal(self, progress: float) -> float:
        """``algo.anneal_lr``: every optimizer's learning rate set to its initial value x
        (1 - progress), progress in [0, 1] being the share of the step budget used (the RL
        Zoo's ``lin_<lr>``: Stable-Baselines3 sets lr x progress_remaining before each
        training phase). The initial value is kept in each param group's ``initial_lr``, which
        checkpoints carry. Returns the scaled ``algo.learning_rate``."""
        scale = max(1.0 - progress, 0.0)
        for opt in self.optimizers():
            for group in opt.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * scale
        return self.cfg.learning_rate * scale

    @abstractmethod
    def learn(self, gradient_steps: int) -> dict[str, float]: ...

    def batch(self, idx: np.ndarray, n_step: int = 1) -> dict[str, torch.Tensor]:
        replay: ReplayBuffer = self.replay  # type: ignore[attr-defined]
        data = replay.gather(idx, n_step, self.cfg.gamma)
        return {k: torch.as_tensor(v, device=self.device) for k, v in data.items()}

    # --- checkpointing -------------------------------------------------------------------
    # Attributes with state_dict / load_state_dict (networks, targets, optimizers).
    stateful: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        # Networks and optimizers copied (their state dicts share storage with the live
        # tensors); the replay state is built from copies already.
        state = snapshot({name: getattr(self, name).state_dict() for name in self.stateful})
        state["offpolicy"] = self.replay_state()
        state.update(self.extra_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.stateful:
            # Optimizer.load_state_dict keeps the given moment tensors: give it its own.
            getattr(self, name).load_state_dict(snapshot(state[name]))
        self.load_replay_state(state["offpolicy"])
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        """Checkpointed values that are not modules or optimizers."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def replay_state(self) -> dict[str, Any]:
        replay: ReplayBuffer = self.replay  # type: ignore[attr-defined]
        bg = self.rng.bit_generator.state
        state: dict[str, Any] = {
            "rng": bg["state"]["state"],
            "rng_inc": bg["state"]["inc"],
            # PCG64 keeps the unused half of a 64-bit draw for the next 32-bit one (integers()
            # in replay sampling): without it a resume after an odd number of 32-bit draws
            # sampled other replay indices than the uninterrupted run.
            "rng_has_uint32": int(bg["has_uint32"]),
            "rng_uinteger": int(bg["uinteger"]),
            "env_steps": self.env_steps,
            "grad_steps": self.grad_steps,
            # Schedules read it while collecting, before the first update of a resumed run.
            "progress": self.progress,
            "steps_since_learn": self.steps_since_learn,
            "owed": self.owed,
        }
        if self.cfg.save_replay:
            state["replay"] = replay.state_dict()
        # Python ints beyond 64 bits do not survive weights_only loading: store as strings.
        state["rng"], state["rng_inc"] = str(state["rng"]), str(state["rng_inc"])
        return state

    def load_replay_state(self, state: dict[str, Any]) -> None:
        replay: ReplayBuffer = self.replay  # type: ignore[attr-defined]
        bg = dict(self.rng.bit_generator.state)
        bg["state"] = {"state": int(state["rng"]), "inc": int(state["rng_inc"])}
        # Checkpoints from before the buffered half was saved resume without it, as they did.
        bg["has_uint32"] = int(state.get("rng_has_uint32", 0))
        bg["uinteger"] = int(state.get("rng_uinteger", 0))
        self.rng.bit_generator.state = bg
        self.env_steps = int(state["env_steps"])
        self.grad_steps = int(state["grad_steps"])
        self.progress = float(state.get("progress", 0.0))
        self.steps_since_learn = int(state.get("steps_since_learn", 0))
        self.owed = int(state.get("owed", 0))
        if "replay" in state:
            replay.load_state_dict(state["replay"])


class ContinuousActions:
    """Continuous off-policy actors act in [-1, 1]; the env gets actions scaled to its bounds."""

    def __init__(self, space: gym.Space):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise DrlError(f"Expected a 1-D Box action space, got {space}.")
        if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
            raise DrlError(
                f"Action space {space} is unbounded; SAC/TD3/DDPG squash actions into the bounds."
            )
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        self.dim = len(self.low)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        return self.low + (a + 1.0) * 0.5 * (self.high - self.low)

    def uniform(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Warm-up actions, uniform over the box (in the [-1, 1] scale)."""
        return rng.uniform(-1.0, 1.0, size=(n, self.dim)).astype(np.float32)
