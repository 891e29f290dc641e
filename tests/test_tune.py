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
    # The swept values over everything else the trials ran with: the PPO CartPole tuned set
    # and the command line's env setting, not the swept keys alone.
    written = yaml.safe_load(tuned)
    assert written["algo"]["learning_rate"] == best.params["algo.learning_rate"]
    assert written["algo"]["update_epochs"] == best.params["algo.update_epochs"]
    assert written["algo"]["num_steps"] == 32 and written["algo"]["gamma"] == 0.98
    assert written["env"] == {"max_episode_steps": 200}
    assert set(written) == {"algo", "env"}  # no budget, eval or checkpoint settings
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


def test_a_second_command_and_parallel_workers_draw_new_points(tmp_path, monkeypatch, capsys):
    """The same --sampler-seed seeds only a new study's first worker; a command run again on
    the study (or another worker) gets a derived seed, so it does not repeat earlier draws."""
    from drlcli.tune import TuneSpec, cmd_tune, worker_sampler_seed

    monkeypatch.chdir(tmp_path)
    argv = ["ppo_cartpole", *TINY, "total_timesteps=256", "eval.every=0", "--trials", "2"]
    argv += ["--sampler", "random", "--pruner", "none", "--sampler-seed", "7", "--dir", "s"]
    assert cmd_tune(argv) == 0 and cmd_tune(argv) == 0
    assert "sampler random (seed 7)" in capsys.readouterr().out
    trials = journal_study(tmp_path / "s" / "journal.log", "ppo_cartpole").trials
    draws = [t.params["algo.learning_rate"] for t in trials]
    assert len(draws) == 4 and len(set(draws)) == 4, draws

    spec = TuneSpec(
        *[None] * 10,
        sampler_seed=7,
        total_timesteps=0,
        eval_every=1,
        base_seed=1,
        algo_env="ppo_cartpole",
    )  # the study fields: unused here
    assert worker_sampler_seed(spec, 0) == 7
    seeds = {worker_sampler_seed(spec, 1)}
    spec.earlier_trials = 2
    seeds |= {worker_sampler_seed(spec, 0), worker_sampler_seed(spec, 1)}
    assert len(seeds) == 3 and 7 not in seeds


def test_an_unseeded_study_prints_its_drawn_seed(tmp_path, monkeypatch, capsys):
    from drlcli.tune import cmd_tune

    monkeypatch.chdir(tmp_path)
    argv = ["ppo_cartpole", *TINY, "total_timesteps=128", "eval.every=0", "--trials", "1"]
    assert cmd_tune([*argv, "--pruner", "none", "--dir", "s"]) == 0
    assert ", drawn: --sampler-seed repeats it)" in capsys.readouterr().out


def test_a_range_starting_at_a_refused_value_is_still_a_valid_space(tmp_path, monkeypatch):
    """The pre-check composes each key at the middle of its range, not at its low edge: a
    clip range from 0.0 is a valid space (a trial drawing exactly 0 would fail, and be
    recorded as failed)."""
    from drlcli.tune import Param, cmd_tune

    assert Param("a", "float", 0.0, 0.3).example() == pytest.approx(0.15)
    assert Param("a", "float", 1e-5, 1e-3, log=True).example() == pytest.approx(1e-4)
    assert Param("a", "int", 1, 10, step=3).example() == 7
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "clip.yaml"
    params = {"algo.clip_coef": {"type": "float", "low": 0.0, "high": 0.3}}
    space.write_text(yaml.safe_dump({"overrides": ["algo=ppo"], "params": params}))
    argv = [str(space), *TINY, "total_timesteps=128", "eval.every=0", "--trials", "1"]
    assert cmd_tune([*argv, "--pruner", "none", "--dir", "s"]) == 0


def test_an_interrupted_trial_says_what_to_do_not_a_resume_it_cannot_take(drl, tmp_path):
    """Ctrl-C in a trial printed `drl train resume=<trial dir>`, which is refused (a trial has
    no Hydra config); it now says the trial is recorded as failed and how to go on."""
    import signal
    import time

    from drlcli.tune import TRIAL_INTERRUPTED

    proc = subprocess.Popen(
        [
            drl,
            "tune",
            "ppo_cartpole",
            *TINY,
            "total_timesteps=10000000",
            "eval.every=5000000",
            "--trials",
            "1",
            "--pruner",
            "none",
            "--dir",
            str(tmp_path / "s"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        "drl: training" in p.read_text() for p in (tmp_path / "s").glob("trial_*/train.log")
    ):
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert TRIAL_INTERRUPTED in err and "drl train resume=" not in err, err
    (trial,) = journal_study(tmp_path / "s" / "journal.log", "ppo_cartpole").trials
    assert trial.state == TrialState.FAIL


def test_a_space_is_checked_at_points_that_can_run(tmp_path, monkeypatch):
    """A categorical whose first choice is refused with the space's other settings refused the
    whole study (found by a break pass); any point that runs makes the space valid, and a space
    none of whose points runs is refused naming the point and the reason."""
    from drlcli.tune import Param, check_space

    monkeypatch.chdir(tmp_path)
    base = ["algo=ppo", "env.num_envs=4", "algo.minibatch_size=256"]
    steps = Param("algo.num_steps", "categorical", choices=[16, 64])  # 16 x 4 < 256
    composed = check_space(base, [steps])
    assert composed.algo.num_steps == 64
    with pytest.raises(DrlError) as err:
        check_space(base, [Param("algo.num_steps", "categorical", choices=[8, 16])])
    message = str(err.value)
    assert message.startswith("No point of the search space tried can run. With ")
    assert "algo.num_steps=8" in message and "minibatch_size=256 must be between" in message
    # null and list values (written as strings) are choices too.
    nets = Param("algo.hidden_sizes", "categorical", choices=["[32, 32]", "[64]"])
    target = Param("algo.target_kl", "categorical", choices=[None, 0.02])
    composed = check_space(["algo=ppo"], [nets, target])
    assert list(composed.algo.hidden_sizes) == [32, 32] and composed.algo.target_kl is None


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
        (["ppo_cartpole", "--trials", "0"], "--trials must be at least 1"),
        (["ppo_cartpole", "--seeds", "0"], "--seeds must be at least 1"),
        (["ppo_cartpole", "algo.learning_rate=0.1"], "the search space sweeps"),
        (["ppo_cartpole", "algo.clip_cof=0.1"], "Unknown config key 'algo.clip_cof'"),
        (["ppo_cartpole", "eval.every=0"], "--pruner halving needs periodic evaluations"),
        (["ppo_cartpole", "hydra.sweep.dir=x"], "hydra.* are set per trial by drl tune"),
        (["ppo_cartpole", "seed=3"], "use --seeds N"),
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
        ({"algo.learning_rate": {"type": "float", "low": 1e-4, "high": float("inf")}}, "finite"),
        ({"algo.learning_rate": {"type": "float", "low": float("nan"), "high": 1}}, "finite"),
        ({"algo.hidden_sizes": {"type": "categorical", "choices": [[64, 64]]}}, "as a string"),
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
