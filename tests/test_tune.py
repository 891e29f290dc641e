"""`drl tune`: a real Optuna study (pruned, failed and complete trials, the best trial written as
a tuned set), parallel workers sharing an RDB study that a second command resumes, the pruning
hook of the runner, and the errors for bad input (before any study directory exists)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from drlcli.errors import DrlError

TINY = [
    "total_timesteps=2048",
    "eval.every=512",
    "eval.episodes=2",
    "env.max_episode_steps=200",
    "hardware.torch_threads=1",
]


def run(cmd, cwd, timeout=300):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def journal_study(path: Path, name: str) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def test_study_records_complete_pruned_and_failed_trials_and_writes_the_best(drl, tmp_path):
    # A learning rate of -1 fails the run's validation: that trial must be recorded as failed.
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "overrides": ["algo=ppo", "env=cartpole", "checkpoint.every=0"],
                "study": {"n_trials": 6, "sampler": "random", "pruner": "halving"},
                "params": {
                    "algo.learning_rate": {"type": "categorical", "choices": [0.001, -1.0]},
                    "algo.update_epochs": {"type": "int", "low": 1, "high": 20},
                },
            }
        )
    )
    out = run(
        [drl, "tune", str(space), *TINY, "--sampler-seed", "3", "--dir", str(tmp_path / "s")],
        tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    study = journal_study(tmp_path / "s" / "journal.log", "space")
    states = [t.state for t in study.trials]
    assert len(states) == 6
    assert TrialState.FAIL in states and TrialState.PRUNED in states
    assert TrialState.COMPLETE in states
    for t in study.trials:
        run_dir = Path(t.user_attrs["run_dir"])
        # Run names carry the swept values in full.
        assert f"algo.learning_rate={t.params['algo.learning_rate']!r}" in run_dir.name
        result = json.loads((run_dir / "result.json").read_text())
        if t.state == TrialState.FAIL:
            assert t.params["algo.learning_rate"] == -1.0
            assert "learning_rate must be > 0" in t.user_attrs["error"]
            assert result["status"] == "failed"
        elif t.state == TrialState.PRUNED:
            # Stopped at an evaluation before the budget; reported at nominal eval steps.
            assert result["status"] == "pruned" and result["global_step"] < 2048
            assert set(t.intermediate_values) <= {512, 1024, 1536}
        else:
            assert t.value == pytest.approx(result["eval_mean_return"])
            assert sorted(t.intermediate_values) == [512, 1024, 1536, 2048]
    best = study.best_trial
    tuned = (tmp_path / "s" / "best_tuned.yaml").read_text()
    assert tuned.startswith("# @package _global_\n")
    assert yaml.safe_load(tuned) == {
        "algo": {
            "learning_rate": best.params["algo.learning_rate"],
            "update_epochs": best.params["algo.update_epochs"],
        }
    }
    assert f"optuna-dashboard {tmp_path / 's' / 'journal.log'}" in out.stdout
    assert f"best trial {best.number}: value {best.value:.2f}" in out.stdout


def test_parallel_workers_share_an_rdb_study_that_a_second_command_resumes(
    drl, tmp_path, monkeypatch, capsys
):
    from drlcli.tune import cmd_tune

    db = tmp_path / "db" / "study.db"
    args = [
        "tune",
        "ppo_cartpole",
        *TINY,
        "total_timesteps=1024",
        "--storage",
        f"sqlite:///{db}",
        "--study",
        "shared",
        "--dir",
        str(tmp_path / "runs"),
    ]
    out = run([drl, *args, "--trials", "2", "--jobs", "2"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    storage = f"sqlite:///{db}"
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len(trials) == 2
    # Two worker processes ran one trial each.
    assert len({t.user_attrs["worker_pid"] for t in trials}) == 2
    # The same command again (here in this process) adds to the study.
    monkeypatch.chdir(tmp_path)
    assert cmd_tune([*args[1:], "--trials", "1"]) == 0
    printed = capsys.readouterr().out
    assert "(2 earlier trials)" in printed
    assert len(optuna.load_study(study_name="shared", storage=storage).trials) == 3
    assert f"optuna-dashboard sqlite:///{db}" in printed


def test_pruning_hook_stops_the_run_without_a_final_evaluation(tmp_path):
    from drlcli.cli import _compose
    from drlcli.config import to_train_config
    from drlcli.runner import RunHooks, train

    cfg = to_train_config(
        _compose([*TINY, "log.progress=none", "log.tensorboard=false", "checkpoint.every=0"])
    )
    seen: list[int] = []

    def on_eval(step: int, mean: float) -> str | None:
        seen.append(step)
        return "test verdict" if len(seen) == 2 else None

    result = train(cfg, tmp_path / "r", "test", RunHooks(on_eval=on_eval))
    assert result.status == "pruned"
    assert result.global_step == seen[-1] < 2048 and len(seen) == 2
    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    assert saved["status"] == "pruned"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuch"], "Unknown search space 'nosuch'. Valid choices: ppo_cartpole"),
        (["ppo_cartpole", "--sampler", "tpx"], "Unknown sampler 'tpx'. Did you mean 'tpe'?"),
        (["ppo_cartpole", "--pruner", "mediam"], "Unknown pruner 'mediam'. Did you mean"),
        (["ppo_cartpole", "--storage", "redis://x"], "Unknown storage 'redis://x'. Valid forms"),
        (["ppo_cartpole", "--jobs", "0"], "--jobs must be at least 1"),
        (["ppo_cartpole", "algo.learning_rate=0.1"], "the search space sweeps"),
        (["ppo_cartpole", "algo.clip_cof=0.1"], "Unknown config key 'algo.clip_cof'"),
        (["ppo_cartpole", "eval.every=0"], "--pruner halving needs periodic evaluations"),
    ],
)
def test_bad_input_fails_before_any_study_exists(argv, message, tmp_path, monkeypatch):
    from drlcli.tune import cmd_tune

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DrlError) as err:
        cmd_tune([*argv, "--dir", str(tmp_path / "study")])
    assert message in str(err.value)
    assert not (tmp_path / "study").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "sweeps nothing"),
        ({"algo.learning_rate": {"type": "uniform", "low": 0, "high": 1}}, "Valid types: float"),
        ({"algo.learning_rate": {"type": "float", "low": 1, "high": 0.1}}, "an empty range"),
        ({"algo.learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"algo.update_epochs": {"type": "int", "low": 1.5, "high": 4}}, "(integers)"),
        ({"algo.clip_coef": {"type": "categorical", "choices": []}}, "non-empty choices"),
        ({"algo.nosuch": {"type": "float", "low": 0.1, "high": 1}}, "Unknown config key"),
    ],
)
def test_bad_search_space_is_named(params, message, tmp_path, monkeypatch):
    from drlcli.tune import cmd_tune

    monkeypatch.chdir(tmp_path)
    space = tmp_path / "bad.yaml"
    space.write_text(yaml.safe_dump({"overrides": ["algo=ppo"], "params": params}))
    with pytest.raises(DrlError) as err:
        cmd_tune([str(space), "--dir", str(tmp_path / "study")])
    assert message in str(err.value)
    assert not (tmp_path / "study").exists()


def test_seeds_per_trial_average_and_report_seed_after_seed(tmp_path, monkeypatch, capsys):
    from drlcli.tune import cmd_tune, report_step

    monkeypatch.chdir(tmp_path)
    argv = ["ppo_cartpole", *TINY, "total_timesteps=1024", "--seeds", "2", "--trials", "1"]
    assert cmd_tune([*argv, "--sampler", "cmaes", "--pruner", "none", "--dir", "s"]) == 0
    assert "1 trials in" in capsys.readouterr().out
    (trial,) = journal_study(tmp_path / "s" / "journal.log", "ppo_cartpole").trials
    run_dir = Path(trial.user_attrs["run_dir"])
    finals = [json.loads((run_dir / s / "result.json").read_text()) for s in ("s1", "s2")]
    assert [f["status"] for f in finals] == ["finished", "finished"]
    assert trial.value == pytest.approx(sum(f["eval_mean_return"] for f in finals) / 2)
    # Evaluations at 512 and 1024 of each seed, seed 2's after seed 1's.
    expected = [report_step(k, i, 1024, 512) for k in (0, 1) for i in (1, 2)]
    assert sorted(trial.intermediate_values) == expected == [512, 1024, 2048, 2560]
