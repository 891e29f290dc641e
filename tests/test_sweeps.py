"""Multirun summary and failure handling, drl compare, drl eval, HPARAMS and a real
TensorBoard server reading the runs back (Optuna search: tests/test_tune.py)."""

from __future__ import annotations

import csv
import json
import os
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
from drlcli.errors import DrlError

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
        # Output to a pipe, no COLUMNS (pytest sets it to 80 for child processes): 400 columns.
        {k: v for k, v in os.environ.items() if k != "COLUMNS"},
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
    # Job directories (TensorBoard's run names) say what differs: algo, env and the swept
    # values in full; the settings every job shares stay out.
    assert sorted(j.name for j in jobs) == [
        "0_ppo_cartpole_algo.learning_rate=0.001,seed=1",
        "1_ppo_cartpole_algo.learning_rate=0.0003,seed=1",
        "2_ppo_cartpole_algo.learning_rate=0.001,seed=2",
        "3_ppo_cartpole_algo.learning_rate=0.0003,seed=2",
    ]
    # What every job shares: one line, not cut at 80 columns.
    assert (
        "\nall jobs: checkpoint.every=0 env.max_episode_steps=100 eval.episodes=3 eval.every=1024 "
        "log.progress=plain total_timesteps=2048\n" in stdout
    )
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
        # No per-run experiment record: TensorBoard builds it from all runs and so knows which
        # keys differ (see test_tensorboard_server_serves_the_runs).
        assert "_hparams_/experiment" not in acc.Tags()["tensors"]
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
    # Two seeds per group: every group is flagged, on stderr and under the table.
    assert "Warning: under 5 runs in" in md
    for lr in ("0.001", "0.0003"):
        assert (
            f"drl: warning: group 'algo.learning_rate={lr}' has 2 run(s): its 95% bootstrap CI "
            "is unreliable under 5 seeds" in out.stderr
        )


def test_compare_counts_only_finished_runs_and_names_the_rest(multirun, tmp_path):
    """A failed run's last evaluation, or a running one's, is no final return: such runs were
    averaged in as if finished. Now they are left out and named (found by a break pass)."""
    import shutil

    from drlcli.compare import compare

    sweep, _ = multirun
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    jobs = job_dirs(copy)
    failed = json.loads((jobs[0] / "result.json").read_text())
    (jobs[0] / "result.json").write_text(json.dumps(dict(failed, status="failed")))
    (jobs[1] / "result.json").unlink()
    rows, _, skipped = compare([copy], "eval/mean_return", tmp_path / "out")
    assert sum(r["runs"] for r in rows) == 2
    assert sorted(why for _, why in skipped) == ["failed", "no result.json (running or killed)"]
    rows, _, skipped = compare([copy], "eval/mean_return", tmp_path / "out", unfinished=True)
    assert sum(r["runs"] for r in rows) == 4 and not skipped
    for job in jobs[2:]:
        (job / "result.json").unlink()
    (jobs[0] / "result.json").unlink()
    with pytest.raises(DrlError, match=r"No finished runs .*left out 4 run\(s\)"):
        compare([copy], "eval/mean_return", tmp_path / "out")
    # A finished run without TensorBoard events is named too, not dropped in silence.
    (jobs[2] / "result.json").write_text(json.dumps(dict(failed, status="finished")))
    for events in jobs[2].glob("events.out.tfevents.*"):
        events.unlink()
    with pytest.raises(DrlError, match=r"1 no TensorBoard events \(log.tensorboard=false\)"):
        compare([copy], "eval/mean_return", tmp_path / "out")


