"""Build everything from the typed config and run the training loop.

collect -> update -> log -> (eval) -> (checkpoint), until ``total_timesteps`` env steps.
"""

from __future__ import annotations

import json
import math
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from drlcli import checkpoint as ckpt
from drlcli import hardware, registry
from drlcli.algos.base import Algorithm, EnvInfo
from drlcli.config import TrainConfig
from drlcli.envs import VecEnv, eval_env_config, evaluate
from drlcli.errors import DrlError
from drlcli.logger import Logger, flatten

MAX_EVAL_ENVS = 16


@dataclass
class RunResult:
    run_dir: str
    status: str  # finished | solved | interrupted
    global_step: int
    eval_mean_return: float
    eval_std_return: float
    wall_time_s: float  # the training loop plus final evaluation and checkpoint
    train_time_s: float  # the training loop alone (collect, update, logging, periodic eval)
    sps: float  # env steps per second of the training loop
    solved_at_step: int | None = None


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks that the schema types cannot express; fail before any work."""
    problems = []
    if cfg.total_timesteps < 1:
        problems.append(f"total_timesteps must be >= 1 (got {cfg.total_timesteps})")
    if cfg.env.num_envs < 1:
        problems.append(f"env.num_envs must be >= 1 (got {cfg.env.num_envs})")
    if cfg.eval.episodes < 1:
        problems.append(f"eval.episodes must be >= 1 (got {cfg.eval.episodes})")
    if cfg.eval.every < 0 or cfg.checkpoint.every < 0:
        problems.append("eval.every and checkpoint.every must be >= 0 (0 = only at the end)")
    if cfg.eval.early_stop and cfg.eval.target_return is None and cfg.env.solved_return is None:
        problems.append(
            "eval.early_stop=true needs a threshold: set eval.target_return or env.solved_return"
        )
    if cfg.log.progress not in ("auto", "rich", "plain", "none"):
        problems.append(f"log.progress must be auto, rich, plain or none (got {cfg.log.progress})")
    if problems:
        raise DrlError("Invalid settings: " + "; ".join(problems) + ".")


class _Interrupt:
    """First SIGINT/SIGTERM asks the loop to stop after the current iteration (checkpoint and
    flush); a second SIGINT exits at once."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def env_info_of(env: VecEnv) -> EnvInfo:
    return EnvInfo(env.single_observation_space, env.single_action_space, env.num_envs)


def build_envs(cfg: TrainConfig, vectorization: str) -> tuple[VecEnv, VecEnv]:
    gamma = float(getattr(cfg.algo, "gamma", 0.99))
    env = VecEnv(cfg.env, cfg.env.num_envs, cfg.seed, vectorization, gamma, training=True)
    n_eval = min(cfg.eval.episodes, MAX_EVAL_ENVS)
    eval_env = VecEnv(
        eval_env_config(cfg.env), n_eval, cfg.seed + 10_000, "sync", gamma, training=False
    )
    return env, eval_env


def run_evaluation(algo: Algorithm, env: VecEnv, eval_env: VecEnv, cfg: TrainConfig) -> list[float]:
    eval_env.sync_normalization_from(env)
    return evaluate(algo, eval_env, cfg.eval.episodes, cfg.eval.deterministic, cfg.seed + 10_000)


