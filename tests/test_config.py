"""Config composition for every option, and each bad input's message (nothing written)."""

from __future__ import annotations

import itertools

import gymnasium as gym
import pytest
import torch
from omegaconf import OmegaConf

from drlcli import cli
from drlcli.config import TrainConfig
from drlcli.errors import DrlError

ALGOS = cli.group_options("algo")
ENVS = cli.group_options("env")
HARDWARE = cli.group_options("hardware")


def test_groups_have_the_documented_options():
    assert {"ppo"} <= set(ALGOS)
    assert {"cartpole", "acrobot", "pendulum", "pong", "halfcheetah", "lunarlander"} <= set(ENVS)
    assert {"cpu", "cuda", "workers", "auto"} <= set(HARDWARE)


def test_defaults():
    cfg = OmegaConf.to_object(cli._compose([]))
    assert isinstance(cfg, TrainConfig)
    assert cfg.algo.name == "ppo" and cfg.env.id == "CartPole-v1" and cfg.hardware.device == "cpu"
    # The tuned PPO x CartPole set (RL Zoo) is applied automatically.
    assert (cfg.algo.num_steps, cfg.algo.update_epochs, cfg.algo.gamma) == (32, 20, 0.98)


# What each algo option can handle, derived from its registry spec (issue #18): a new algorithm
# gets every composition case below without editing this file.
SPECS = {a: cli.option_spec(a) for a in ALGOS}  # recurrent options: no images (issue #19)
DISCRETE_ONLY = {a for a, s in SPECS.items() if gym.spaces.Box not in s.action_spaces}
CONTINUOUS_ONLY = {a for a, s in SPECS.items() if gym.spaces.Discrete not in s.action_spaces}
IMAGE_OK = {a for a, s in SPECS.items() if s.images}
NORMALIZED_ENVS = {"mountaincar", "mountaincar_continuous", "bipedalwalker"} | {
    "halfcheetah",
    "hopper",
    "walker2d",
    "ant",
}
IMAGE_ENVS = {"pong", "breakout"}
DISCRETE_ENVS = {"cartpole", "acrobot", "cartpole_masked", "mountaincar", "lunarlander"}
DISCRETE_ENVS |= IMAGE_ENVS


def test_specs_say_what_each_algorithm_supports():
    # A guard on the derivation: the options as documented in the README's table.
    assert {"dqn", "double_dqn", "dueling_dqn", "rainbow_lite"} <= DISCRETE_ONLY
    assert {"sac", "td3", "ddpg"} <= CONTINUOUS_ONLY
    assert {"ppo", "ppo_kl", "a2c", "dqn", "rainbow_lite"} <= IMAGE_OK
    assert not {"trpo", "reinforce", "ac", "a3c", "sac", "ppo_gru", "ppo_lstm"} & IMAGE_OK
    for option, spec in SPECS.items():
        assert spec.family in ("on-policy", "off-policy", "asynchronous"), option
        assert spec.validate is not None, f"{option}: settings checks must run before a run dir"


# Every algo x env on the CPU profile; every other hardware profile with every algo on one
# discrete and one continuous env (the profile does not interact with the env choice).
COMBOS = [(a, e, "cpu") for a, e in itertools.product(ALGOS, ENVS)] + [
    (a, e, hw) for a in ALGOS for e in ("cartpole", "pendulum") for hw in HARDWARE if hw != "cpu"
]


@pytest.mark.parametrize("algo,env,hw", COMBOS)
def test_every_combination_composes_or_fails_clearly(algo, env, hw):
    overrides = [f"algo={algo}", f"env={env}", f"hardware={hw}"]
    composed = cli.check_overrides(overrides, multirun=False)
    mismatch = (algo in DISCRETE_ONLY and env not in DISCRETE_ENVS) or (
        algo in CONTINUOUS_ONLY and env in DISCRETE_ENVS
    )
    if env in ("gym", "atari"):  # the generic entries need env.id
        with pytest.raises(DrlError, match=r"env.id has no value: pass env.id=<value>"):
            cli.preflight(composed)
    elif hw == "cuda" and not torch.cuda.is_available():
        with pytest.raises(DrlError, match=r"CUDA is not available.*hardware=cpu"):
            cli.preflight(composed)
    elif env in IMAGE_ENVS and algo not in IMAGE_OK:
        with pytest.raises(DrlError, match=r"takes vector observations|cannot act in the action"):
            cli.preflight(composed)
    elif mismatch:
        with pytest.raises(DrlError, match=r"cannot act in the action space"):
            cli.preflight(composed)
    elif algo == "a3c" and env in NORMALIZED_ENVS:
        with pytest.raises(DrlError, match=r"Invalid A3C settings: env.normalize_obs"):
            cli.preflight(composed)
    else:
        cli.preflight(composed)


