"""Smoke runs through the real, installed `drl` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import REPO

TINY = [
    "total_timesteps=1024",
    "eval.every=512",
    "eval.episodes=2",
    "checkpoint.every=512",
    "log.every=256",
    "log.progress=plain",
    "env.max_episode_steps=50",
]


def run(cmd, cwd, env, timeout=240):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


def single_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.glob("outputs/runs/*/*/config.yaml")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def load_events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_help_and_list(drl, clean_env, tmp_path):
    out = run([drl, "--help"], tmp_path, clean_env)
    assert out.returncode == 0 and "train" in out.stdout and "list" in out.stdout
    out = run([drl, "train", "--help"], tmp_path, clean_env)
    assert out.returncode == 0 and "algo" in out.stdout and "cartpole" in out.stdout
    out = run([drl, "list"], tmp_path, clean_env)
    assert out.returncode == 0
    for name in ("ppo", "cartpole", "acrobot", "pendulum", "cpu", "cuda"):
        assert name in out.stdout
    # Descriptions are text, not rich markup: the extra to install stays visible.
    assert "drlcli[atari]" in out.stdout and "drlcli[mujoco]" in out.stdout
    out = run([drl, "train", "--cfg", "job"], tmp_path, clean_env)
    assert out.returncode == 0 and "CartPole-v1" in out.stdout
    assert not (tmp_path / "outputs").exists()


def test_train_writes_config_events_and_checkpoints(drl, clean_env, tmp_path):
    out = run([drl, "train", "algo=ppo", "env=cartpole", *TINY], tmp_path, clean_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "eval @" in out.stdout and "Run summary" in out.stdout
    run_dir = single_run_dir(tmp_path)
    assert "_ppo_cartpole_s1" in run_dir.name

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["algo"]["name"] == "ppo" and cfg["total_timesteps"] == 1024
    assert "total_timesteps=1024" in (run_dir / "command.txt").read_text()
    assert (run_dir / ".hydra" / "overrides.yaml").is_file()
    info = json.loads((run_dir / "run_info.json").read_text())
    # Automatic threads on an MLP: one, whatever the core count (issue #15), said at start.
    assert info["hardware"]["device"] == "cpu" and info["hardware"]["torch_threads"] == 1
    assert "torch threads: 1 (auto; vector observations" in out.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["global_step"] >= 1024 and result["status"] == "finished"

    ckpts = sorted((run_dir / "checkpoints").glob("step_*.pt"))
    assert ckpts, "no checkpoint written"
    import torch

    state = torch.load(ckpts[-1], weights_only=True)
    assert state["step"] == result["global_step"] and "optimizers" in state["algo"]

    acc = load_events(run_dir)
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "charts/learning_rate",
        "losses/policy_loss",
        "losses/value_loss",
        "losses/entropy",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/explained_variance",
        "eval/mean_return",
    ):
        assert tag in tags, f"missing scalar {tag}: {sorted(tags)}"
    # The x-axis is env steps.
    steps = [e.step for e in acc.Scalars("charts/learning_rate")]
    assert steps == sorted(steps) and steps[0] >= 256 and steps[-1] <= result["global_step"]
    evals = acc.Scalars("eval/mean_return")
    assert evals[-1].value == pytest.approx(result["eval_mean_return"], rel=1e-5)

    # HPARAMS: the run's hyperparameters, readable with TensorBoard's own reader.
    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hp["algo.learning_rate"].number_value == pytest.approx(0.001)
    assert hp["env.id"].string_value == "CartPole-v1"


def test_continuous_actions_smoke(drl, clean_env, tmp_path):
    out = run(
        [drl, "train", "env=pendulum", "algo.num_steps=64", "algo.minibatch_size=64", *TINY],
        tmp_path,
        clean_env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    acc = load_events(single_run_dir(tmp_path))
    assert "charts/action_std" in acc.Tags()["scalars"]


def test_multirun_lands_under_outputs(drl, clean_env, tmp_path):
    out = run([drl, "train", "-m", "seed=1,2", *TINY], tmp_path, clean_env)
    assert out.returncode == 0, out.stdout + out.stderr
    runs = sorted(tmp_path.glob("outputs/multirun/*/*/*/config.yaml"))
    assert len(runs) == 2
    assert {yaml.safe_load(p.read_text())["seed"] for p in runs} == {1, 2}
    assert all(list(p.parent.glob("events.out.tfevents.*")) for p in runs)


def test_bad_input_through_the_real_command(drl, clean_env, tmp_path):
    out = run([drl, "train", "algo.clip_cof=0.1"], tmp_path, clean_env)
    assert out.returncode == 2
    assert "Did you mean 'clip_coef'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()


def test_installed_wheel_ships_configs_and_runs_anywhere(tmp_path, clean_env):
    """Build the wheel, install it into a plain directory, run from an unrelated cwd."""
    wheel_dir, target, work = tmp_path / "wheel", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    build = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(REPO)],
        tmp_path,
        clean_env,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(wheel_dir.glob("drlcli-*.whl"))
    inst = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        tmp_path,
        clean_env,
    )
    assert inst.returncode == 0, inst.stderr
    assert (target / "drlcli" / "conf" / "config.yaml").is_file()
    env = dict(clean_env, PYTHONPATH=str(target))
    code = (
        "import drlcli, sys; from drlcli.cli import config_dir, main; "
        f"assert drlcli.__file__.startswith({str(target)!r}), drlcli.__file__; "
        f"assert str(config_dir()).startswith({str(target)!r}); "
        "sys.exit(main(sys.argv[1:]))"
    )
    out = run([sys.executable, "-c", code, "train", *TINY], work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert single_run_dir(work)
