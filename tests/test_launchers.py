"""Sweeps through Hydra's launcher plugins for real: joblib (parallel processes), submitit's
local executor (the SLURM code path without a cluster) and a local Ray instance."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest

from drlcli import cli
from drlcli.errors import DrlError

TINY = [
    "seed=1,2,3,4",
    "total_timesteps=2048",
    "algo.num_steps=64",
    "env.num_envs=4",
    "eval.every=0",
    "eval.episodes=2",
    "checkpoint.every=0",
    "log.progress=none",
]


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "ray"])
def test_multirun_of_four_jobs_through_a_launcher(drl, clean_env, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    env = dict(clean_env, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    out = subprocess.run(
        [
            drl,
            "train",
            "-m",
            f"hydra/launcher={launcher}",
            *TINY,
            *extra,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = sorted(p.parent for p in sweep.glob("*/result.json"))
    assert len(runs) == 4, runs
    seeds = set()
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        assert result["status"] == "finished" and result["global_step"] >= 2048
        info = json.loads((run / "run_info.json").read_text())
        seeds.add(info["seed"])
        # Parallel jobs share the cores: each takes its share of torch threads.
        assert info["hardware"]["torch_threads"] == 1
        assert any(run.glob("events.out.tfevents.*"))
    assert seeds == {1, 2, 3, 4}
    summary = json.loads((sweep / "summary.json").read_text())
    assert [job["status"] for job in summary] == ["finished"] * 4


def test_launcher_thread_shares():
    from drlcli.hardware import available_cores

    cores = available_cores()
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
    assert cli.launcher_parallel_jobs({**joblib, "n_jobs": 3}) == 3
    assert cli.launcher_parallel_jobs({**joblib, "n_jobs": -1}) == cores
    ray = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}
    assert cli.launcher_parallel_jobs({**ray, "ray": {"remote": {"num_cpus": 1}}}) == cores
    basic = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    assert cli.launcher_parallel_jobs(basic) is None


def test_missing_or_unknown_launcher_is_a_clear_error(monkeypatch):
    with pytest.raises(DrlError, match=r"Unknown hydra/launcher 'rey'. Did you mean 'ray'"):
        cli.check_overrides(["hydra/launcher=rey"], multirun=True)
    real = importlib.util.find_spec

    def without_ray(name, *args):
        return None if name.startswith("hydra_plugins.hydra_ray_launcher") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_ray)
    with pytest.raises(DrlError, match=r"pip install 'drlcli\[ray\]'"):
        cli.check_overrides(["hydra/launcher=ray"], multirun=True)