def test_user_overrides_beat_tuned_settings():
    cfg = cli._compose(["algo.num_steps=64", "env.num_envs=2"])
    assert cfg.algo.num_steps == 64 and cfg.env.num_envs == 2


BAD_INPUTS = [
    (["algo.clip_cof=0.1"], r"Unknown config key 'algo.clip_cof'.*Did you mean 'clip_coef'"),
    (["total_timestep=10"], r"Unknown config key 'total_timestep'.*Did you mean 'total_timesteps'"),
    (["algo.learning_rate=abc"], r"Invalid override.*'abc'.*could not be converted to Float\.$"),
    (["seed=1.5"], r"Invalid override.*seed"),
    (["algo=ppx"], r"Unknown algo 'ppx'.*Did you mean 'ppo'.*Valid choices for algo: .*ppo"),
    (["env=cartpol"], r"Unknown env 'cartpol'.*Did you mean 'cartpole'"),
    (["hardware=gpu"], r"Unknown hardware 'gpu'.*Valid choices for hardware: .*cpu"),
    (["env.id=CartPol-v1"], r"Unknown environment id 'CartPol-v1'.*Did you mean 'CartPole-v1'"),
    (["env.num_envs=0"], r"env.num_envs must be >= 1"),
    # A config value, not the env's fault: it was reported as "Making the env raised" with the
    # env's traceback (found by a break pass).
    (["env.max_episode_steps=0"], r"env.max_episode_steps must be >= 1 or null .*\(got 0\)"),
    (["algo.minibatch_size=100000"], r"minibatch_size=100000 must be between 1 and the rollout"),
    (
        ["algo.minibatch_size=100"],
        r"minibatch_size=100 does not divide the rollout num_steps x num_envs = 32 x 8 = 256, so "
        r"56 samples .* never be trained on; use a divisor \(e.g. algo.minibatch_size=128\)",
    ),
    (["algo.learning_rate=-0.1"], r"learning_rate must be > 0"),
    (["total_timesteps=0"], r"total_timesteps must be >= 1"),
    (
        ["algo=dqn", "total_timesteps=1000"],
        r"algo.learning_starts=1,000 >= total_timesteps=1,000: the whole budget would be random",
    ),
    (
        ["algo=dqn", "env=pong", "env.normalize_obs=true"],
        r"env.normalize_obs=true on image observations \(4, 84, 84\).*normalize_obs=false",
    ),
    (["hardware.device=tpu"], r"Unknown hardware.device 'tpu'.*cpu, cuda, cuda:N, auto"),
    (["eval.early_stop=true", "env.solved_return=null"], r"early_stop=true needs a threshold"),
    (["algo.learning_rate=[1,"], r"Could not parse the overrides"),
    (["env=gym"], r"env.id has no value: pass env.id=<value>"),
    (["algo=dqn", "env=pendulum"], r"algo=dqn cannot act in the action space Box"),
    # Checks inside an algorithm's spec run before a run dir exists too (issue #18).
    (["algo=dqn", "algo.loss=foo"], r"Invalid DQN settings: algo.loss must be huber or mse"),
    (["algo=sac", "env=pendulum", "algo.ent_coef=abc"], r"ent_coef must be 'auto' or a number"),
    (
        ["algo=td3", "env=pendulum", "algo.action_noise=pink"],
        r"algo.action_noise must be normal or ou \(got 'pink'\)",
    ),
    # gSDE (issue #21): SAC, PPO and A2C only, continuous actions, a valid resampling period.
    (
        ["algo=td3", "env=pendulum", "algo.use_sde=true"],
        r"use_sde=true .*not available for algo=td3: .*only sac, ppo \(and ppo_kl\), a2c, "
        r"trpo and npg "
        r".*action_noise",
    ),
    (
        ["algo=ddpg", "env=pendulum", "algo.use_sde=true"],
        r"use_sde=true .*not available for algo=ddpg",
    ),
    (["algo=reinforce", "env=pendulum", "algo.use_sde=true"], r"not available for algo=reinforce"),
    (
        ["algo=ppo_lstm", "env=pendulum", "algo.use_sde=true"],
        r"not available for recurrent PPO \(algo=ppo_gru, ppo_lstm or algo.recurrent=true\)",
    ),
    # The run's and the algorithm's problems in one message, not one per attempt.
    (
        ["algo=td3", "env=pendulum", "algo.use_sde=true", "total_timesteps=50"],
        r"Invalid settings: algo.learning_starts=10,000 >= total_timesteps=50.* "
        r"Invalid TD3 settings: algo.use_sde=true .*not available for algo=td3",
    ),
    (
        ["algo=ppo", "env.num_envs=0"],
        r"^drl: error: Invalid settings: env.num_envs must be >= 1 \(got 0\)\.$",
    ),
    (
        ["algo=ppo", "env=cartpole", "algo.use_sde=true"],
        r"use_sde=true \(gSDE\) draws continuous exploration noise.*Discrete\(2\)",
    ),
    (
        ["algo=sac", "env=pendulum", "algo.use_sde=true", "algo.sde_sample_freq=0"],
        r"algo.sde_sample_freq must be -1 .* or >= 1 .*, got 0",
    ),
    (
        ["algo=dqn", "env=cartpole", "algo.use_sde=true"],
        r"use_sde=true .*(no continuous actions|not available for algo=dqn)",
    ),
    # Found by a break pass: refused only while the network was built, after the run
    # directory existed (and inside a sweep's jobs).
    (
        ["algo=npg", "env=pendulum", "algo.shared_network=true"],
        r"Invalid TRPO / NPG settings: algo.shared_network=true is not available: trpo and npg",
    ),
    (["algo=ac", "env=cartpole", "algo.shared_network=true"], r"shared_network=true .*ac gives"),
    (["algo=reinforce", "algo.shared_network=true"], r"shared_network=true .*reinforce fits"),
    (["algo=a3c", "algo.shared_network=true"], r"shared_network=true .*a3c's workers"),
    (["tuned=null"], r"Unknown tuned 'null'\. To train without a tuned set, write ~tuned"),
]


