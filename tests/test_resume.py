"""Reliability: resume after SIGTERM, SIGKILL mid-checkpoint, NaN guard, bad resume inputs."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from drlcli import checkpoint as ckpt
from drlcli import cli
from drlcli.config import to_train_config
from drlcli.errors import DrlError
from drlcli.runner import train

STEPS = 16384
COMMON = [
    f"total_timesteps={STEPS}",
    "algo.num_steps=64",
    "env.num_envs=4",
    "eval.every=4096",
    "eval.episodes=2",
    "checkpoint.every=4096",
    "log.every=256",
    "log.progress=plain",
    "log.console_every_s=0",
    "hardware.torch_threads=1",
    "env.max_episode_steps=100",
]


def popen(drl, args, cwd, env):
    return subprocess.Popen(
        [drl, "train", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def signal_at_step(proc: subprocess.Popen, step: int, send) -> tuple[str, str]:
    """Read a plain-progress run's output until it reports ``step``, call ``send()``, and wait
    for it to exit; returns (output before the signal, output after)."""
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step") and int(line.split()[1].split("/")[0]) >= step:
            send()
            break
    return "".join(lines), proc.communicate(timeout=120)[0]


def final_state(run_dir: Path) -> dict:
    return ckpt.latest_loadable(run_dir / "checkpoints")


def scalar_steps(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


SAC_ARGS = [
    "algo=sac",
    "env=pendulum",
    "total_timesteps=3000",
    "algo.learning_starts=500",
    "algo.hidden_sizes=[32,32]",
    "eval.every=1000",
    "eval.episodes=2",
    "checkpoint.every=1000",
    "log.every=100",
    "log.progress=plain",
    "log.console_every_s=0",
    "hardware.torch_threads=1",
]
DQN_PONG_ARGS = [
    "algo=dqn",
    "env=pong",
    "total_timesteps=800",
    "algo.learning_starts=200",
    "algo.buffer_size=500",
    "algo.batch_size=16",
    "algo.target_update_interval=100",
    "env.max_episode_steps=300",
    "eval.every=400",
    "eval.episodes=1",
    "checkpoint.every=200",
    "log.every=100",
    "log.progress=plain",
    "log.console_every_s=0",
    "hardware.torch_threads=1",
]
RUNS = {
    "ppo": (COMMON, STEPS),
    # Frames in compact uint8 replay (wrapped: 800 steps into 500 slots) and ALE state.
    "dqn_pong": (DQN_PONG_ARGS, 800),
    "sac": (SAC_ARGS, 3000),
    # Stateful on-policy methods: whole-episode batches (which envs run an old-policy episode),
    # the carried recurrent state and the adaptive KL beta must all survive the restart.
    "reinforce": (["algo=reinforce", *COMMON], STEPS),
    "ppo_gru": (["algo=ppo_gru", "algo.minibatch_size=128", *COMMON], STEPS),
    "ppo_kl": (["algo=ppo_kl", *COMMON], STEPS),
    "trpo": (["algo=trpo", *COMMON], STEPS),
    # gSDE (issue #21): the exploration matrices and their step count are checkpointed; with
    # sde_sample_freq they are also redrawn inside collection phases.
    "sac_sde": ([*SAC_ARGS, "algo.use_sde=true", "algo.sde_sample_freq=4"], 3000),
    "ppo_sde": (
        ["env=pendulum", "algo.use_sde=true", "algo.sde_sample_freq=8", *COMMON],
        STEPS,
    ),
    # TRPO's gSDE (the separate layout built as the sde one): its tuned Pendulum set's settings.
    "trpo_sde": (
        ["algo=trpo", "env=pendulum", "algo.use_sde=true", "algo.sde_sample_freq=4", *COMMON],
        STEPS,
    ),
}


def assert_same_tensors(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_tensors(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_sigterm_then_resume_equals_straight_run(drl, clean_env, tmp_path, algo):
    """PPO, SAC (replay buffer included) and the stateful on-policy methods: kill with SIGTERM
    halfway, resume, and end with bit-identical parameters, optimizer and replay state and the
    same TensorBoard curves."""
    args, total = RUNS[algo]
    straight = tmp_path / "straight"
    out = subprocess.run(
        [drl, "train", *args, f"hydra.run.dir={straight}"],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr

    resumed = tmp_path / "resumed"
    proc = popen(drl, [*args, f"hydra.run.dir={resumed}"], tmp_path, clean_env)
    before, rest = signal_at_step(proc, total // 2, lambda: proc.send_signal(signal.SIGTERM))
    assert proc.returncode == 143, before + rest
    assert "Resume with:" in rest and f"drl train resume={resumed}" in rest
    stopped_at = final_state(resumed)["step"]
    assert total // 2 <= stopped_at < total

    out = subprocess.run(
        [drl, "train", f"resume={resumed}"],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resumed from" in out.stdout and "episodes restarted" not in out.stdout

    a, b = final_state(straight), final_state(resumed)
    assert a["step"] == b["step"] >= total
    assert_same_tensors(a["algo"], b["algo"])  # networks, optimizers, replay, RNG
    # The summary's episode count covers the whole run, not the part since the resume.
    assert a["episodes"] == b["episodes"] > 0
    # One continuous curve: the same steps and values, no duplicates, nothing missing.
    tags = {
        "ppo": ("charts/learning_rate", "losses/value_loss", "eval/mean_return"),
        "sac": ("losses/critic_loss", "losses/alpha", "eval/mean_return"),
        "sac_sde": ("losses/critic_loss", "losses/entropy", "eval/mean_return"),
        "ppo_sde": ("charts/action_std", "losses/value_loss", "eval/mean_return"),
        "dqn_pong": ("losses/td_loss", "charts/epsilon", "eval/mean_return"),
        "ppo_kl": ("charts/kl_beta", "losses/kl", "eval/mean_return"),
        "trpo": ("losses/kl", "charts/line_search_backtracks", "eval/mean_return"),
    }.get(algo, ("losses/entropy", "losses/value_loss", "eval/mean_return"))
    for tag in tags:
        assert scalar_steps(resumed, tag) == scalar_steps(straight, tag), tag
    # SPS is also logged where the run was stopped, which may fall between two log steps.
    sps_steps = [step for step, _ in scalar_steps(resumed, "charts/SPS")]
    straight_sps = [s for s, _ in scalar_steps(straight, "charts/SPS")]
    assert sps_steps == sorted(set(sps_steps))
    assert [s for s in sps_steps if s != stopped_at] == [s for s in straight_sps if s != stopped_at]
    info = json.loads((resumed / "run_info.json").read_text())
    assert info["resumes"][0]["from_step"] == stopped_at


def test_sigkill_during_checkpoint_write_resumes_from_previous(drl, clean_env, tmp_path):
    run_dir = tmp_path / "run"
    env = dict(clean_env, DRLCLI_TEST_CKPT_WRITE_DELAY="60:1")  # 2nd write hangs before rename
    proc = popen(drl, [*COMMON, f"hydra.run.dir={run_dir}"], tmp_path, env)
    deadline = time.time() + 120
    ckpts = run_dir / "checkpoints"
    while time.time() < deadline:
        # A temporary file once the first checkpoint is complete: the second write. (The
        # first write's own temporary file, seen before its rename, made this test flaky.)
        first_done = [s for s, _ in ckpt.list_checkpoints(ckpts)] == [4096]
        if first_done and list(ckpts.glob(".step_*.pt.*.tmp")):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the second checkpoint write never started")
    proc.send_signal(signal.SIGKILL)
    killed_output = proc.communicate(timeout=30)[0]
    saved = [s for s, _ in ckpt.list_checkpoints(run_dir / "checkpoints")]
    assert saved == [4096], killed_output

    out = subprocess.run(
        [drl, "train", f"resume={run_dir}"],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "step_0000004096.pt at step 4096" in out.stdout, out.stdout + out.stderr
    assert final_state(run_dir)["step"] >= STEPS
    assert not list((run_dir / "checkpoints").glob(".*.tmp")), "partial write not cleaned up"
    steps = [s for s, _ in scalar_steps(run_dir, "charts/learning_rate")]
    assert steps == sorted(set(steps)), "duplicated or unordered steps after resume"


class BigRewardAfter(gym.Wrapper):
    """Test wrapper: finite rewards so large (1e38) after ``after`` steps that the float32 returns
    overflow and training diverges. (A NaN reward is the env's fault and stopped at the env.)"""

    def __init__(self, env, after: int):
        super().__init__(env)
        self.after, self.t = after, 0

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.t += 1
        return obs, (1e38 if self.t > self.after else reward), term, trunc, info


def test_nan_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path):
    cfg = to_train_config(
        cli._compose(
            [
                *COMMON,
                "log.progress=none",
                "+env.wrappers=[{name: 'tests.test_resume:BigRewardAfter', kwargs: {after: 1500}}]",
            ]
        )
    )
    with pytest.raises(DrlError, match=r"diverged at env step \d+: parameter .*losses/.*(nan|inf)"):
        train(cfg, tmp_path / "run")
    saved = [s for s, _ in ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert saved == [4096]  # before the NaNs; nothing written after them
    state = ckpt.latest_loadable(tmp_path / "run" / "checkpoints")
    assert all(torch.isfinite(t).all() for t in state["algo"]["policy"].values())


def test_divergence_hint_names_the_settings_that_move_the_policy(tmp_path):
    """TRPO / NPG step the actor by max_kl; their learning rate and gradient clip are only the
    critic's, so the hint a divergence gives them names max_kl (found by a break pass)."""
    from types import SimpleNamespace

    from drlcli.config import PPOConfig, TRPOConfig
    from drlcli.runner import TrainingRun

    for algo, wanted, absent in [
        (TRPOConfig(), "Try a smaller algo.max_kl (the actor's", "max_grad_norm"),
        (PPOConfig(), "Try a lower algo.learning_rate, a smaller algo.max_grad_norm", "max_kl"),
    ]:
        run = SimpleNamespace(ckpt_dir=tmp_path, cfg=SimpleNamespace(algo=algo))
        msg = str(TrainingRun.diverged(run, 100, "parameter actor.0.weight"))  # type: ignore[arg-type]
        assert msg.startswith("Training diverged at env step 100: parameter actor.0.weight")
        assert wanted in msg and absent not in msg, msg


def test_resume_bad_inputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Not a run directory.
    assert cli.main(["train", f"resume={tmp_path / 'nope'}"]) == 2
    assert "is not a drl run directory" in capsys.readouterr().err
    # A run directory whose only checkpoint is corrupt.
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("[]\n")
    (run / "checkpoints").mkdir()
    ckpt.checkpoint_path(run / "checkpoints", 10).write_bytes(b"not a checkpoint")
    assert cli.main(["train", f"resume={run}"]) == 2
    err = capsys.readouterr().err
    assert "No loadable checkpoint" in err and "corrupt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing else written


def test_resume_refuses_a_changed_config(tmp_path):
    overrides = [*COMMON, "log.progress=none", "total_timesteps=512", "checkpoint.every=256"]
    first = to_train_config(cli._compose(overrides))
    train(first, tmp_path)
    changed = to_train_config(
        cli._compose([*overrides, "algo.learning_rate=0.5", f"resume={tmp_path}"])
    )
    with pytest.raises(DrlError, match=r"algo.learning_rate: 0.001 -> 0.5"):
        train(changed, tmp_path)
    # Extending the budget is allowed.
    longer = to_train_config(
        cli._compose([*overrides, "total_timesteps=1024", f"resume={tmp_path}"])
    )
    assert train(longer, tmp_path).global_step >= 1024


def test_refused_resume_leaves_the_run_untouched(tmp_path, monkeypatch, capsys):
    """A resume with another algo/env or a changed setting is refused before Hydra writes into
    the run: it used to rewrite .hydra/overrides.yaml (so a plain retry was refused too) and
    replace result.json with the failure (found by a break pass)."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "r1"
    small = [*COMMON, "log.progress=none", "total_timesteps=512", "checkpoint.every=256"]
    assert cli.main(["train", *small, f"hydra.run.dir={run}"]) == 0
    capsys.readouterr()
    files = ["result.json", ".hydra/overrides.yaml", ".hydra/config.yaml", ".hydra/hydra.yaml"]
    before = {f: (run / f).read_bytes() for f in files}
    assert cli.main(["train", f"resume={run}", "env=acrobot"]) == 2
    err = capsys.readouterr().err
    assert "it trained ppo on CartPole-v1 and this command asks for env CartPole-v1 -> " in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert cli.main(["train", f"resume={run}", "algo.learning_rate=0.5"]) == 2
    assert "algo.learning_rate: 0.001 -> 0.5" in capsys.readouterr().err
    assert {f: (run / f).read_bytes() for f in files} == before
    # The plain retry works and keeps the first segment's result.
    assert cli.main(["train", f"resume={run}", "total_timesteps=1024"]) == 0
    saved = json.loads((run / "result.json").read_text())
    assert saved["status"] == "finished" and saved["global_step"] >= 1024
    assert [s["global_step"] for s in saved["segments"]] == [512]


def test_resume_after_a_signal_in_the_final_evaluation_finishes_the_run(tmp_path):
    """A signal during the final evaluation leaves the last checkpoint at the budget and
    result.json "interrupted" with no return. Resuming with the same budget runs that
    evaluation: the run ends "finished", logged and written like any (it used to stay
    "interrupted", which a requeued sweep counts as not finished: found by a break pass)."""
    overrides = [*COMMON, "log.progress=none", "total_timesteps=512", "resume=auto"]
    first = train(to_train_config(cli._compose(overrides)), tmp_path)
    # The state such a signal leaves (wind_down checkpoints before it evaluates).
    cut = json.loads((tmp_path / "result.json").read_text())
    cut.update(status="interrupted", interrupted_by="SIGTERM", eval_mean_return=None)
    (tmp_path / "result.json").write_text(json.dumps(cut))
    evals_before = [s for s, _ in scalar_steps(tmp_path, "eval/mean_return")]
    again = train(to_train_config(cli._compose(overrides)), tmp_path)
    assert again.status == "finished" and again.global_step == first.global_step
    assert np.isfinite(again.eval_mean_return)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["status"] == "finished" and saved["eval_mean_return"] == again.eval_mean_return
    assert [s["status"] for s in saved["segments"]] == ["interrupted"]
    evals = [s for s, _ in scalar_steps(tmp_path, "eval/mean_return")]
    assert evals[-1] == first.global_step and len(evals) == len(evals_before) + 1


def test_resume_of_a_checkpoint_from_before_a_new_setting(tmp_path):
    """A checkpoint written before a setting existed (algo.anneal_lr for SAC was added after
    runs were saved) resumes when the setting is left at its default, which is the behaviour
    from before it; set to anything else on resume, it is a changed config. The resumed
    segment's resolved hardware lands in run_info.json."""
    from drlcli.runner import field_default

    overrides = [
        "algo=sac",
        "env=pendulum",
        "algo.learning_starts=64",
        "algo.batch_size=32",
        "algo.hidden_sizes=[16]",
        "total_timesteps=128",
        "eval.every=0",
        "log.progress=none",
        "hardware.torch_threads=1",
    ]
    cfg = to_train_config(cli._compose(overrides))
    train(cfg, tmp_path)
    path = ckpt.list_checkpoints(tmp_path / "checkpoints")[-1][1]
    state = ckpt.load(path)
    saved_algo = state["config"]["algo"]
    dropped = [k for k, v in saved_algo.items() if v == field_default(cfg, f"algo.{k}")]
    assert "anneal_lr" in dropped
    for key in dropped:  # as a checkpoint from before each of these settings
        del state["config"]["algo"][key]
    ckpt.atomic_save(state, path)
    later = [*overrides, "total_timesteps=192", f"resume={tmp_path}"]
    with pytest.raises(DrlError, match=r"algo.anneal_lr: None -> True"):
        train(to_train_config(cli._compose([*later, "algo.anneal_lr=true"])), tmp_path)
    result = train(to_train_config(cli._compose([*later, "hardware.cpu_linear=aten"])), tmp_path)
    assert result.global_step >= 192
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["resumes"][-1]["hardware"]["cpu_linear"] == "aten"


def test_resume_from_a_periodic_checkpoint_keeps_the_checkpoint_schedule(tmp_path):
    """A periodic checkpoint stored the schedule before its next checkpoint step was advanced,
    so a run resumed from it wrote an extra checkpoint at its first update."""
    overrides = [
        *COMMON,
        "log.progress=none",
        "total_timesteps=1024",
        "checkpoint.every=512",
        "checkpoint.keep_last=10",
        "eval.every=0",
        "resume=auto",
    ]  # 256 env steps per update: checkpoints at 512 and at the end, 1024
    train(to_train_config(cli._compose(overrides)), tmp_path)
    ckpts = tmp_path / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(ckpts)] == [512, 1024]
    (ckpts / "step_0000001024.pt").unlink()  # as if preempted between the two
    train(to_train_config(cli._compose(overrides)), tmp_path)
    assert [s for s, _ in ckpt.list_checkpoints(ckpts)] == [512, 1024]


