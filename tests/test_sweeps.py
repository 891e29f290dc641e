"""Multirun summary and failure handling, Optuna search, drl compare, drl eval, HPARAMS and a
real TensorBoard server reading the runs back."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from drlcli.compare import bootstrap_ci, iqm

TINY = [
    "total_timesteps=2048",
    "eval.every=1024",
    "eval.episodes=3",
    "checkpoint.every=0",
    "log.progress=plain",
    "env.max_episode_steps=100",
]


def run(cmd, cwd, env, timeout=400):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def multirun(tmp_path_factory):
    """One 2 x 2 sweep (seed x learning rate) shared by the tests below."""
    from tests.conftest import drl_executable

    root = tmp_path_factory.mktemp("multirun")
    out = run(
        [
            drl_executable(),
            "train",
            "-m",
            "seed=1,2",
            "algo.learning_rate=0.001,0.0003",
            *TINY,
            f"hydra.sweep.dir={root / 'sweep'}",
        ],
        root,
        None,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "sweep", out.stdout


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/config.yaml"))


def final_eval(run_dir: Path) -> float:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc.Scalars("eval/mean_return")[-1].value


def test_multirun_writes_four_runs_and_a_summary(multirun):
    sweep, stdout = multirun
    jobs = job_dirs(sweep)
    assert len(jobs) == 4
    # Job directories say what differs: algo, env and the swept values.
    named = [j.name for j in jobs if "_ppo_cartpole_" in j.name]
    assert any("algo.learning_rate=0.0003" in n and "seed=2" in n for n in named), named
    assert "drl multirun summary" in stdout
    rows = json.loads((sweep / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["finished"] * 4
    for row in rows:
        assert row["global_step"] >= 2048
        assert row["eval_mean_return"] == pytest.approx(final_eval(Path(row["run_dir"])))


def test_hparams_have_one_schema_across_the_sweep(multirun):
    sweep, _ = multirun
    schemas, rates = [], set()
    for job in job_dirs(sweep):
        acc = EventAccumulator(str(job), size_guidance={"tensors": 0})
        acc.Reload()
        content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        hp = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        schemas.append(sorted(hp.keys()))
        rates.add(hp["algo.learning_rate"].number_value)
        exp = acc.SummaryMetadata("_hparams_/experiment").plugin_data.content
        metrics = plugin_data_pb2.HParamsPluginData.FromString(exp).experiment.metric_infos
        assert "eval/mean_return" in {m.name.tag for m in metrics}
    assert all(s == schemas[0] for s in schemas) and "seed" in schemas[0]
    assert rates == {0.001, 0.0003}


def test_compare_writes_png_and_tables_matching_events(multirun, drl, tmp_path):
    sweep, _ = multirun
    out = run([drl, "compare", str(sweep), "--out", str(tmp_path)], tmp_path, None)
    assert out.returncode == 0, out.stdout + out.stderr
    png = tmp_path / "compare.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with (tmp_path / "compare.csv").open() as f:
        rows = {r["group"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"algo.learning_rate=0.0003", "algo.learning_rate=0.001"}
    for lr, row in rows.items():
        finals = [
            final_eval(j)
            for j in job_dirs(sweep)
            if yaml.safe_load((j / "config.yaml").read_text())["algo"]["learning_rate"]
            == float(lr.split("=")[1])
        ]
        assert int(row["runs"]) == 2
        assert float(row["mean"]) == pytest.approx(np.mean(finals), rel=1e-6)
        assert float(row["ci_low"]) <= float(row["mean"]) <= float(row["ci_high"])
    md = (tmp_path / "compare.md").read_text()
    assert "| algo.learning_rate=0.001 | 2 |" in md


def test_tensorboard_server_serves_the_runs(multirun):
    sweep, _ = multirun
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tb = Path(sys.executable).with_name("tensorboard")
    proc = subprocess.Popen(
        [str(tb), "--logdir", str(sweep), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/data"
        deadline = time.time() + 60
        runs: list[str] = []
        while time.time() < deadline:
            try:
                runs = json.loads(urllib.request.urlopen(f"{base}/runs", timeout=5).read())
                if len(runs) >= 4:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert len(runs) == 4, runs
        tags = json.loads(urllib.request.urlopen(f"{base}/plugin/scalars/tags", timeout=10).read())
        for r in runs:
            assert {"charts/episodic_return", "eval/mean_return", "losses/approx_kl"} <= set(
                tags[r]
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_failed_job_is_reported_and_the_sweep_goes_on(drl, tmp_path):
    out = run(
        [
            drl,
            "train",
            "-m",
            "algo.learning_rate=-1,0.001",
            *TINY,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
        None,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 of 2 jobs did not finish" in out.stderr
    rows = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "finished"]
    assert "learning_rate must be > 0" in rows[0]["error"]


def test_on_error_stop_stops_the_sweep(drl, tmp_path):
    out = run(
        [
            drl,
            "train",
            "-m",
            "algo.learning_rate=-1,0.001",
            "on_error=stop",
            *TINY,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
        None,
    )
    assert out.returncode == 2
    started = list((tmp_path / "sweep").glob("*/.hydra"))
    assert len(started) == 1, "the second job must not start after the first failed"
    result = json.loads((started[0].parent / "result.json").read_text())
    assert result["status"] == "failed"


def test_optuna_search_returns_objectives_and_resumes_its_study(drl, tmp_path):
    import optuna

    db = tmp_path / "study.db"
    args = [
        drl,
        "train",
        "-m",
        "search=ppo_cartpole",
        *TINY,
        "eval.prune_after=1024",
        f"hydra.sweeper.storage=sqlite:///{db}",
        "hydra.sweeper.study_name=test",
    ]
    out = run(
        [*args, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={tmp_path / 'a'}"], tmp_path, None
    )
    assert out.returncode == 0, out.stdout + out.stderr
    best = yaml.safe_load((tmp_path / "a" / "optimization_results.yaml").read_text())
    assert isinstance(best["best_value"], float) and "algo.learning_rate" in best["best_params"]
    study = optuna.load_study(study_name="test", storage=f"sqlite:///{db}")
    values = [t.value for t in study.trials]
    assert len(values) == 3 and all(v is not None for v in values)
    # The trial objectives are the runs' final mean eval returns.
    finals = sorted(
        json.loads(p.read_text())["eval_mean_return"]
        for p in (tmp_path / "a").glob("*/result.json")
    )
    assert sorted(values) == pytest.approx(finals)
    out = run(
        [*args, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'b'}"], tmp_path, None
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(optuna.load_study(study_name="test", storage=f"sqlite:///{db}").trials) == 5


def test_eval_reproduces_the_final_training_evaluation(drl, tmp_path):
    out = run(
        [drl, "train", *TINY, "total_timesteps=4096", f"hydra.run.dir={tmp_path / 'r'}"],
        tmp_path,
        None,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    trained = json.loads((tmp_path / "r" / "result.json").read_text())
    out = run([drl, "eval", str(tmp_path / "r"), "--video"], tmp_path, None)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "r" / f"eval_step{trained['global_step']}.json").read_text())
    assert report["mean_return"] == pytest.approx(trained["eval_mean_return"])
    assert report["episodes"] == 3 and report["deterministic"]
    gif = Path(report["video"])
    assert gif.read_bytes()[:6] == b"GIF89a"
    bad = run([drl, "eval", str(tmp_path / "missing")], tmp_path, None)
    assert bad.returncode == 2 and "is not a directory" in bad.stderr


def test_statistics_helpers():
    assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 1.5, 2.5])) == pytest.approx(1.75)
    lo, hi = bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0]), np.random.default_rng(0))
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_ci(np.array([5.0]), np.random.default_rng(0)) == (5.0, 5.0)
