"""Env stepping, on the runner's side of the algorithm contract (issue #18; Tianshou's split).

Algorithms never see an env: the :class:`Collector` asks :meth:`Algorithm.act` for actions, steps
the training envs, and hands each vector step back through :meth:`Algorithm.observe` until the
algorithm says its next update is due. Episode statistics stay with the envs (``VecEnv``
records them; the runner drains and logs them). :func:`evaluate` plays evaluation episodes with
an algorithm's ``predict``. A3C is the exception by nature: its worker processes step envs of
their own (``drlcli.a3c``, a runner-level mode), and :func:`collect_rollout` is their rollout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch

from drlcli import interrupts
from drlcli.algos.base import Algorithm, VectorStep
from drlcli.algos.onpolicy import rollout_act, rollout_finish, rollout_observe
from drlcli.buffers import RolloutBuffer
from drlcli.envs import StepResult, VecEnv
from drlcli.networks import ActorCritic


def vector_step(
    obs: np.ndarray, result: StepResult, global_step: int, mask: np.ndarray | None = None
) -> VectorStep:
    """What an algorithm gets for one env step taken from ``obs`` (with its action ``mask``)."""
    return VectorStep(
        obs,
        result.reward,
        result.terminated,
        result.truncated,
        result.final_obs,
        result.obs,
        global_step,
        mask,
        result.final_action_mask,
    )


class Collector:
    """Steps ``env`` with ``algo``'s actions, one collection phase per :meth:`collect`.

    A phase runs ``algo.begin_collect(obs)``, then ``act`` (``act_masked`` with the env's action
    masks when it gives them, issue #19) -> ``env.step`` -> ``observe`` until
    ``observe`` returns True, then ``algo.end_collect(next_obs)``: ``begin_collect`` under
    ``torch.no_grad()``, the steps and ``end_collect`` under ``torch.inference_mode()`` (acting
    never needs gradients; see :class:`Algorithm` for what that implies). An
    algorithm of the ``asynchronous`` family (A3C) gathers through its own ``collect(env)``.

    Raises ``interrupts.Interrupted`` when a stop request outlasts its grace period in a phase
    that would not end by itself (REINFORCE waiting for whole episodes of an endless env).
    """

    def __init__(self, env: VecEnv, algo: Algorithm, asynchronous: bool = False):
        self.env = env
        self.algo = algo
        self.asynchronous = asynchronous

    def collect(self) -> None:
        """One collection phase; ``env.global_step`` advances by the env steps it took."""
        env, algo = self.env, self.algo
        if self.asynchronous:
            algo.collect(env)  # type: ignore[attr-defined]
            return
        obs = env.obs if env.obs is not None else env.reset()
        check = interrupts.check
        with torch.no_grad():
            # Normal tensors: what an algorithm resets here (gSDE exploration matrices) may be
            # loaded into in place later (a checkpoint).
            algo.begin_collect(obs)
        with torch.inference_mode():  # ~6% of PPO's collection time against no_grad
            while True:
                check()
                mask = env.action_mask
                if mask is None:
                    result = env.step(algo.act(obs, env.global_step))
                else:
                    result = env.step(algo.act_masked(obs, env.global_step, mask))
                step = vector_step(obs, result, env.global_step, mask)
                obs = result.obs
                if algo.observe(step):
                    break
            algo.end_collect(obs)


def collect_rollout(
    policy: ActorCritic, env: VecEnv, buf: RolloutBuffer, obs: np.ndarray
) -> np.ndarray:
    """Fill ``buf`` with ``buf.num_steps`` vector steps of ``policy`` from ``obs``, exactly as an
    on-policy algorithm's collection does (A3C's workers, which hold a bare network); returns
    the observation the next rollout starts from."""
    buf.final_values.zero_()
    with torch.no_grad():
        for t in range(buf.num_steps):
            result = env.step(rollout_act(policy, buf, t, obs))
            step = vector_step(obs, result, env.global_step)
            rollout_observe(policy, buf, t, step)
            obs = result.obs
        rollout_finish(policy, buf, obs)
    return obs


def evaluate(
    algo: Algorithm,
    env: VecEnv,
    episodes: int,
    deterministic: bool,
    seed: int,
    max_episode_steps: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[float]:
    """Run exactly ``episodes`` episodes (the first one of each of ``env.num_envs`` envs, in as
    many passes as needed) and return their raw returns. ``algo.predict(obs, deterministic)``
    maps a float32 batch of observations to actions; stateful policies are told when episodes
    start (``reset_predict_state``) and end (``episodes_ended``). An episode still running after
    ``max_episode_steps`` steps is cut there (its return so far counts) and ``warn`` says so: an
    env without a time limit may never end one. Raises ``interrupts.Interrupted`` when a stop
    request (SIGINT / SIGTERM) outlasts its grace period.

    Stochastic actions (``deterministic=False``, gSDE's fresh matrices) are drawn from a torch
    RNG forked and seeded with ``seed``: an evaluation never moves the training's random
    stream, so a run with periodic stochastic evaluations trains exactly as one without
    (found by a break pass: the step-8192 weights differed)."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return _evaluate(algo, env, episodes, deterministic, seed, max_episode_steps, warn)


def _evaluate(
    algo: Algorithm,
    env: VecEnv,
    episodes: int,
    deterministic: bool,
    seed: int,
    max_episode_steps: int | None,
    warn: Callable[[str], None] | None,
) -> list[float]:
    returns: list[float] = []
    cut = 0
    pass_idx = 0
    while len(returns) < episodes:
        want = min(env.num_envs, episodes - len(returns))
        obs = env.reset(seed=seed + 1000 * pass_idx)
        env.drain_episodes()
        finished = np.zeros(env.num_envs, dtype=bool)
        ep_returns = np.zeros(env.num_envs)
        algo.reset_predict_state(env.num_envs)
        t = 0
        while not finished[:want].all():
            interrupts.check()
            mask = env.action_mask
            if mask is None:
                result = env.step(algo.predict(obs, deterministic))
            else:
                result = env.step(algo.predict_masked(obs, mask, deterministic))
            t += 1
            algo.episodes_ended(result.terminated | result.truncated)
            obs = result.obs
            ep_returns += np.where(finished, 0.0, result.reward)  # raw: eval never normalizes
            finished |= result.terminated | result.truncated
            if max_episode_steps is not None and t >= max_episode_steps:
                cut += int((~finished[:want]).sum())
                break
        env.drain_episodes()
        returns.extend(float(r) for r in ep_returns[:want])
        pass_idx += 1
    if cut:
        (warn or _warn)(
            f"drl: warning: {cut} of {episodes} evaluation episodes of {env.cfg.id} were cut at "
            f"eval.max_episode_steps={max_episode_steps} steps (the env had not ended them); "
            "their returns are partial. Give the env a time limit (env.max_episode_steps) or "
            "raise eval.max_episode_steps."
        )
    return returns


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