def test_compare_labels_groups_by_algo_then_what_differs_within_it():
    """Comparing PPO and SAC labelled every group by each algorithm-specific key (PPO's
    clip range = None for SAC, ...); labels now name the algorithm, and the settings only
    where groups of one algorithm differ."""
    from drlcli.compare import Run, group_runs

    def run_of(**config):
        return Run(Path("x"), config, np.array([1.0]), np.array([0.0]))

    ppo = {"algo.name": "ppo", "env.id": "Pendulum-v1", "algo.clip_coef": 0.2}
    sac = {"algo.name": "sac", "env.id": "Pendulum-v1", "algo.buffer_size": 10**6}
    runs = [
        run_of(**ppo, **{"algo.learning_rate": 3e-4}),
        run_of(**ppo, **{"algo.learning_rate": 1e-3}),
        run_of(**sac, **{"algo.learning_rate": 1e-3}),
        run_of(**sac, **{"algo.learning_rate": 1e-3, "seed": 2}),
    ]
    labels = [g.label for g in group_runs(runs)]
    assert labels == ["ppo, algo.learning_rate=0.0003", "ppo, algo.learning_rate=0.001", "sac"]
    same_algo = [run_of(**ppo, **{"algo.learning_rate": lr}) for lr in (3e-4, 1e-3)]
    assert [g.label for g in group_runs(same_algo)] == [
        "algo.learning_rate=0.0003",
        "algo.learning_rate=0.001",
    ]
    assert [g.label for g in group_runs(same_algo[:1])] == ["ppo, Pendulum-v1"]


def test_compare_plot_has_target_markers_zero_origin_and_labels(multirun):
    from drlcli.compare import group_runs, load_runs, plot_curves

    sweep, _ = multirun
    runs, _ = load_runs([sweep], "eval/mean_return")
    fig = plot_curves(group_runs(runs), "eval/mean_return", target=50.0)
    ax = fig.axes[0]
    assert ax.get_xlim()[0] == 0
    assert ax.get_ylabel() == "mean evaluation return"
    assert ax.get_xlabel() == "environment steps"
    assert "CI unreliable" in ax.get_title()
    target = [ln for ln in ax.get_lines() if ln.get_label() == "target 50"]
    assert len(target) == 1 and list(target[0].get_ydata()) == [50.0, 50.0]
    marked = [ln for ln in ax.get_lines() if ln.get_marker() not in ("None", None, "")]
    assert len(marked) == 2  # one marker series per group, at the logged evaluation steps
    assert all(set(ln.get_xdata()) <= {1024.0, 2048.0} for ln in marked)


def test_compare_without_warnings_for_five_seeds():
    from drlcli.compare import markdown_table, small_group_warnings

    rows = [
        {"group": "a", "runs": 5, "mean": 1.0, "iqm": 1.0, "ci_low": 0.5, "ci_high": 1.5},
        {"group": "b", "runs": 4, "mean": 1.0, "iqm": 1.0, "ci_low": 0.5, "ci_high": 1.5},
    ]
    warnings = small_group_warnings(rows)
    assert len(warnings) == 1 and warnings[0].startswith("group 'b' has 4 run(s)")
    assert "Warning: under 5 runs in b:" in markdown_table(rows, "eval/mean_return")
    assert small_group_warnings(rows[:1]) == []


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
        # The HPARAMS experiment as the dashboard requests it: the swept keys come first, marked
        # as differing (the dashboard shows the first five columns by default).
        request = urllib.request.Request(
            f"{base}/plugin/hparams/experiment",
            data=json.dumps({"experimentName": ""}).encode(),
            headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"},
        )
        experiment = json.loads(urllib.request.urlopen(request, timeout=30).read())
        infos = experiment["hparamInfos"]
        assert len(infos) > 40
        assert {i["name"] for i in infos[:2]} == {"algo.learning_rate", "seed"}, infos[:5]
        assert all(i.get("differs") for i in infos[:2])
        assert not any(i.get("differs") for i in infos[2:])
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert "eval/mean_return" in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# A sweep whose job 0 fails while training (its env returns a NaN reward at step 100, which no
# check before the run can see) and whose job 1 finishes. Settings no job could run are refused
# before the sweep starts (test_bad_job_is_refused_before_the_sweep_starts).
FAILS_IN_JOB_0 = [
    "env=gym",
    "env.id=tests.envs_custom:DrlNanAt-v0",
    "env.num_envs=1",
    "+env.kwargs.at=100,1000000",
]


