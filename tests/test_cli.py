"""CLI polish: `drl --version`, shell completion (installed and run by a real bash), output
width without a terminal, the start line (variant, env, tuned set, step rounding) and what
log.progress=none still prints."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest


def run(cmd, cwd, env=None, timeout=300):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_version(drl, tmp_path):
    from importlib.metadata import version

    out = run([drl, "--version"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"drl (drlcli) {version('drlcli')} — Python ")
    assert "torch 2." in out.stdout and "gymnasium 1." in out.stdout


def bash_complete(script: Path, line: str, drl: str) -> list[str]:
    """COMPREPLY of the installed completion function for ``line`` (cursor at its end), as
    bash computes it: COMP_WORDS split at bash's word breaks (= and :)."""
    program = f"""
source {script}
complete -p drl
COMP_LINE={line!r}
COMP_POINT=${{#COMP_LINE}}
read -r -a COMP_WORDS <<< "$(sed -e 's/=/ = /g' <<< "$COMP_LINE")"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_drl_complete
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{Path(drl).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "complete -o default -o nospace -F _drl_complete drl"
    return [x for x in lines[1:] if x]


def test_completion_installs_and_completes_in_bash(drl, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "share")}
    out = run([drl, "completion", "bash", "--install"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    script = tmp_path / "share" / "bash-completion" / "completions" / "drl"
    assert f"wrote {script}" in out.stdout
    assert bash_complete(script, "drl tr", drl) == ["train"]
    # After "algo=", bash completes the word after the "=".
    assert bash_complete(script, "drl train algo=ppo_", drl) == ["ppo_gru", "ppo_kl", "ppo_lstm"]
    assert bash_complete(script, "drl train env=cartpole algo.learning_r", drl) == [
        "algo.learning_rate="
    ]
    assert bash_complete(script, "drl tune ppo_c", drl) == ["ppo_cartpole"]
    assert bash_complete(script, "drl tune ppo_cartpole --pruner h", drl) == [
        "halving",
        "hyperband",
    ]
    # Hydra's own mechanism, as `drl train --hydra-help` names it, gives the same script.
    hydra_way = run([drl, "train", "-sc", "install=bash"], tmp_path)
    assert hydra_way.returncode == 0 and hydra_way.stdout == script.read_text()
    help_text = run([drl, "train", "--hydra-help"], tmp_path).stdout
    assert 'eval "$(drl train -sc install=bash)"' in help_text and "drl-train" not in help_text


def test_zsh_completion_script_and_candidates(drl, tmp_path, monkeypatch, capsys):
    from drlcli.completion import cmd_complete

    env = {**os.environ, "HOME": str(tmp_path)}
    out = run([drl, "completion", "zsh", "--install"], tmp_path, env)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / ".zfunc" / "_drl").read_text()
    assert text.startswith("#compdef drl") and "__complete zsh" in text
    # zsh does not split words at "=": candidates are whole words.
    monkeypatch.setenv("COMP_LINE", "drl train hardware=c")
    monkeypatch.delenv("COMP_POINT", raising=False)
    assert cmd_complete(["zsh"]) == 0
    assert capsys.readouterr().out.split() == ["hardware=cpu", "hardware=cuda"]
    from drlcli.config import COMPILE_MODES

    monkeypatch.setenv("COMP_LINE", "drl train hardware.compile=")
    assert cmd_complete(["zsh"]) == 0
    assert capsys.readouterr().out.split() == [f"hardware.compile={m}" for m in COMPILE_MODES]
    bad = run([drl, "completion", "fish"], tmp_path)
    assert bad.returncode == 2 and "Valid choices: bash, zsh" in bad.stderr


def test_console_width_without_a_terminal(monkeypatch):
    from drlcli.logger import PLAIN_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert not make_console().is_terminal  # pytest captures stdout
    assert make_console().width == PLAIN_WIDTH
    monkeypatch.setenv("COLUMNS", "123")
    assert make_console().width == 123


def test_start_line_summary_and_width_of_a_piped_run(drl, tmp_path):
    # A run directory far longer than 80 columns, output to a pipe.
    run_dir = tmp_path / ("a_long_directory_name_" * 4) / "ppo_gru_run"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = run(
        [
            drl,
            "train",
            "algo=ppo_gru",
            "env=cartpole_masked",
            "total_timesteps=1000",
            "eval.every=512",
            "eval.episodes=2",
            "env.max_episode_steps=50",
            "checkpoint.every=0",
            "hardware.torch_threads=1",
            "log.progress=none",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
        env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "drl: training ppo_gru (ppo) on CartPole-v1 (env=cartpole_masked) (8 envs, seed 1)" in (
        text
    )
    tuned = next(x for x in text.splitlines() if x.startswith("drl: tuned set"))
    assert tuned.startswith("drl: tuned set conf/tuned/ppo_gru_cartpole_masked.yaml applied: ")
    assert "algo.num_steps 128 -> 32" in tuned and "algo.learning_rate 0.0003 -> 0.001" in tuned
    assert "env.num_envs" not in tuned  # cartpole_masked already has 8 envs
    assert (
        "drl: total_timesteps=1000 rounds up to 1024 env steps: each update takes a whole "
        "rollout of algo.num_steps x env.num_envs = 32 x 8 = 256 steps" in text
    )
    # log.progress=none: no progress or evaluation lines, but the summary, uncut.
    assert "eval @" not in text and "Run summary" in text
    assert re.search(rf"│ run dir\s+│ {re.escape(str(run_dir))}\s+│", text), text
    assert "…" not in text
    assert not (run_dir / "drl.log").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "-sc", "install=fish"], "Valid shells: bash, zsh"),
        (["completion", "tcsh"], "Valid choices: bash, zsh"),
    ],
)
def test_bad_completion_requests(argv, message, drl, tmp_path):
    out = run([drl, *argv], tmp_path)
    assert out.returncode == 2 and message in out.stderr


def test_search_override_points_to_drl_tune():
    from drlcli.cli import check_overrides
    from drlcli.errors import DrlError

    with pytest.raises(DrlError, match=r"search=ppo_cartpole: hyperparameter search is its own"):
        check_overrides(["search=ppo_cartpole"], multirun=True)


@pytest.mark.parametrize(
    "algo, env, file, expected",
    [
        # A set made of another set (its defaults list) reports the values it brings.
        ("ddpg", "pendulum", "ddpg_pendulum", "algo.hidden_sizes [256, 256] -> [400, 300]"),
        # A pair that uses a family's set names that file.
        ("ppo", "pong", "ppo_atari", "algo.num_steps 2048 -> 128"),
    ],
)
def test_tuned_set_note_lists_what_the_set_changes(algo, env, file, expected):
    from drlcli.cli import _compose, tuned_notes

    cfg = _compose([f"algo={algo}", f"env={env}"])
    (note,) = tuned_notes(algo, env, f"{algo}_{env}", cfg)
    assert note.startswith(f"drl: tuned set conf/tuned/{file}.yaml applied: "), note
    assert expected in note and "defaults" not in note, note


def test_no_tuned_set_note_when_the_set_is_removed(tmp_path, capsys):
    """`~tuned` trains with the defaults: the start line said the tuned set was applied."""
    from drlcli import cli

    argv = ["train", "algo=ppo", "env=cartpole", "~tuned", "total_timesteps=256"]
    argv += ["env.num_envs=8", "algo.num_steps=32", "eval.episodes=1", "log.progress=none"]
    assert cli.main([*argv, f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    assert "tuned set" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, message",
    [
        ("hardware.cpu_linear=onedn,aten", r"Unknown hardware.cpu_linear 'onedn'.*onednn"),
        ("hardware.compile=none,fast", r"Unknown hardware.compile 'fast'. Valid choices: none"),
        ("hardware.vectorization=sync,threads", r"Unknown hardware.vectorization 'threads'"),
        ("log.progress=fancy", r"Unknown log.progress 'fancy'. Valid choices: auto, rich"),
        ("on_error=ignore", r"Unknown on_error 'ignore'. Valid choices: continue, stop"),
    ],
)
def test_fixed_choice_settings_are_checked_in_every_sweep_value(override, message, tmp_path):
    """A multirun checked only its first job's values: a bad one later in the sweep made its
    job's directory and failed inside it (found with hardware.cpu_linear=bogus,aten)."""
    from drlcli.cli import main
    from drlcli.errors import DrlError

    sweep_dir = tmp_path / "sweep"
    with pytest.raises(DrlError, match=message):
        check_overrides_multirun([override])
    assert main(["train", "-m", override, f"hydra.sweep.dir={sweep_dir}"]) == 2
    assert not sweep_dir.exists()


def check_overrides_multirun(overrides):
    from drlcli.cli import check_overrides

    check_overrides(overrides, multirun=True)


def test_completion_offers_the_values_the_config_accepts():
    """completion.py keeps its own lists (importing the config would slow every Tab)."""
    from drlcli.completion import KEY_VALUES
    from drlcli.config import CHOICES

    for key, choices in CHOICES.items():
        assert tuple(KEY_VALUES[key]) == tuple(choices), key