def test_every_separate_layout_refuses_shared_network_in_validation():
    """shared_network=true is refused by validation (before a run directory exists) exactly for
    the algorithms whose networks are built in the "separate" layout (onpolicy.SEPARATE_LAYOUT);
    the others build a shared torso."""
    from drlcli import registry
    from drlcli.algos.base import EnvInfo
    from drlcli.algos.onpolicy import SEPARATE_LAYOUT
    from drlcli.config import EnvConfig

    obs = gym.spaces.Box(-1.0, 1.0, (3,), "float32")
    act = gym.spaces.Box(-1.0, 1.0, (1,), "float32")
    checked = []
    for name, spec in registry.specs().items():
        cfg = spec.config()
        if not hasattr(cfg, "shared_network"):
            continue
        cfg.shared_network = True
        if name in SEPARATE_LAYOUT:
            with pytest.raises(DrlError, match="shared_network=true is not available"):
                registry.validate(cfg, 2, EnvConfig(id="Pendulum-v1"))
        else:
            algo = registry.build(cfg, EnvInfo(obs, act, 2), torch.device("cpu"))
            assert algo.policy.layout == "shared", name  # type: ignore[attr-defined]
        checked.append(name)
    assert set(SEPARATE_LAYOUT) <= set(checked) and "ppo" in checked


def test_cfg_job_reports_bad_overrides_in_one_paragraph(capsys):
    """`drl train tuned=null --cfg job` printed Hydra's traceback (--cfg skipped the checks)."""
    assert cli.main(["train", "tuned=null", "--cfg", "job"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drl: error: Unknown tuned 'null'") and "Traceback" not in err
    assert cli.main(["train", "algo=trpo", "env=mountaincar_continuous", "--cfg", "job"]) == 0
    assert "use_sde: true" in capsys.readouterr().out


@pytest.mark.parametrize("overrides,message", BAD_INPUTS, ids=[" ".join(b[0]) for b in BAD_INPUTS])
def test_bad_input_fails_before_anything_is_written(
    overrides, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drl: error: ")
    assert len(err.strip().splitlines()) == 1, err  # one paragraph
    import re

    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == [], "a bad input must not create run directories"


def test_unknown_command_suggests(capsys):
    assert cli.main(["trian"]) == 2
    assert "Did you mean 'train'" in capsys.readouterr().err