def with_tests_importable() -> dict[str, str]:
    from tests.conftest import REPO

    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path)


def test_failed_job_is_reported_and_the_sweep_goes_on(drl, tmp_path):
    out = run(
        [drl, "train", "-m", *FAILS_IN_JOB_0, *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
        with_tests_importable(),
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 of 2 jobs did not finish" in out.stderr
    rows = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["failed", "finished"]
    assert "returned a non-finite reward at env step 100" in rows[0]["error"]
    # TensorBoard's HPARAMS status says the same (every run was a "success" before).
    statuses = [session_status(Path(r["run_dir"])) for r in rows]
    assert statuses == ["STATUS_FAILURE", "STATUS_SUCCESS"]


def session_status(run_dir: Path) -> str | None:
    """The HPARAMS session status a run's event file ends with, as TensorBoard reads it."""
    from tensorboard.plugins.hparams import api_pb2

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams").get("_hparams_/session_end_info")
    if content is None:
        return None
    status = plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status
    return api_pb2.Status.Name(status)


def test_on_error_stop_stops_the_sweep(drl, tmp_path):
    out = run(
        [
            drl,
            "train",
            "-m",
            *FAILS_IN_JOB_0,
            "on_error=stop",
            *TINY,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        tmp_path,
        with_tests_importable(),
    )
    assert out.returncode == 2
    started = list((tmp_path / "sweep").glob("*/.hydra"))
    assert len(started) == 1, "the second job must not start after the first failed"
    result = json.loads((started[0].parent / "result.json").read_text())
    assert result["status"] == "failed"


@pytest.mark.parametrize(
    "overrides, message",
    [
        # Found by hand: job 0 trained, then job 1 failed on the combination.
        (
            ["algo=ppo,a3c", "hardware.compile=default"],
            r"Sweep job 1 of 2 \(algo=a3c\) cannot run, so no job was started: .*a3c has no "
            r"compiled learner",
        ),
        (
            ["algo=dqn", "env=cartpole,pendulum"],
            r"Sweep job 1 of 2 \(env=pendulum\) .*dqn cannot act in the action space Box",
        ),
        (
            ["algo.learning_rate=1e-3,-1", "seed=1,2"],
            r"Sweep job 2 of 4 \(algo.learning_rate=-1 seed=1\) .*learning_rate must be > 0",
        ),
        (
            ["algo.num_steps=64,abc"],
            r"Sweep job 1 of 2 \(algo.num_steps=abc\) .*invalid override: Value 'abc'",
        ),
        (["algo=glob(zzz*)"], r"algo=glob\(zzz\*\) matches no algo option. Valid choices"),
        (["seed=glob(1*)"], r"glob\(\) sweeps config group options"),
        (["algo.learning_rate=interval(0.1,0.2)"], r"interval\(\) is for search sweepers"),
        # Hydra keeps a repeated key at its first position with its last values.
        (
            ["env=pendulum", "algo=ppo,dqn", "env=cartpole,pendulum"],
            r"Sweep job 3 of 4 \(env=pendulum algo=dqn\) .*dqn cannot act",
        ),
        (["algo.learning_rate=0.001,${nope}"], r"Sweep job 1 of 2 .*Interpolation key 'nope'"),
        (["env=cartpole", "env.kwargs.x=1,2"], r"not in struct.* write \+key=value"),
        (
            ["algo=ppo,npg", "env=pendulum", "algo.shared_network=true"],
            r"Sweep job 1 of 2 \(algo=npg\) .*shared_network=true is not available",
        ),
    ],
)
def test_bad_job_is_refused_before_the_sweep_starts(overrides, message, tmp_path):
    """Every job of a grid sweep is checked (preflight) before the sweep directory exists."""
    from drlcli.cli import main, preflight_sweep
    from drlcli.errors import DrlError

    with pytest.raises(DrlError, match=message):
        preflight_sweep(overrides)
    sweep_dir = tmp_path / "sweep"
    assert main(["train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]) == 2
    assert not sweep_dir.exists()


def test_resume_of_one_run_is_refused_in_a_sweep(tmp_path, capsys):
    """`drl train -m resume=RUN_DIR seed=1,2` created the sweep directory and then failed every
    job; it is refused first, while resume=auto (requeued cluster jobs) stays valid."""
    from drlcli.cli import main, refuse_swept_resume
    from drlcli.errors import DrlError

    sweep_dir = tmp_path / "sweep"
    run_dir = tmp_path / "some_run"
    argv = ["train", "-m", f"resume={run_dir}", "seed=1,2", f"hydra.sweep.dir={sweep_dir}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot be part of a sweep (-m)" in err and "resume=auto" in err, err
    assert not sweep_dir.exists()
    for ok in (["resume=auto", "seed=1,2"], ["resume=null"], ["seed=1,2"]):
        refuse_swept_resume(ok)
    with pytest.raises(DrlError, match="resume=RUN_DIR continues one run"):
        refuse_swept_resume(["seed=1,2", f"resume='{run_dir}'"])


def test_sweep_jobs_expand_like_hydra(monkeypatch):
    """The jobs preflight checks are Hydra's: the cartesian product in order, globs over group
    options, range(); under another sweeper nothing is expanded.
    Jobs that differ only in their seed are checked once."""
    from drlcli import cli

    assert cli.sweep_jobs(["algo=ppo,a2c", "seed=range(1,3)", "env=cartpole"]) == [
        ["algo=ppo", "seed=1", "env=cartpole"],
        ["algo=ppo", "seed=2", "env=cartpole"],
        ["algo=a2c", "seed=1", "env=cartpole"],
        ["algo=a2c", "seed=2", "env=cartpole"],
    ]
    assert cli.sweep_jobs(["algo=glob(ppo_*,exclude=ppo_kl)"]) == [
        ["algo=ppo_gru"],
        ["algo=ppo_lstm"],
    ]
    assert cli.sweep_jobs(["hydra/sweeper=other", "seed=1,2"]) is None
    checked = []
    monkeypatch.setattr(cli, "preflight", lambda cfg: checked.append(cfg))
    cli.preflight_sweep(["seed=1,2,3", "algo.learning_rate=1e-3,3e-4"])
    assert len(checked) == 2
    checked.clear()  # a value that interpolates the seed differs per seed: each job is checked
    cli.preflight_sweep(["seed=1,2,3", "+env.kwargs.size=${seed}"])
    assert len(checked) == 3


def test_sweep_check_keeps_what_hydra_accepts(drl, tmp_path):
    """`++key=value` (add or override) in a sweep runs as before; several values without -m get
    one paragraph that says to add it; a bad interpolation in a single run too."""
    sweep = tmp_path / "sweep"
    tiny = ["total_timesteps=256", "algo.num_steps=64", "eval.episodes=1", "log.progress=none"]
    argv = ["-m", "++env.kwargs.sutton_barto_reward=true", "env=cartpole", "seed=1,2", *tiny]
    out = run([drl, "train", *argv, f"hydra.sweep.dir={sweep}"], tmp_path, None)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(list(sweep.glob("*/result.json"))) == 2
    for argv, message in [
        (["algo=sac,ppo"], "drl: error: algo=sac,ppo: several values for one setting. To run "),
        (["algo.learning_rate=${nope}"], "drl: error: Invalid override: Interpolation key 'nope'"),
    ]:
        out = run([drl, "train", *argv, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, None)
        assert out.returncode == 2 and out.stderr.startswith(message), out.stderr
        assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


def test_eval_reproduces_the_final_training_evaluation(drl, tmp_path):
    out = run(
        [drl, "train", *TINY, "total_timesteps=4096", f"hydra.run.dir={tmp_path / 'r'}"],
        tmp_path,
        None,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    trained = json.loads((tmp_path / "r" / "result.json").read_text())
    # Headless, as on a cluster node: no display, no XDG_RUNTIME_DIR, and no SDL complaint.
    headless = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XDG_RUNTIME_DIR")}
    out = run([drl, "eval", str(tmp_path / "r"), "--video"], tmp_path, headless)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "XDG_RUNTIME_DIR" not in out.stderr + out.stdout
    report = json.loads((tmp_path / "r" / f"eval_step{trained['global_step']}.json").read_text())
    assert report["mean_return"] == pytest.approx(trained["eval_mean_return"])
    assert report["episodes"] == 3 and report["deterministic"]
    gif = Path(report["video"])
    assert gif.read_bytes()[:6] == b"GIF89a"
    bad = run([drl, "eval", str(tmp_path / "missing")], tmp_path, None)
    assert bad.returncode == 2 and "is not a directory" in bad.stderr
    # --episodes 0 was taken as "the run's default" and evaluated 3 episodes.
    bad = run([drl, "eval", str(tmp_path / "r"), "--episodes", "0"], tmp_path, None)
    assert bad.returncode == 2 and "--episodes must be at least 1, got 0" in bad.stderr


def test_statistics_helpers():
    assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -100.0, 1.5, 2.5])) == pytest.approx(1.75)
    lo, hi = bootstrap_ci(np.array([1.0, 2.0, 3.0, 4.0]), np.random.default_rng(0))
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_ci(np.array([5.0]), np.random.default_rng(0)) == (5.0, 5.0)


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    """Default run and sweep directory names have a one-second resolution. Two runs of the same
    algo/env/seed started in the same second shared one directory, and the second run's
    checkpoint pruning deleted the first's checkpoints (found by a break pass). Here `now` is
    frozen, so both runs (and both sweeps) ask for the same name."""
    import datetime as dt

    import hydra.core.utils

    from drlcli import cli

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return cls(2026, 12, 1, 10, 0, 0)

    monkeypatch.setattr(hydra.core.utils, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    small = [
        *TINY,
        "total_timesteps=512",
        "algo.num_steps=64",
        "env.num_envs=4",
        "log.progress=none",
        "eval.episodes=1",
    ]
    for steps in (512, 1024):
        assert cli.main(["train", *small, f"total_timesteps={steps}"]) == 0
    runs = sorted((tmp_path / "outputs/runs/2026-12-01").iterdir())
    assert [r.name for r in runs] == ["10-00-00_ppo_cartpole_s1", "10-00-00_ppo_cartpole_s1-2"]
    steps = [json.loads((r / "result.json").read_text())["global_step"] for r in runs]
    assert steps == [512, 1024]
    for _ in range(2):
        assert cli.main(["train", "-m", *small, "seed=1,2"]) == 0
    sweeps = sorted((tmp_path / "outputs/multirun/2026-12-01").iterdir())
    assert [s.name for s in sweeps] == ["10-00-00", "10-00-00-2"]
    for sweep in sweeps:
        jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
        assert jobs == ["0_ppo_cartpole_seed=1", "1_ppo_cartpole_seed=2"]
        assert all((sweep / j / "result.json").is_file() for j in jobs)
        assert json.loads((sweep / "summary.json").read_text())[0]["status"] == "finished"
    # A directory the user names is used as given (resume=RUN_DIR relies on it).
    named = tmp_path / "mine"
    assert cli.main(["train", *small, f"hydra.run.dir={named}"]) == 0
    assert cli.main(["train", *small, f"hydra.run.dir={named}"]) == 0
    assert not (tmp_path / "mine-2").exists()


def test_claim_dir_is_atomic(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from drlcli.sweep import claim_dir

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: claim_dir(tmp_path / "a" / "run"), range(16)))
    assert len(set(got)) == 16
    assert sorted(p.name for p in got) == sorted(["run", *(f"run-{n}" for n in range(2, 17))])
