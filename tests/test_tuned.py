"""Tuned sets (issue #18): every pair resolves as before the sets were deduplicated, no two
files say the same thing, and shared sets are found in the documented order."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from drlcli import cli
from drlcli.tuned import ALGO_FAMILY, ENV_FAMILY, shared_tuned_sets, tuned_set_name
from tests.data.freeze_tuned import OUT as FROZEN_PATH
from tests.data.freeze_tuned import tuned_changes

TUNED_DIR = cli.config_dir() / "tuned"
FROZEN: dict[str, dict] = json.loads(FROZEN_PATH.read_text())
FILES = {p.stem for p in TUNED_DIR.glob("*.yaml")}
ALGOS, ENVS = cli.group_options("algo"), cli.group_options("env")
# Every pair a tuned set applied to before (frozen) or applies to now (by file or family).
PAIRS = sorted(
    {tuple(k.split(" ")) for k in FROZEN}
    | {(a, e) for a, e in itertools.product(ALGOS, ENVS) if tuned_set_name(a, e, FILES)}
)


@pytest.mark.parametrize("algo,env", PAIRS)
def test_tuned_set_resolves_as_before(algo, env):
    """What the tuned set changes against the same pair without one (``~tuned``), key by key,
    equals the copy frozen from the 46 files before issue #18 (tests/data/freeze_tuned.py).
    Pairs outside PAIRS select no tuned set at all, before and now."""
    assert tuned_changes(algo, env) == FROZEN.get(f"{algo} {env}", {})


def body(path) -> str:
    """A YAML file without comments and blank lines."""
    lines = (re.sub(r"\s+#.*$", "", ln).rstrip() for ln in path.read_text().splitlines())
    return "\n".join(ln for ln in lines if ln and not ln.lstrip().startswith("#"))


def test_no_two_tuned_files_share_a_body():
    seen: dict[str, str] = {}
    for path in sorted(TUNED_DIR.glob("*.yaml")):
        text = body(path)
        assert text not in seen, f"{path.name} repeats {seen.get(text)}: include it instead"
        seen[text] = path.name


def test_shared_sets_are_found_in_order():
    files = {"dqn_cartpole", "dqn_atari", "double_dqn_atari", "ppo_mujoco", "ppo_atari"}
    assert tuned_set_name("dqn", "cartpole", files) == "dqn_cartpole"
    assert tuned_set_name("rainbow_lite", "cartpole", files) == "dqn_cartpole"
    assert tuned_set_name("double_dqn", "pong", files) == "double_dqn_atari"  # own set first
    assert tuned_set_name("dueling_dqn", "pong", files) == "dqn_atari"
    assert tuned_set_name("ppo", "hopper", files) == "ppo_mujoco"
    assert tuned_set_name("ppo", "lunarlander", files) is None
    # Only listed families share: PPO-KL is no PPO variant here (its pairs had no PPO sets).
    assert "ppo_kl" not in ALGO_FAMILY and tuned_set_name("ppo_kl", "pong", files) is None
    assert set(ENV_FAMILY.values()) == {"atari", "mujoco"}


def test_shared_pairs_are_selectable_by_name():
    shared = shared_tuned_sets(cli.config_dir())
    assert shared["double_dqn_pong"] == "dqn_atari" and shared["sac_hopper"] == "sac_mujoco"
    assert set(shared) <= set(cli.group_options("tuned"))
    assert not set(shared) & FILES
    cfg = cli._compose(["algo=dqn", "env=cartpole", "tuned=double_dqn_pong"])
    assert cfg.total_timesteps == 10_000_000 and cfg.checkpoint.keep_last == 1


@pytest.mark.parametrize(
    "algo,expected",
    [
        ("ppo", (2048, 64, False)),  # issue #21's measurement (benchmarks/defaults_study.py)
        ("ppo_kl", (128, 256, True)),  # the variants keep PPO's earlier defaults
        ("ppo_gru", (128, 256, True)),
        ("ppo_lstm", (128, 256, True)),
    ],
)
def test_ppo_family_defaults_without_a_tuned_set(algo, expected):
    cfg = cli._compose([f"algo={algo}", "env=mountaincar_continuous"])
    a = cfg.algo
    assert (a.num_steps, a.minibatch_size, a.anneal_lr) == expected


@pytest.mark.parametrize("algo", ["dqn", "double_dqn", "dueling_dqn", "rainbow_lite"])
def test_dqn_family_defaults_without_a_tuned_set(algo):
    """Issue #21's measurement (benchmarks/defaults_study.py): the Zoo's classic-control values."""
    a = cli._compose([f"algo={algo}", "env=mountaincar"]).algo
    assert (a.learning_rate, a.batch_size, a.target_update_interval) == (6.3e-4, 128, 250)
    assert (a.exploration_fraction, a.exploration_final_eps) == (0.12, 0.1)
