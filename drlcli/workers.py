"""A vector env whose sub-envs run in worker processes, several envs per worker.

gymnasium's AsyncVectorEnv runs one process per env; for cheap envs the inter-process traffic
then costs more than the env. Here ``num_workers`` processes each step a slice of the envs in a
loop and write observations straight into one shared-memory array, so a step is one small
message per worker each way, whatever the number of envs.

Same contract as a gymnasium vector env in ``SAME_STEP`` autoreset mode (what VecEnv wraps):
``reset(seed)`` seeds env i with seed + i, and ``step`` returns the reset observation where an
episode ended with the true last one in ``info["final_obs"]``. A worker whose env raises sends
the env index and the exception back; a worker that dies is noticed by polling, not waited on
forever. Both surface as a DrlError naming the env.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np

from drlcli import interrupts
from drlcli.errors import DrlError

_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_CLOSE_WAIT_S = 5.0  # how long close() waits for all workers together before killing them


def ignore_interrupts() -> None:
    """In a child process (env worker, A3C learner): ignore SIGINT and SIGTERM.

    SLURM, ``timeout``, job runners and a terminal's Ctrl-C signal the whole process group, not
    only the main pid (issue #16). A worker that died on the signal took the envs away before the
    parent could write its preemption checkpoint. The parent alone decides: it checkpoints, then
    closes its workers (killing one that does not answer), and a worker whose parent is gone
    sees its pipe close and exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this child process when its parent dies (prctl
    PR_SET_PDEATHSIG). A worker whose parent is gone notices its closed pipe only between env
    calls: one stuck in an env that hangs stayed alive, orphaned, after the training process was
    SIGKILLed (the OOM killer, ``timeout -k``), and it ignores SIGTERM. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = mp.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the prctl
        os._exit(1)


def _worker(
    conn: Connection,
    make_env: Callable[[], gym.Env],
    first: int,
    count: int,
    shm: Any,
    obs_shape: tuple[int, ...],
    num_envs: int,
) -> None:
    ignore_interrupts()
    envs: list[gym.Env] = []
    current = first
    try:
        for i in range(count):
            current = first + i
            envs.append(make_env())
        obs_all = np.frombuffer(shm.get_obj(), dtype=np.float32).reshape(num_envs, *obs_shape)
        mine = obs_all[first : first + count]
        while True:
            cmd, data = conn.recv()
            if cmd == "reset":
                lives = np.zeros(count)
                for i, env in enumerate(envs):
                    current = first + i
                    obs, info = env.reset(seed=None if data is None else data + current)
                    mine[i] = obs
                    lives[i] = info.get("lives", 0)
                conn.send(("ok", lives))
            elif cmd == "step":
                rewards = np.zeros(count, dtype=np.float64)
                term = np.zeros(count, dtype=bool)
                trunc = np.zeros(count, dtype=bool)
                finals: dict[int, np.ndarray] = {}
                lives = np.zeros(count)
                for i, env in enumerate(envs):
                    current = first + i
                    obs, r, te, tr, info = env.step(data[i])
                    rewards[i], term[i], trunc[i] = r, te, tr
                    if te or tr:
                        finals[i] = np.asarray(obs, dtype=np.float32)
                        obs, info = env.reset()
                    mine[i] = obs
                    lives[i] = info.get("lives", 0)
                conn.send(("ok", (rewards, term, trunc, finals, lives)))
            elif cmd == "close":
                break
    except KeyboardInterrupt:
        pass
    except BaseException as exc:  # report, then exit: the parent turns it into a DrlError
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("error", (current, f"{type(exc).__name__}: {exc}", traceback.format_exc())))
    finally:
        for env in envs:
            with contextlib.suppress(Exception):
                env.close()
        conn.close()