def save_run_files(cfg: TrainConfig, run_dir: Path, command: str, resolved: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    (run_dir / "command.txt").write_text(command + "\n")
    info = {
        "command": command,
        "seed": cfg.seed,
        "hardware": asdict(resolved),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (run_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")


def train(cfg: TrainConfig, run_dir: Path, command: str = "") -> RunResult:
    validate(cfg)
    run_dir = Path(run_dir)
    device, resolved = hardware.setup(cfg.hardware, cfg.seed)
    env, eval_env = build_envs(cfg, resolved.vectorization)
    try:
        algo = registry.build(cfg.algo, env_info_of(env), device)
        return _train_loop(cfg, run_dir, command, algo, env, eval_env, resolved)
    finally:
        env.close()
        eval_env.close()


def _payload(cfg: TrainConfig, algo: Algorithm, env: VecEnv, extra: dict[str, Any]) -> dict:
    return {
        "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
        "algo_name": cfg.algo.name,
        "algo": algo.state_dict(),
        "env": env.state_dict(),
        "rng": ckpt.rng_state(),
        **extra,
    }


def _train_loop(
    cfg: TrainConfig,
    run_dir: Path,
    command: str,
    algo: Algorithm,
    env: VecEnv,
    eval_env: VecEnv,
    resolved: Any,
) -> RunResult:
    save_run_files(cfg, run_dir, command, resolved)
    ckpt_dir = run_dir / "checkpoints"
    title = f"{cfg.algo.name} {cfg.env.id} s{cfg.seed}"
    logger = Logger(
        run_dir,
        cfg.total_timesteps,
        cfg.log.tensorboard,
        cfg.log.progress,
        cfg.log.console_every_s,
        title=title,
    )
    params = flatten(OmegaConf.to_container(OmegaConf.structured(cfg)))
    params["hardware.resolved_device"] = resolved.device
    params["hardware.resolved_threads"] = resolved.torch_threads
    logger.hparams(params)
    logger.line(
        f"drl: training {cfg.algo.name} on {cfg.env.id} ({cfg.env.num_envs} envs, seed "
        f"{cfg.seed}) on {resolved.device} with {resolved.torch_threads} thread(s) -> {run_dir}"
    )

    target = cfg.eval.target_return if cfg.eval.target_return is not None else cfg.env.solved_return
    next_eval = cfg.eval.every if cfg.eval.every > 0 else math.inf
    next_ckpt = cfg.checkpoint.every if cfg.checkpoint.every > 0 else math.inf
    next_log = 0
    status = "finished"
    solved_at: int | None = None
    eval_returns: list[float] = []
    t0 = time.perf_counter()

    def save(step: int) -> None:
        ckpt.save_checkpoint(ckpt_dir, step, _payload(cfg, algo, env, {}), cfg.checkpoint.keep_last)

    with _Interrupt() as interrupt:
        try:
            while env.global_step < cfg.total_timesteps:
                progress = env.global_step / cfg.total_timesteps
                algo.collect(env)
                metrics = algo.update(progress)
                step = env.global_step
                bad = [
                    k
                    for k, v in metrics.items()
                    if k.startswith("losses/") and not math.isfinite(v)
                ]
                bad_param = algo.check_finite()
                if bad or bad_param:
                    last = ckpt.list_checkpoints(ckpt_dir)
                    kept = f" The last good checkpoint is {last[-1][1]}." if last else ""
                    what = ", ".join(f"{k}={metrics[k]}" for k in bad) or f"parameter {bad_param}"
                    raise DrlError(
                        f"Training diverged at env step {step}: {what} is not finite. Stopped "
                        f"without saving the bad state.{kept} Try a lower algo.learning_rate or "
                        "enable observation/reward normalization."
                    )
                for ep in env.drain_episodes():
                    logger.episode(ep.ret, ep.length, ep.step)
                if step >= next_log:
                    logger.record_dict(metrics)
                    logger.record("charts/SPS", logger.sps(step))
                    logger.dump(step)
                    next_log = step + cfg.log.every
                if step >= next_eval:
                    eval_returns = run_evaluation(algo, env, eval_env, cfg)
                    logger.eval_result(
                        step,
                        float(np.mean(eval_returns)),
                        float(np.std(eval_returns)),
                        len(eval_returns),
                    )
                    logger.dump(step)
                    next_eval = step + cfg.eval.every
                    if (
                        cfg.eval.early_stop
                        and target is not None
                        and np.mean(eval_returns) >= target
                    ):
                        solved_at = step
                        status = "solved"
                        logger.line(f"solved: mean eval return >= {target} at step {step}")
                        break
                if step >= next_ckpt:
                    save(step)
                    next_ckpt = step + cfg.checkpoint.every
                logger.progress(step)
                if interrupt.signal is not None:
                    status = "interrupted"
                    break
        except BaseException:
            logger.close()
            raise

        step = env.global_step
        train_time = time.perf_counter() - t0
        if status == "finished" or not eval_returns:
            eval_returns = run_evaluation(algo, env, eval_env, cfg)
            logger.eval_result(
                step, float(np.mean(eval_returns)), float(np.std(eval_returns)), len(eval_returns)
            )
        logger.record("charts/SPS", logger.sps(step))
        logger.dump(step)
        save(step)
    wall = time.perf_counter() - t0
    result = RunResult(
        run_dir=str(run_dir),
        status=status,
        global_step=step,
        eval_mean_return=float(np.mean(eval_returns)),
        eval_std_return=float(np.std(eval_returns)),
        wall_time_s=wall,
        train_time_s=train_time,
        sps=step / train_time if train_time > 0 else 0.0,
        solved_at_step=solved_at,
    )
    (run_dir / "result.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    logger.close(
        {
            "status": status,
            "env steps": step,
            "episodes": logger.episodes,
            "eval mean return": result.eval_mean_return,
            "eval std return": result.eval_std_return,
            "wall time (s)": wall,
            "SPS": result.sps,
            "run dir": str(run_dir),
        }
    )
    if status == "interrupted":
        print(
            f"drl: stopped by {interrupt.signal} at step {step}; checkpoint saved in {ckpt_dir}.",
            file=sys.stderr,
        )
    return result
