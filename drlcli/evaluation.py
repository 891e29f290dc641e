"""`drl eval RUN_DIR`: reload a run's checkpoint and saved config, evaluate, optionally record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from drlcli import checkpoint as ckpt
from drlcli import networks, registry
from drlcli.algos.base import Algorithm, EnvInfo
from drlcli.collector import evaluate
from drlcli.config import EnvConfig, TrainConfig, train_config_from_dict
from drlcli.envs import VecEnv, action_mask_source, eval_env_config, make_single_env
from drlcli.errors import DrlError
from drlcli.hardware import resolve_cpu_linear, resolve_device
from drlcli.runner import MAX_EVAL_ENVS


@dataclass
class EvalReport:
    checkpoint: str
    step: int
    episodes: int
    deterministic: bool
    seed: int
    returns: list[float]
    mean_return: float
    std_return: float
    video: str | None = None
    video_error: str | None = None  # why no video was recorded (the evaluation still stands)


def load_run(
    run_dir: Path, checkpoint: Path | None = None, device: str = "cpu"
) -> tuple[TrainConfig, dict, Algorithm, torch.device]:
    """The typed config, checkpoint state and a learner with the checkpoint's weights."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DrlError(f"'{run_dir}' is not a directory; pass a run directory under outputs/.")
    state = ckpt.load(checkpoint) if checkpoint else ckpt.latest_loadable(run_dir / "checkpoints")
    if checkpoint:
        state["_path"] = str(checkpoint)
    cfg = train_config_from_dict(state["config"])
    dev = resolve_device(device)
    probe = make_single_env(cfg.env)
    masks = action_mask_source(probe) is not None
    info = EnvInfo(probe.observation_space, probe.action_space, cfg.env.num_envs, masks)
    probe.close()
    algo = registry.build(cfg.algo, info, dev)
    algo.load_state_dict(state["algo"])
    return cfg, state, algo, dev


def run_eval(
    run_dir: Path,
    episodes: int | None = None,
    deterministic: bool = True,
    seed: int | None = None,
    video: bool = False,
    checkpoint: Path | None = None,
    device: str = "cpu",
) -> EvalReport:
    cfg, state, algo, dev = load_run(run_dir, checkpoint, device)
    # The run's matmul library for its layers (hardware.cpu_linear), so its own final
    # evaluation is reproduced to the last digit; torch's default again afterwards.
    before = networks.onednn_linear_enabled()
    try:
        onednn = resolve_cpu_linear(cfg.hardware, dev) == "onednn"
    except DrlError:  # onednn asked for, evaluated with a torch without it
        onednn = False
    networks.set_onednn_linear(onednn)
    try:
        return _run_eval(run_dir, cfg, state, algo, episodes, deterministic, seed, video)
    finally:
        networks.set_onednn_linear(before)


def _run_eval(
    run_dir: Path,
    cfg: TrainConfig,
    state: dict,
    algo: Algorithm,
    episodes: int | None,
    deterministic: bool,
    seed: int | None,
    video: bool,
) -> EvalReport:
    episodes = cfg.eval.episodes if episodes is None else episodes  # 0 is an error, not "default"
    if episodes < 1:
        raise DrlError(f"--episodes must be at least 1, got {episodes}.")
    # The same eval seeds as training uses, so a fixed seed reproduces its final evaluation.
    seed = cfg.seed + 10_000 if seed is None else seed
    env = VecEnv(
        eval_env_config(cfg.env), min(episodes, MAX_EVAL_ENVS), seed, "sync", training=False
    )
    env.load_state_dict(state["env"])  # frozen observation-normalization statistics
    try:
        returns = evaluate(algo, env, episodes, deterministic, seed, cfg.eval.max_episode_steps)
    finally:
        env.close()
    report = EvalReport(
        checkpoint=str(state["_path"]),
        step=int(state["step"]),
        episodes=episodes,
        deterministic=deterministic,
        seed=seed,
        returns=returns,
        mean_return=float(np.mean(returns)),
        std_return=float(np.std(returns)),
    )
    out = Path(run_dir) / f"eval_step{report.step}.json"
    out.write_text(json.dumps(report.__dict__, indent=2) + "\n")  # kept if the video fails
    if video:
        try:
            report.video = str(record_episode(run_dir, cfg, state, algo, deterministic, seed))
        except DrlError as exc:
            report.video_error = str(exc)
        out.write_text(json.dumps(report.__dict__, indent=2) + "\n")
    return report


def check_renders(env_cfg: EnvConfig) -> None:
    """Fail before making a rendering env when the env cannot give rgb_array frames: gymnasium
    would pass render_mode to a constructor that may not take it."""
    probe = make_single_env(env_cfg)
    try:
        modes = list(probe.metadata.get("render_modes") or [])
    finally:
        probe.close()
    if "rgb_array" not in modes:
        raise DrlError(
            f"{env_cfg.id} cannot be recorded: a video needs frames from render_mode="
            f"'rgb_array', and its metadata['render_modes'] is {modes}. Add 'rgb_array' to the "
            "env's metadata['render_modes'], take render_mode in its constructor and return an "
            "RGB array (H, W, 3) from render()."
        )


def record_episode(
    run_dir: Path, cfg: TrainConfig, state: dict, algo: Algorithm, deterministic: bool, seed: int
) -> Path:
    """Render one evaluation episode (at most eval.max_episode_steps steps) to an animated GIF
    in RUN_DIR/videos/."""
    import os

    from PIL import Image

    # Frames are drawn off-screen (rgb_array): pygame/SDL needs no display or sound device, and
    # without these SDL probes for them and prints "XDG_RUNTIME_DIR is invalid or not set" on a
    # headless machine even when recording succeeds. A user's own SDL settings win.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    env_cfg = eval_env_config(cfg.env)
    check_renders(env_cfg)
    env_cfg.kwargs = {**env_cfg.kwargs, "render_mode": "rgb_array"}
    env = VecEnv(env_cfg, 1, seed, "sync", training=False)
    env.load_state_dict(state["env"])
    frames = []
    try:
        obs = env.reset(seed=seed)
        algo.reset_predict_state(1)
        inner = env.env.envs[0]
        frames.append(inner.render())
        for _ in range(cfg.eval.max_episode_steps):
            result = env.step(algo.predict(obs, deterministic))
            obs = result.obs
            if result.terminated[0] or result.truncated[0]:
                break
            frames.append(inner.render())
    except DrlError:
        raise
    except Exception as exc:
        raise DrlError(f"Could not render {cfg.env.id} for a video: {exc}") from exc
    finally:
        env.close()
    path = Path(run_dir) / "videos" / f"eval_step{int(state['step'])}.gif"
    path.parent.mkdir(parents=True, exist_ok=True)
    fps = 30
    images = [Image.fromarray(np.asarray(f)) for f in frames if f is not None]
    if not images:
        raise DrlError(f"{cfg.env.id} returned no frames in rgb_array render mode.")
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