class WorkerVecEnv:
    """``num_envs`` envs spread over ``num_workers`` processes (contiguous slices)."""

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        num_envs: int,
        num_workers: int,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str = "env",
    ):
        if not 1 <= num_workers <= num_envs:
            raise DrlError(
                f"hardware.num_workers={num_workers} must be between 1 and env.num_envs="
                f"{num_envs} (each worker steps at least one env)."
            )
        self.num_envs = num_envs
        self.num_workers = num_workers
        self.env_id = env_id
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.obs_shape = tuple(observation_space.shape or ())
        size = int(np.prod(self.obs_shape, dtype=np.int64)) * num_envs
        ctx: Any = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self._shm = ctx.Array("f", max(size, 1))
        flat = np.frombuffer(self._shm.get_obj(), dtype=np.float32)
        self._obs = flat[:size].reshape(num_envs, *self.obs_shape)
        base, extra = divmod(num_envs, num_workers)
        self.slices: list[tuple[int, int]] = []
        start = 0
        for w in range(num_workers):
            count = base + (1 if w < extra else 0)
            self.slices.append((start, count))
            start += count
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._closed = False
        self._cut = False  # a wait on a worker was cut by a stop request
        for first, count in self.slices:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker,
                args=(child, make_env, first, count, self._shm, self.obs_shape, num_envs),
                daemon=True,
                name=f"drl-env-worker-{first}",
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    # --- messaging ---------------------------------------------------------------------
    def _died(self, w: int) -> DrlError:
        proc = self._procs[w]
        proc.join(timeout=2)
        first, count = self.slices[w]
        self.close()
        return DrlError(
            f"Env worker {w} (envs {first}-{first + count - 1} of {self.env_id}) died with exit "
            f"code {proc.exitcode} without reporting an error (killed, out of memory, or a crash "
            "in native code). Try hardware=cpu to run the envs in this process and see the "
            "failure directly."
        )

    def _send(self, w: int, message: Any) -> None:
        try:
            self._conns[w].send(message)
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise self._died(w) from exc

    def _receive(self, w: int) -> Any:
        conn, proc = self._conns[w], self._procs[w]
        while not conn.poll(_POLL_S):
            if not proc.is_alive():
                raise self._died(w)
            try:
                interrupts.check()  # an env that hangs must not outlast a SIGTERM
            except interrupts.Interrupted:
                self._cut = True  # the worker is stuck mid-call: close() kills, not waits
                raise
        try:
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError) as exc:
            raise self._died(w) from exc
        if status == "error":
            index, message, trace = payload
            self.close()
            raise DrlError(
                f"Env {index} of {self.env_id} raised in worker {w}: {message}. The worker's "
                f"traceback:\n{trace.rstrip()}"
            )
        return payload

    def _broadcast(self, cmd: str, data: Any) -> list[Any]:
        if self._closed:
            raise DrlError("This worker vector env is closed.")
        for w in range(self.num_workers):
            self._send(w, (cmd, data))
        return [self._receive(w) for w in range(self.num_workers)]

    # --- gymnasium vector API (SAME_STEP autoreset) --------------------------------------
    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        lives = np.concatenate(self._broadcast("reset", seed))
        return self._obs.copy(), {"lives": lives}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._closed:
            raise DrlError("This worker vector env is closed.")
        for w, (first, count) in enumerate(self.slices):
            self._send(w, ("step", actions[first : first + count]))
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        term = np.zeros(self.num_envs, dtype=bool)
        trunc = np.zeros(self.num_envs, dtype=bool)
        final_obs: list[Any] = [None] * self.num_envs
        lives = np.zeros(self.num_envs)
        for w, (first, count) in enumerate(self.slices):
            r, te, tr, finals, lives[first : first + count] = self._receive(w)
            rewards[first : first + count] = r
            term[first : first + count] = te
            trunc[first : first + count] = tr
            for i, obs in finals.items():
                final_obs[first + i] = obs
        info: dict[str, Any] = {"lives": lives}
        if (term | trunc).any():
            info["final_obs"] = final_obs
        return self._obs.copy(), rewards, term, trunc, info

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn, proc in zip(self._conns, self._procs):
            try:
                if proc.is_alive():
                    conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        # One deadline for all workers (waiting 5 s for each in turn held a stopped run with
        # 16 hung workers for 80 s); none when a wait on them was cut by a stop request.
        deadline = time.monotonic() + (0.0 if self._cut else _CLOSE_WAIT_S)
        for proc in self._procs:
            proc.join(timeout=max(deadline - time.monotonic(), 0.0))
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()  # SIGTERM is ignored in workers (ignore_interrupts)
        for proc in self._procs:
            proc.join(timeout=1)
        for conn in self._conns:
            conn.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
