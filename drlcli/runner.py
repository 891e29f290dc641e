"""Build everything from the typed config and run the training loop.

collect -> update -> log -> (eval) -> (checkpoint), until ``total_timesteps`` env steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from drlcli import checkpoint as ckpt
from drlcli import hardware, interrupts, networks, registry
from drlcli.algos.base import Algorithm, EnvInfo
from drlcli.collector import Collector, evaluate
from drlcli.config import LOG_PROGRESS, ON_ERROR, TrainConfig
from drlcli.envs import VecEnv, eval_env_config
from drlcli.errors import DrlError
from drlcli.interrupts import Interrupted
from drlcli.logger import Logger, flatten
from drlcli.results import FINISHED, read_result, record_result
from drlcli.returns import budget_progress
from drlcli.spaces import has_images

MAX_EVAL_ENVS = 16


@dataclass
class RunResult:
    """What a run reports (result.json, the summary table, a sweep's objective)."""

    run_dir: str
    status: str  # finished | solved | pruned | interrupted
    global_step: int
    eval_mean_return: float
    eval_std_return: float
    wall_time_s: float  # the training loop plus final evaluation and checkpoint
    train_time_s: float  # the training loop alone (collect, update, logging, periodic eval)
    sps: float  # env steps per second of the training loop
    solved_at_step: int | None = None
    interrupted_by: str | None = None  # SIGINT / SIGTERM when status is "interrupted"


@dataclass
class RunHooks:
    """What a caller (the CLI, `drl tune`) adds to a run without changing what it learns.

    ``algo_label`` / ``env_label``: the config choices (``ppo_gru``, ``cartpole_masked``) named
    in the start line beside ``algo.name`` and ``env.id``. ``notes``: lines printed after the
    start line (the tuned set applied and the values it changed).
    ``on_eval(step, mean_return)``: called after every periodic evaluation (not the final one);
    returning a reason string stops the run with status "pruned" (an Optuna pruner's verdict).
    ``after_interrupt``: what to print after a signal stopped the run, instead of the
    ``drl train resume=RUN_DIR`` command (a `drl tune` trial has no Hydra config to resume).
    """

    algo_label: str | None = None
    env_label: str | None = None
    notes: list[str] | None = None
    on_eval: Callable[[int, float], str | None] | None = None
    after_interrupt: str | None = None


def rollout_rounding(cfg: TrainConfig) -> tuple[int, int] | None:
    """(steps per update, steps actually run) when ``total_timesteps`` is not a whole number of
    fixed-size rollouts (PPO, A2C, AC, TRPO collect ``algo.num_steps x env.num_envs`` env steps
    per update and the loop finishes the rollout it started); None when it divides evenly or
    the algorithm's collection size varies (REINFORCE's whole episodes, A3C's learners)."""
    num_steps = getattr(cfg.algo, "num_steps", None)
    if num_steps is None or cfg.algo.name in ("reinforce", "a3c"):
        return None
    per_update = int(num_steps) * cfg.env.num_envs
    if per_update <= 0 or cfg.total_timesteps % per_update == 0:
        return None
    return per_update, math.ceil(cfg.total_timesteps / per_update) * per_update


def learning_batch(cfg: TrainConfig) -> int:
    """Samples in one gradient step's batch: the replay batch (off-policy), PPO's minibatch,
    else the whole rollout of ``num_steps x num_envs`` (A2C, TRPO's policy step, REINFORCE)."""
    algo: Any = cfg.algo
    for key in ("batch_size", "minibatch_size"):
        if isinstance(getattr(algo, key, None), int):
            return int(getattr(algo, key))
    return int(getattr(algo, "num_steps", 1)) * cfg.env.num_envs


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks that the schema types cannot express; fail before any work."""
    problems = []
    if cfg.total_timesteps < 1:
        problems.append(f"total_timesteps must be >= 1 (got {cfg.total_timesteps})")
    if cfg.env.num_envs < 1:
        problems.append(f"env.num_envs must be >= 1 (got {cfg.env.num_envs})")
    if cfg.env.max_episode_steps is not None and cfg.env.max_episode_steps < 1:
        problems.append(
            f"env.max_episode_steps must be >= 1 or null for the env's registered time limit "
            f"(got {cfg.env.max_episode_steps})"
        )
    if cfg.eval.episodes < 1:
        problems.append(f"eval.episodes must be >= 1 (got {cfg.eval.episodes})")
    if cfg.eval.every < 0 or cfg.checkpoint.every < 0:
        problems.append("eval.every and checkpoint.every must be >= 0 (0 = only at the end)")
    if cfg.eval.max_episode_steps < 1:
        problems.append(f"eval.max_episode_steps must be >= 1 (got {cfg.eval.max_episode_steps})")
    if cfg.checkpoint.stop_grace_s < 0:
        problems.append(f"checkpoint.stop_grace_s must be >= 0 (got {cfg.checkpoint.stop_grace_s})")
    if cfg.eval.early_stop and cfg.eval.target_return is None and cfg.env.solved_return is None:
        problems.append(
            "eval.early_stop=true needs a threshold: set eval.target_return or env.solved_return"
        )
    learning_starts = getattr(cfg.algo, "learning_starts", None)
    if learning_starts is not None and learning_starts >= cfg.total_timesteps:
        problems.append(
            f"algo.learning_starts={learning_starts:,} >= total_timesteps="
            f"{cfg.total_timesteps:,}: the whole budget would be random warm-up steps and "
            "nothing would be learned; raise total_timesteps or lower algo.learning_starts"
        )
    if cfg.on_error not in ON_ERROR:
        problems.append(f"on_error must be continue or stop (got {cfg.on_error})")
    if cfg.log.progress not in LOG_PROGRESS:
        problems.append(f"log.progress must be auto, rich, plain or none (got {cfg.log.progress})")
    if cfg.hardware.compile != "none":
        compilable = sorted(n for n, s in registry.specs().items() if s.compilable)
        if cfg.algo.name not in compilable:
            problems.append(
                f"hardware.compile={cfg.hardware.compile}: {cfg.algo.name} has no compiled "
                f"learner; it is available for {', '.join(compilable)} (or hardware.compile=none)"
            )
        elif getattr(cfg.algo, "recurrent", False):
            problems.append(
                f"hardware.compile={cfg.hardware.compile}: recurrent PPO has no compiled learner "
                "(its minibatches are sequences of varying layout); use hardware.compile=none"
            )
    if problems:
        raise DrlError("Invalid settings: " + "; ".join(problems) + ".")


class _Interrupt:
    """First SIGINT/SIGTERM asks the loop to stop after the current iteration (checkpoint and
    flush); loops that do not end by themselves within ``grace_s`` (or on a second signal) are
    cut through :mod:`drlcli.interrupts`, then the checkpoint is written; a third SIGINT exits
    at once, without one (for code that never reaches a check: an env hanging in this
    process). A second Ctrl-C used to exit at once: with an env worker hanging it left no
    checkpoint and a traceback, where a second SIGTERM wrote the checkpoint."""

    def __init__(self, grace_s: float = 10.0) -> None:
        self.signal: str | None = None
        self._count = 0  # signals received
        self._old: dict[int, Any] = {}
        self._grace_s = grace_s

    def __enter__(self) -> _Interrupt:
        interrupts.arm(self._grace_s)
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self._count += 1
        if self._count >= 3 and signum == signal.SIGINT:
            raise KeyboardInterrupt  # drlcli.cli.main says what it means, without a traceback
        if self.signal is None:
            self.signal = signal.Signals(signum).name
        interrupts.request()

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        interrupts.clear()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def env_info_of(env: VecEnv) -> EnvInfo:
    """The spaces and env count an algorithm is built for (it never gets the env itself)."""
    return EnvInfo(
        env.single_observation_space,
        env.single_action_space,
        env.num_envs,
        action_masks=env.mask_source is not None,
    )


def build_envs(
    cfg: TrainConfig, vectorization: str, num_workers: int = 0, num_envs: int | None = None
) -> tuple[VecEnv, VecEnv]:
    """The training envs (``num_envs``, default ``env.num_envs``) and the evaluation envs (one
    per eval episode, at most MAX_EVAL_ENVS; raw rewards, seeds apart from training's)."""
    gamma = float(getattr(cfg.algo, "gamma", 0.99))
    env = VecEnv(
        cfg.env,
        cfg.env.num_envs if num_envs is None else num_envs,
        cfg.seed,
        vectorization,
        gamma,
        training=True,
        num_workers=num_workers,
    )
    n_eval = min(cfg.eval.episodes, MAX_EVAL_ENVS)
    eval_env = VecEnv(
        eval_env_config(cfg.env), n_eval, cfg.seed + 10_000, "sync", gamma, training=False
    )
    return env, eval_env


def run_evaluation(
    algo: Algorithm, env: VecEnv, eval_env: VecEnv, cfg: TrainConfig, warn: Any = None
) -> list[float]:
    """``eval.episodes`` raw episode returns of ``algo`` on ``eval_env``, with the training
    env's observation statistics frozen into it (collector.evaluate)."""
    eval_env.sync_normalization_from(env)
    return evaluate(
        algo,
        eval_env,
        cfg.eval.episodes,
        cfg.eval.deterministic,
        cfg.seed + 10_000,
        cfg.eval.max_episode_steps,
        warn,
    )


def save_run_files(
    cfg: TrainConfig, run_dir: Path, command: str, resolved: Any, resumed_from: int | None
) -> None:
    """config.yaml, command.txt and run_info.json (a resume appends to the last two)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    info_path = run_dir / "run_info.json"
    if resumed_from is not None and info_path.is_file():
        info = json.loads(info_path.read_text())
        info.setdefault("resumes", []).append(
            {
                "command": command,
                "from_step": resumed_from,
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                # Hardware may change on resume: what this segment resolved to.
                "hardware": asdict(resolved),
            }
        )
        with (run_dir / "command.txt").open("a") as f:
            f.write(command + "\n")
    else:
        info = {
            "command": command,
            "seed": cfg.seed,
            "eval_seed": cfg.seed + 10_000,
            "hardware": asdict(resolved),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (run_dir / "command.txt").write_text(command + "\n")
    info_path.write_text(json.dumps(info, indent=2) + "\n")


# Settings that may differ between a checkpoint and the run that resumes it.
RESUME_MAY_CHANGE = ("total_timesteps", "resume", "eval.", "checkpoint.", "log.", "hardware.")


_NO_DEFAULT = object()


def field_default(cfg: Any, dotted: str) -> Any:
    """The dataclass default of the setting ``dotted`` (e.g. "algo.anneal_lr") in ``cfg``'s
    config classes, or a sentinel equal to nothing when it has none."""
    *path, name = dotted.split(".")
    obj = cfg
    for part in path:
        obj = getattr(obj, part, None)
    if obj is None or not dataclasses.is_dataclass(obj):
        return _NO_DEFAULT
    for f in dataclasses.fields(obj):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return _NO_DEFAULT


def check_resume_config(cfg: TrainConfig, state: dict[str, Any], run_dir: Path) -> None:
    """Raises DrlError when ``cfg`` differs from the config saved in checkpoint ``state`` in
    anything but RESUME_MAY_CHANGE. A different algorithm or env is named first (the full list
    of its settings' differences ran to ~35 entries); other differences are listed, at most 12.
    `drl train` calls this before Hydra writes into the run directory (a refused resume used to
    rewrite the run's .hydra/overrides.yaml and result.json: found by a break pass), and the
    job again for ``resume=auto``."""
    saved = flatten(state["config"])
    now = flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
    changed_keys = [
        k
        for k in sorted(set(saved) | set(now))
        if saved.get(k) != now.get(k)
        and not k.startswith(RESUME_MAY_CHANGE)
        # A setting added since the checkpoint was written, left at its default: new
        # settings default to the behaviour before them (e.g. algo.anneal_lr for SAC).
        and not (k not in saved and now.get(k) == field_default(cfg, k))
    ]
    if not changed_keys:
        return
    changed = [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed_keys]
    identity = [
        f"{label} {saved.get(key)} -> {now.get(key)}"
        for key, label in (("algo.name", "algo"), ("env.id", "env"))
        if key in changed_keys
    ]
    if identity:
        raise DrlError(
            f"Cannot resume {run_dir}: it trained {saved.get('algo.name')} on "
            f"{saved.get('env.id')} and this command asks for {', '.join(identity)} "
            f"({len(changed)} settings differ in all). A run continues with the algorithm and "
            "env it started with; to train another, start a new run (without resume=)."
        )
    shown = "; ".join(changed[:12]) + (
        f"; and {len(changed) - 12} more" if len(changed) > 12 else ""
    )
    raise DrlError(
        f"Cannot resume {run_dir}: the config differs from the checkpoint's in {shown}. Only "
        f"{', '.join(RESUME_MAY_CHANGE)} may change on resume; start a new run for other changes."
    )


def load_resume_state(cfg: TrainConfig, run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None for a fresh start (``resume=auto`` and no
    checkpoint yet). Fails when the saved config differs in anything that shapes learning."""
    if cfg.resume is None:
        return None
    ckpt_dir = run_dir / "checkpoints"
    if cfg.resume != "auto" and Path(cfg.resume).resolve() != run_dir.resolve():
        raise DrlError(
            f"resume={cfg.resume} but this run writes to {run_dir}; resume a run with "
            "`drl train resume=RUN_DIR`, which reuses the run's own directory."
        )
    ckpt.remove_partial_writes(ckpt_dir)
    if cfg.resume == "auto" and not ckpt.list_checkpoints(ckpt_dir):
        return None
    state = ckpt.latest_loadable(ckpt_dir)
    check_resume_config(cfg, state, run_dir)
    return state


def train(
    cfg: TrainConfig, run_dir: Path | str, command: str = "", hooks: RunHooks | None = None
) -> RunResult:
    """Train ``cfg.algo`` on ``cfg.env`` for ``cfg.total_timesteps`` env steps (all envs
    together; on-policy methods round up to whole rollouts), writing TensorBoard events,
    checkpoints, result.json and the run files into ``run_dir``.

    ``cfg.resume`` continues from the run's latest loadable checkpoint. SIGINT/SIGTERM stop the
    run after the current iteration with a checkpoint (status "interrupted"). Raises DrlError
    for settings that cannot work, an incompatible env, a config that differs from the
    checkpoint's, or divergence (non-finite parameters; the bad state is not saved).
    ``hooks`` (:class:`RunHooks`) adds start-line labels and an evaluation callback (pruning).
    """
    validate(cfg)
    run_dir = Path(run_dir)
    resume_state = load_resume_state(cfg, run_dir)
    onednn_before = networks.onednn_linear_enabled()
    device, resolved = hardware.setup(cfg.hardware, cfg.seed, cfg.env.num_envs)
    try:
        return _train_on(cfg, run_dir, command, hooks, resume_state, device, resolved)
    finally:  # hardware.cpu_linear is this run's: later code in the process gets what it had
        networks.set_onednn_linear(onednn_before)


def _train_on(
    cfg: TrainConfig,
    run_dir: Path,
    command: str,
    hooks: RunHooks | None,
    resume_state: dict[str, Any] | None,
    device: torch.device,
    resolved: Any,
) -> RunResult:
    # A3C's workers step envs of their own: the runner's env only gives spaces and counts.
    asynchronous = registry.spec(cfg.algo.name).family == "asynchronous"
    env, eval_env = build_envs(
        cfg, resolved.vectorization, resolved.num_workers, 1 if asynchronous else None
    )
    algo: Algorithm | None = None
    try:
        algo = registry.build(cfg.algo, env_info_of(env), device)
        # A3C's learners are processes of their own: the runner's process does not learn.
        work = 0 if asynchronous else hardware.learner_work(algo.modules(), learning_batch(cfg))
        hardware.choose_threads(
            cfg.hardware, resolved, has_images(env.single_observation_space), work
        )
        if cfg.hardware.compile != "none":
            algo.compile_learner(cfg.hardware.compile)
            resolved.notes.append(
                f"hardware.compile={cfg.hardware.compile}: the learner's loss functions are "
                "compiled at their first call (expect a pause at the first update)"
            )
        algo.set_budget(cfg.total_timesteps)
        collector = Collector(env, algo, asynchronous)
        return _train_loop(
            cfg, run_dir, command, algo, collector, eval_env, resolved, resume_state, hooks
        )
    finally:
        if algo is not None:
            algo.close()
        env.close()
        eval_env.close()


def _restore(
    cfg: TrainConfig, state: dict[str, Any], algo: Algorithm, env: VecEnv, logger_line: Any
) -> dict[str, float]:
    """Put a checkpoint's state back: learner, env statistics and episodes, RNGs, schedules."""
    algo.load_state_dict(state["algo"])
    env.load_state_dict(state["env"])
    snap = ckpt.env_snapshot_path(Path(state["_path"]))
    restored = False
    if snap.is_file() and cfg.hardware.vectorization == "sync":
        try:
            env.restore(snap.read_bytes())
            restored = True
        except Exception as exc:  # stale or foreign snapshot: start new episodes instead
            logger_line(f"drl: env snapshot not restored ({type(exc).__name__}: {exc})")
    if not restored:
        # New episodes, from seeds no earlier segment of this run used.
        env.reset(seed=cfg.seed + 7919 * (1 + int(state["step"]) // max(env.num_envs, 1)))
        algo.stream_break()
    ckpt.set_rng_state(state["rng"])
    schedule = _continue_schedules(
        dict(state["schedule"]),
        int(state["step"]),
        int(state["config"]["total_timesteps"]),
        cfg.total_timesteps,
    )
    logger_line(
        f"drl: resumed from {state['_path']} at step {state['step']}"
        + ("" if restored else " (episodes restarted: no env snapshot)")
        + (
            f"; schedules continue from {schedule['progress0']:.1%} of their course over the "
            f"new budget of {cfg.total_timesteps:,} steps"
            if schedule.get("progress_step0") == state["step"]
            else ""
        )
    )
    return schedule


def _anchor(schedule: dict[str, float]) -> tuple[float, float]:
    return schedule.get("progress_step0", 0.0), schedule.get("progress0", 0.0)


def _continue_schedules(
    schedule: dict[str, float], step: int, saved_budget: int, total_timesteps: int
) -> dict[str, float]:
    """On resume: re-anchor the progress mapping when the budget changed (returns.budget_progress;
    the anchor is kept in the checkpoint's schedule as ``progress_step0`` / ``progress0``). An
    unchanged budget keeps the mapping: the run stays bit-identical to an uninterrupted one."""
    budget = int(schedule.get("budget", saved_budget))
    if budget != total_timesteps and step < total_timesteps:
        p0 = budget_progress(step, budget, *_anchor(schedule))
        if step >= budget:
            # A finished run's clock stands at 1 (learning rate 0, say): continue from the
            # progress its last update used, which still trained.
            p0 = schedule.get("last_progress", p0)
        schedule = {**schedule, "progress_step0": float(step), "progress0": p0}
    schedule["budget"] = float(total_timesteps)
    return schedule


def _payload(
    cfg: TrainConfig, algo: Algorithm, env: VecEnv, schedule: dict[str, float], episodes: int
) -> dict[str, Any]:
    return {
        # Training episodes finished so far, so a resumed run's summary counts the whole run
        # (it counted only the episodes since the resume).
        "episodes": episodes,
        "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
        "algo_name": cfg.algo.name,
        "algo": algo.state_dict(),
        "env": env.state_dict(),
        "rng": ckpt.rng_state(),
        "schedule": schedule,
    }


def write_result(run_dir: Path, result: RunResult, resumed: bool, already_done: bool) -> None:
    """Write ``result.json`` without losing an earlier segment's figures (issue #16).

    A resumed run keeps every earlier segment's result under ``segments`` (oldest first); the
    top level is the latest segment. A requeued job whose run had already finished leaves the
    file as it is: re-evaluating it is no new training, and its SPS and wall time would be 0.
    """
    previous = read_result(run_dir) if resumed else None
    if already_done and previous is not None:
        return
    record_result(run_dir, asdict(result), previous)


def _train_loop(
    cfg: TrainConfig,
    run_dir: Path,
    command: str,
    algo: Algorithm,
    collector: Collector,
    eval_env: VecEnv,
    resolved: Any,
    resume_state: dict[str, Any] | None = None,
    hooks: RunHooks | None = None,
) -> RunResult:
    """collect -> update -> log -> (eval) -> (checkpoint) until the budget is spent, a target is
    reached or a signal asks to stop; then checkpoint, evaluate and report (see TrainingRun)."""
    run = TrainingRun(
        cfg, run_dir, command, algo, collector, eval_env, resolved, resume_state, hooks
    )
    with _Interrupt(cfg.checkpoint.stop_grace_s) as interrupt:
        try:
            run.start()
            while run.env.global_step < cfg.total_timesteps and run.iterate():
                if interrupt.signal is not None:
                    run.status = "interrupted"
                    break
        except BaseException as exc:  # a third Ctrl-C is no failure
            run.logger.close(status="failed" if isinstance(exc, Exception) else None)
            raise
        run.wind_down()
    return run.report(interrupt.signal)


class TrainingRun:
    """One training run's loop state and its named steps (split from one 200-line loop, #18).

    ``start`` restores a checkpoint or logs hyperparameters and says what was chosen;
    ``iterate`` is one collect + update + bookkeeping round (False: stop); ``wind_down``
    checkpoints and runs the final evaluation; ``report`` writes result.json and the summary.
    Divergence is detected from values (non-finite parameters or losses), never from an
    exception's text.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        command: str,
        algo: Algorithm,
        collector: Collector,
        eval_env: VecEnv,
        resolved: Any,
        resume_state: dict[str, Any] | None,
        hooks: RunHooks | None = None,
    ):
        self.cfg, self.run_dir, self.command = cfg, run_dir, command
        self.hooks = hooks or RunHooks()
        self.algo, self.collector, self.env, self.eval_env = (
            algo,
            collector,
            collector.env,
            eval_env,
        )
        self.resolved, self.resume_state = resolved, resume_state
        self.start_step = int(resume_state["step"]) if resume_state else 0
        # The budget was spent before: evaluate and report. When the run had also finished
        # (a requeued job), log nothing new and keep its result.json. When it had not (a signal
        # during the final evaluation left it "interrupted"), this evaluation is its final one:
        # logged and written like any (found by a break pass: the run stayed "interrupted").
        self.eval_only = resume_state is not None and self.start_step >= cfg.total_timesteps
        self.already_done = (
            self.eval_only and (read_result(run_dir) or {}).get("status") in FINISHED
        )
        self.ckpt_dir = run_dir / "checkpoints"
        save_run_files(cfg, run_dir, command, resolved, self.start_step if resume_state else None)
        self.rounding = rollout_rounding(cfg)
        self.logger = Logger(
            run_dir,
            # The steps the run will take: "step 16384/3000" read as a bug (a break pass).
            self.rounding[1] if self.rounding else cfg.total_timesteps,
            cfg.log.tensorboard and not self.already_done,
            cfg.log.progress,
            cfg.log.console_every_s,
            title=f"{cfg.algo.name} {cfg.env.id} s{cfg.seed}",
            start_step=self.start_step,
            # TensorBoard drops events past the checkpoint that a killed process had logged
            # (all of them when a requeued `resume=auto` job starts over before its first
            # checkpoint).
            purge_step=(
                self.start_step + 1
                if resume_state
                else (0 if any(run_dir.glob("events.out.tfevents.*")) else None)
            ),
        )
        if resume_state:  # checkpoints before the count was saved start it at 0
            self.logger.episodes = int(resume_state.get("episodes", 0))
        inf = math.inf
        self.schedule: dict[str, float] = {
            "next_eval": cfg.eval.every if cfg.eval.every > 0 else inf,
            "next_ckpt": cfg.checkpoint.every if cfg.checkpoint.every > 0 else inf,
            "next_log": 0,
            "budget": float(cfg.total_timesteps),
        }
        self.target = (
            cfg.eval.target_return if cfg.eval.target_return is not None else cfg.env.solved_return
        )
        self.status = "finished"  # finished | solved | pruned | interrupted
        self.solved_at: int | None = None
        self.eval_returns: list[float] = []
        self.last_eval_step = -1
        self.last_sps_step = -1
        self.t0 = time.perf_counter()
        self.train_time = 0.0
        # Automatic threads for a large learner follow the other load on the cores (#15).
        # (Env worker processes and EnvPool's threads are this run's own load, but need cores.)
        self.governor = (
            hardware.ThreadGovernor(resolved.torch_threads, resolved.num_workers)
            if resolved.adaptive_threads
            else None
        )

    # --- start -------------------------------------------------------------------------------
    def start(self) -> None:
        cfg, logger, resolved, env = self.cfg, self.logger, self.resolved, self.env
        if self.resume_state:
            self.schedule = _restore(cfg, self.resume_state, self.algo, env, logger.line)
            self.algo.set_budget(cfg.total_timesteps, *_anchor(self.schedule))
            if self.eval_only:
                logger.line(
                    f"drl: this run already reached step {self.start_step} (total_timesteps="
                    f"{cfg.total_timesteps}); evaluating only"
                    + ("" if self.already_done else " (its final evaluation had not finished)")
                    + ". Pass a larger total_timesteps to go on."
                )
        else:
            params = flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
            params["hardware.resolved_device"] = resolved.device
            params["hardware.resolved_threads"] = resolved.torch_threads
            params["hardware.resolved_workers"] = resolved.num_workers
            logger.hparams(params)
        for note in resolved.notes:
            logger.line(f"drl: {note}")
        workers = (
            f", {resolved.num_workers} env worker process(es) x <= {resolved.envs_per_worker} envs"
            if resolved.num_workers
            else ""
        )
        if resolved.vectorization == "envpool":
            workers = f", EnvPool on {resolved.num_workers} thread(s)"
        threads = str(resolved.torch_threads)
        if resolved.adaptive_threads:
            threads = f"1-{resolved.torch_threads}"
        envs = f"{cfg.env.num_envs} envs"
        if self.collector.asynchronous:  # A3C: the workers' envs, not env.num_envs
            algo_cfg: Any = cfg.algo
            envs = f"{algo_cfg.num_workers} learner processes x {algo_cfg.envs_per_worker} envs"
        hooks = self.hooks
        algo_s = cfg.algo.name
        if hooks.algo_label and hooks.algo_label != cfg.algo.name:
            algo_s = f"{hooks.algo_label} ({cfg.algo.name})"
        env_s = cfg.env.id
        if hooks.env_label:
            env_s = f"{cfg.env.id} (env={hooks.env_label})"
        logger.line(
            f"drl: training {algo_s} on {env_s} ({envs}, seed "
            f"{cfg.seed}) on {resolved.device} with {threads} thread(s){workers} "
            f"-> {self.run_dir}"
        )
        for note in hooks.notes or []:
            logger.line(note)
        if self.rounding and not self.eval_only:
            per_update, runs = self.rounding
            rollout_cfg: Any = cfg.algo
            logger.line(
                f"drl: total_timesteps={cfg.total_timesteps} rounds up to {runs} env steps: each "
                f"update takes a whole rollout of algo.num_steps x env.num_envs = "
                f"{rollout_cfg.num_steps} x {cfg.env.num_envs} = {per_update} steps"
            )
        for line in getattr(self.algo, "summary_lines", list)():
            logger.line(line)
        if not env.has_time_limit:
            logger.line(
                f"drl: warning: {cfg.env.id} has no time limit (no max_episode_steps registered, "
                "env.max_episode_steps unset): if its episodes can go on forever, no episode is "
                "logged, algorithms that learn from whole episodes (reinforce) learn nothing, and "
                "evaluation episodes are cut at "
                f"eval.max_episode_steps={cfg.eval.max_episode_steps}. "
                "Set env.max_episode_steps=N."
            )
        self.t0 = time.perf_counter()

    # --- one iteration -----------------------------------------------------------------------
    def iterate(self) -> bool:
        """One collect + update round and its bookkeeping; False when the loop must stop."""
        metrics = self.learn()
        if metrics is None:
            return False
        if self.governor is not None:
            self.governor.tick()
        step = self.env.global_step
        self.check_losses(step, metrics)
        for ep in self.env.drain_episodes():
            self.logger.episode(ep.ret, ep.length, ep.step)
        if step >= self.schedule["next_log"]:
            self.log(step, metrics)
        if step >= self.schedule["next_eval"] and not self.periodic_evaluation(step):
            return False
        if step >= self.schedule["next_ckpt"]:
            # Advanced before the save, which stores the schedule: a run resumed from this
            # checkpoint must not take it as due again.
            self.schedule["next_ckpt"] = step + self.cfg.checkpoint.every
            self.save(step)
        self.logger.progress(step)
        return True

    def learn(self) -> dict[str, float] | None:
        """Collect, then update; the update's metrics, or None when a loop that would not end
        gave up on a stop request (then the run checkpoints what it has)."""
        cfg, algo, schedule = self.cfg, self.algo, self.schedule
        progress = budget_progress(self.env.global_step, cfg.total_timesteps, *_anchor(schedule))
        try:
            self.collector.collect()
            metrics = algo.update(progress)
            schedule["last_progress"] = algo.schedule_progress(progress)
        except Interrupted:
            self.status = "interrupted"
            return None
        except (RuntimeError, ValueError) as exc:
            # NaN parameters make sampling and distributions raise; anything else is not
            # divergence (NaN inputs from the env are stopped in VecEnv.step).
            bad_param = algo.check_finite()
            if bad_param:
                raise self.diverged(self.env.global_step, f"parameter {bad_param}") from exc
            raise
        return metrics

    def check_losses(self, step: int, metrics: dict[str, float]) -> None:
        """Only what reached the parameters is divergence: a NaN diagnostic (the explained
        variance of one sample or of constant returns) is logged as it is."""
        bad = [k for k, v in metrics.items() if k.startswith("losses/") and not math.isfinite(v)]
        bad_param = self.algo.check_finite() if bad else None
        if bad_param:
            losses = ", ".join(f"{k}={metrics[k]}" for k in bad)
            raise self.diverged(step, f"parameter {bad_param} (losses: {losses})")

    def check_params(self, step: int) -> None:
        # A full parameter scan: on each log dump and before every save, not every iteration.
        bad_param = self.algo.check_finite()
        if bad_param:
            raise self.diverged(step, f"parameter {bad_param}")

    def diverged(self, step: int, what: str) -> DrlError:
        last = ckpt.list_checkpoints(self.ckpt_dir)
        kept = f" The last good checkpoint is {last[-1][1]}." if last else ""
        if hasattr(self.cfg.algo, "max_kl"):
            # TRPO / NPG move the actor by a KL-sized natural step; the learning rate and the
            # gradient clip are only the critic's there.
            hint = (
                "Try a smaller algo.max_kl (the actor's natural-gradient step), a lower "
                "algo.learning_rate (the critic's), or observation/reward normalization."
            )
        else:
            hint = (
                "Try a lower algo.learning_rate, a smaller algo.max_grad_norm, or "
                "observation/reward normalization."
            )
        return DrlError(
            f"Training diverged at env step {step}: {what} is not finite. Stopped without "
            f"saving the bad state.{kept} {hint}"
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.check_params(step)
        self.logger.record_dict(metrics)
        self.logger.record("charts/SPS", self.logger.sps(step))
        self.logger.record("charts/torch_threads", torch.get_num_threads())
        self.logger.dump(step)
        self.schedule["next_log"] = step + self.cfg.log.every
        self.last_sps_step = step

    def evaluation(self) -> list[float]:
        return run_evaluation(self.algo, self.env, self.eval_env, self.cfg, self.logger.line)

    def record_evaluation(self, step: int) -> None:
        r = self.eval_returns
        self.logger.eval_result(step, float(np.mean(r)), float(np.std(r)), len(r))

    def periodic_evaluation(self, step: int) -> bool:
        """Evaluate and log; False when the run stops here (solved, or interrupted)."""
        cfg = self.cfg
        try:
            self.eval_returns = self.evaluation()
        except Interrupted:
            self.status = "interrupted"
            return False
        self.last_eval_step = step
        self.record_evaluation(step)
        self.logger.dump(step)
        self.schedule["next_eval"] = step + cfg.eval.every
        mean_eval = float(np.mean(self.eval_returns))
        hooks = self.hooks
        prune_reason = hooks.on_eval(step, mean_eval) if hooks.on_eval else None
        if (
            prune_reason is None
            and cfg.eval.prune_below is not None
            and step >= cfg.eval.prune_after
            and mean_eval < cfg.eval.prune_below
        ):
            prune_reason = (
                f"mean eval return {mean_eval:.2f} < eval.prune_below="
                f"{cfg.eval.prune_below} at step {step}"
            )
        if prune_reason:
            self.status = "pruned"
            self.logger.line(f"drl: pruned at step {step}: {prune_reason}")
            return False
        target = self.target
        if cfg.eval.early_stop and target is not None and np.mean(self.eval_returns) >= target:
            self.solved_at = step
            self.status = "solved"
            self.logger.line(f"solved: mean eval return >= {target} at step {step}")
            return False
        return True

    def save(self, step: int) -> None:
        self.check_params(step)
        ckpt.save_checkpoint(
            self.ckpt_dir,
            step,
            _payload(self.cfg, self.algo, self.env, self.schedule, self.logger.episodes),
            self.cfg.checkpoint.keep_last,
            self.env.snapshot(),
        )

    # --- the end -----------------------------------------------------------------------------
    def wind_down(self) -> None:
        """Checkpoint first, then the final evaluation: a preempted job may get little time
        before SIGKILL, and an evaluation that does not end must not cost the trained model."""
        step = self.env.global_step
        self.train_time = time.perf_counter() - self.t0
        if self.status == "interrupted" or not self.already_done:
            self.save(step)
        if self.status != "interrupted" and (
            (self.status == "finished" and self.last_eval_step != step) or not self.eval_returns
        ):
            try:
                self.eval_returns = self.evaluation()
                self.record_evaluation(step)
            except Interrupted:
                self.status = "interrupted"
        if self.last_sps_step != step:  # one SPS point per step
            self.logger.record("charts/SPS", self.logger.sps(step))
        self.logger.dump(step)

    def report(self, signal_name: str | None) -> RunResult:
        """Write result.json, print the summary (and how to resume after a signal)."""
        step, r = self.env.global_step, self.eval_returns
        wall = time.perf_counter() - self.t0
        train_time = self.train_time
        result = RunResult(
            run_dir=str(self.run_dir),
            status=self.status,
            global_step=step,
            eval_mean_return=float(np.mean(r)) if r else float("nan"),
            eval_std_return=float(np.std(r)) if r else float("nan"),
            wall_time_s=wall,
            train_time_s=train_time,
            sps=(step - self.start_step) / train_time if train_time > 0 else 0.0,
            solved_at_step=self.solved_at,
            interrupted_by=signal_name if self.status == "interrupted" else None,
        )
        write_result(
            self.run_dir,
            result,
            resumed=self.resume_state is not None,
            already_done=self.already_done,
        )
        self.logger.close(
            {
                "status": self.status,
                "env steps": step,
                "episodes": self.logger.episodes,
                "eval mean return": result.eval_mean_return,
                "eval std return": result.eval_std_return,
                "wall time (s)": wall,
                "SPS": result.sps,
                "run dir": str(self.run_dir),
            },
            status=self.status,
        )
        if self.status == "interrupted":
            then = self.hooks.after_interrupt or f"Resume with:\n  drl train resume={self.run_dir}"
            print(
                f"drl: stopped by {signal_name} at step {step}; checkpoint saved in "
                f"{self.ckpt_dir}. {then}",
                file=sys.stderr,
                flush=True,
            )
        return result