def test_resume_auto_starts_fresh_then_continues(tmp_path):
    overrides = [*COMMON, "log.progress=none", "total_timesteps=512", "resume=auto"]
    assert train(to_train_config(cli._compose(overrides)), tmp_path).global_step >= 512
    more = to_train_config(cli._compose([*overrides, "total_timesteps=1024"]))
    result = train(more, tmp_path)
    assert result.global_step >= 1024
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert len(info["resumes"]) == 1


def test_missing_dependency_and_incompatible_spaces(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    class NeedsBox2D(gym.Env):
        def __init__(self):
            raise gym.error.DependencyNotInstalled("Box2D is not installed")

    class MultiBinaryEnv(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
        action_space = gym.spaces.MultiBinary(3)

    gym.register("DrlTestNeedsBox2D-v0", entry_point=NeedsBox2D)
    gym.register("DrlTestMultiBinary-v0", entry_point=MultiBinaryEnv)
    try:
        assert cli.main(["train", "env.id=DrlTestNeedsBox2D-v0"]) == 2
        assert "needs an optional dependency" in capsys.readouterr().err
        # MultiBinary actions are for the policy-gradient family (issue #19); DQN refuses them.
        assert cli.main(["train", "algo=dqn", "env.id=DrlTestMultiBinary-v0"]) == 2
        assert "cannot act in the action space MultiBinary(3)" in capsys.readouterr().err
    finally:
        del gym.registry["DrlTestNeedsBox2D-v0"]
        del gym.registry["DrlTestMultiBinary-v0"]
    assert list(tmp_path.iterdir()) == []


def test_reproducible_metrics_for_a_fixed_seed(tmp_path):
    overrides = [
        *COMMON,
        "log.progress=none",
        "total_timesteps=2048",
        "hardware.deterministic=true",
    ]
    results = []
    for name in ("a", "b"):
        train(to_train_config(cli._compose(overrides)), tmp_path / name)
        results.append(scalar_steps(tmp_path / name, "losses/value_loss"))
    assert results[0] == results[1] and len(results[0]) > 3


def test_resuming_a_finished_run_logs_nothing_new(tmp_path):
    overrides = [*COMMON, "log.progress=none", "total_timesteps=512", "resume=auto"]
    first = train(to_train_config(cli._compose(overrides)), tmp_path)
    before = scalar_steps(tmp_path, "charts/SPS")
    again = train(to_train_config(cli._compose(overrides)), tmp_path)
    assert again.global_step == first.global_step
    assert again.eval_mean_return == first.eval_mean_return
    assert scalar_steps(tmp_path, "charts/SPS") == before
    # The finished run's own figures survive the requeue (issue #16: SPS 0, a 12 s wall time).
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["sps"] == first.sps and saved["wall_time_s"] == first.wall_time_s


@pytest.mark.parametrize(
    "overrides,tag",
    [
        (["algo=ppo", "algo.anneal_lr=true"], "charts/learning_rate"),
        (["algo=a2c", "algo.anneal_lr=true"], "charts/learning_rate"),
        (
            # One learner: with two, their racing report windows make the averaged lr noisy.
            ["algo=a3c", "algo.num_workers=1", "algo.anneal_lr=true", "algo.report_every=256"],
            "charts/learning_rate",
        ),
        (
            [
                "algo=dqn",
                "algo.learning_starts=256",
                "algo.exploration_fraction=1.0",
                "algo.train_freq=4",
                "algo.gradient_steps=1",
                "algo.batch_size=32",
                "env.num_envs=1",
            ],
            "charts/epsilon",
        ),
    ],
    ids=["ppo_lr", "a2c_lr", "a3c_lr", "dqn_epsilon"],
)
def test_extending_the_budget_on_resume_continues_schedules(tmp_path, overrides, tag):
    """Issue #16: `resume=RUN total_timesteps=<larger>` made PPO's annealed learning rate jump
    back up (7.8e-5 -> 3.2e-4) and the eval fall. Every schedule continues from where it was and
    decays over the new remaining budget: never rises, reaches its end at the new budget."""
    on_policy = "algo=dqn" not in overrides
    common = [c for c in COMMON if on_policy or not c.startswith("algo.num_steps")]
    base = [*common, *overrides, "log.progress=none", "eval.every=0", "checkpoint.every=0"]
    first = train(to_train_config(cli._compose([*base, "total_timesteps=2048"])), tmp_path)
    assert first.global_step >= 2048
    before = scalar_steps(tmp_path, tag)
    longer = [*base, "total_timesteps=6144", f"resume={tmp_path}"]
    second = train(to_train_config(cli._compose(longer)), tmp_path)
    assert second.global_step >= 6144
    values = scalar_steps(tmp_path, tag)
    after = [v for s, v in values if s > first.global_step]
    assert len(after) > 3, values
    last_before = before[-1][1]
    # No jump at the resume step, and monotone from there (float32 events: a small tolerance).
    assert after[0] <= last_before + 1e-6, (last_before, after[:3])
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(after)), after
    # The schedule spends its remaining course over the new budget: it is still decaying after
    # the resume (a finished run's clock stood at its end; the last update's value carries on).
    assert after[-1] < after[0] <= last_before
    # Both segments' results are kept: the first one under "segments".
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["global_step"] == second.global_step and saved["sps"] == second.sps
    assert [seg["global_step"] for seg in saved["segments"]] == [first.global_step]
    assert saved["segments"][0]["sps"] == first.sps


GROUP_SIGNAL_RUNS = {
    "sync": [],
    "workers": ["hardware=workers", "hardware.num_workers=2"],
    "async": ["hardware.vectorization=async"],
    "a3c": ["algo=a3c", "algo.num_workers=2", "algo.report_every=256"],
}


@pytest.mark.parametrize(
    "mode,sig",
    [(m, signal.SIGTERM) for m in sorted(GROUP_SIGNAL_RUNS)] + [("workers", signal.SIGINT)],
    ids=[*sorted(GROUP_SIGNAL_RUNS), "workers-ctrl-c"],
)
def test_group_signal_checkpoints_and_resumes(drl, clean_env, tmp_path, mode, sig):
    """Issue #16: SLURM, `timeout`, job runners (and Ctrl-C) signal the whole process group.
    With env worker processes (workers, async) or A3C learners, the children used to die first
    and the preemption checkpoint was lost (exit 2, or a BrokenPipeError and exit 1). Now:
    checkpoint, exit 143 (130 for SIGINT), the resume command, and a resumed run whose curves
    have no duplicated or missing step."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [drl, "train", *COMMON, *GROUP_SIGNAL_RUNS[mode], f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a batch job has
    )
    # kill -TERM -- -PGID, or Ctrl-C in a terminal
    before, rest = signal_at_step(proc, STEPS // 4, lambda: os.killpg(proc.pid, sig))
    output = before + rest
    assert proc.returncode == 128 + sig, output
    assert f"drl train resume={run_dir}" in rest and "Traceback" not in output, output
    stopped_at = final_state(run_dir)["step"]
    assert STEPS // 4 <= stopped_at < STEPS

    out = subprocess.run(
        [drl, "train", f"resume={run_dir}"],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert final_state(run_dir)["step"] >= STEPS
    tag = "charts/SPS" if mode == "a3c" else "losses/value_loss"
    steps = [s for s, _ in scalar_steps(run_dir, tag)]
    assert steps == sorted(set(steps)) and steps[-1] >= STEPS, steps
    if mode != "a3c":  # one log point per 256-step update, none missing, none twice
        assert steps == list(range(256, STEPS + 1, 256)), steps


@pytest.mark.parametrize(
    "hardware",
    [["hardware=workers", "hardware.num_workers=2"], ["hardware.vectorization=async"]],
    ids=["workers", "async"],
)
def test_nstep_returns_never_straddle_a_resume_with_restarted_envs(tmp_path, hardware):
    """Issue #16: envs in other processes have no snapshot, so a resume restarts their episodes.
    The last transition before the resume must end its stream (marked truncated: it still
    bootstraps from its true next state), or rainbow_lite's 3-step returns summed rewards of
    two episodes and bootstrapped from the restarted one (4 of 8000 transitions did)."""
    base = [
        "algo=rainbow_lite",
        "env=cartpole",
        "env.num_envs=2",
        *hardware,
        "algo.learning_starts=200",
        "algo.buffer_size=10000",
        "algo.batch_size=32",
        "algo.train_freq=4",
        "algo.gradient_steps=1",
        "algo.save_replay=true",
        "eval.every=0",
        "eval.episodes=1",
        "checkpoint.every=0",
        "log.progress=none",
        "hardware.torch_threads=1",
    ]
    train(to_train_config(cli._compose([*base, "total_timesteps=1000"])), tmp_path)
    resumed = [*base, "total_timesteps=2000", f"resume={tmp_path}"]
    train(to_train_config(cli._compose(resumed)), tmp_path)
    replay = final_state(tmp_path)["algo"]["offpolicy"]["replay"]
    obs, next_obs = replay["obs"].numpy(), replay["next_obs"].numpy()
    ended = (replay["terminated"] | replay["truncated"]).numpy()
    rows = obs.shape[0]
    assert rows * 2 >= 2000 - 8  # nothing wrapped: every stored step is checked
    # Wherever a stream continues, the next row starts from this row's next observation.
    cont = ~ended[:-1]
    assert np.array_equal(next_obs[:-1][cont], obs[1:][cont])
    # The resume row itself is the one marked: a truncation, not a termination.
    r = 1000 // 2 - 1
    assert replay["truncated"][r].all() and not replay["terminated"][r].any()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_before_training_exits_cleanly(drl, clean_env, tmp_path, sig):
    """A preemption during start-up (imports, config, envs) exits 143 / 130 with one line,
    never a traceback or a death by the signal (exit -15), which the soak check had seen."""
    env = dict(clean_env, DRL_TEST_SLOW_IMPORT_S="30")
    proc = subprocess.Popen(
        [drl, "train", "env.imports=[tests.envs_slow_import]", f"hydra.run.dir={tmp_path}/r"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    time.sleep(4)
    os.killpg(proc.pid, sig)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + sig, out
    assert "outside the training loop" in out and "Traceback" not in out, out


@pytest.mark.parametrize("draws", [0, 1, 3])
def test_offpolicy_sampler_state_survives_a_checkpoint_after_any_number_of_draws(draws):
    """PCG64 buffers half of a 64-bit draw for the next 32-bit one; a checkpoint that dropped
    it made a resume after an odd number of draws sample other replay indices than the
    uninterrupted run (SAC resumed at step 901 ended at -1245 instead of -1263)."""
    import gymnasium as gym
    import numpy as np
    import torch

    from drlcli import cli, registry
    from drlcli.algos.base import EnvInfo
    from drlcli.config import to_train_config

    def build():
        torch.manual_seed(0)
        cfg = to_train_config(cli._compose(["algo=sac", "env=pendulum"]))
        obs = gym.spaces.Box(-8.0, 8.0, (3,), np.float32)
        act = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        return registry.build(cfg.algo, EnvInfo(obs, act, 1), torch.device("cpu"))

    algo = build()
    for _ in range(draws):
        algo.rng.integers(0, 1000)  # one 32-bit draw each
    state = algo.replay_state()
    expected = algo.rng.integers(0, 1000, size=8)
    resumed = build()
    resumed.load_replay_state(state)
    np.testing.assert_array_equal(resumed.rng.integers(0, 1000, size=8), expected)
    # A checkpoint written before the buffered half was saved still loads.
    old = {k: v for k, v in state.items() if k not in ("rng_has_uint32", "rng_uinteger")}
    build().load_replay_state(old)
