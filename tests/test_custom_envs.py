"""Bring your own env (#17): registration by module, Discrete(n, start), episodes that never
end, NaN from the env, NaN diagnostics, videos of envs that cannot render, and envs that raise.
The envs live in tests/envs_custom.py (importing it registers them, as a user's package does)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from drlcli import checkpoint as ckpt
from drlcli import cli
from drlcli.config import EnvConfig, to_train_config
from drlcli.envs import VecEnv, check_env_id
from drlcli.errors import DrlError
from drlcli.evaluation import run_eval
from drlcli.runner import train
from tests.conftest import REPO

MOD = "tests.envs_custom"
FAST = [
    "env=gym",
    "env.num_envs=4",
    "eval.every=0",
    "eval.episodes=2",
    "checkpoint.every=0",
    "log.progress=none",
    "hardware.torch_threads=1",
]
PPO = ["algo.num_steps=32", "algo.minibatch_size=64"]
DQN = [
    "algo=dqn",
    "algo.learning_starts=400",
    "algo.target_update_interval=200",
    "algo.learning_rate=1e-3",
    "algo.exploration_fraction=0.3",
    "algo.train_freq=1",
]


def config(*overrides: str):
    """Compose, pre-check (as `drl train` does) and type a config."""
    composed = cli.check_overrides([*FAST, *overrides], multirun=False)
    cli.preflight(composed)
    return to_train_config(composed)


def subprocess_env(clean_env: dict[str, str]) -> dict[str, str]:
    """`tests.envs_custom` importable in a fresh `drl` process started anywhere."""
    path = os.pathsep.join(p for p in (str(REPO), clean_env.get("PYTHONPATH", "")) if p)
    return dict(clean_env, PYTHONPATH=path)


def short(run_dir: Path) -> list[str]:
    return ["total_timesteps=256", f"hydra.run.dir={run_dir}"]


def result_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


# --- 1. registration: module:Id and env.imports --------------------------------------------
@pytest.mark.parametrize(
    "env_keys,hardware",
    [
        ([f"env.id={MOD}:DrlShifted-v0"], "sync"),
        ([f"env.id={MOD}:DrlShifted-v0"], "workers"),
        (["env.id=DrlShifted-v0", f"env.imports=[{MOD}]"], "sync"),
        (["env.id=DrlShifted-v0", f"env.imports=[{MOD}]"], "workers"),
        (["env.id=DrlShifted-v0", f"env.imports=[{MOD}]"], "async"),
    ],
)
def test_own_env_trains_by_module_id_or_imports(tmp_path, env_keys, hardware):
    hw = {
        "sync": [],
        "workers": ["hardware=workers", "hardware.num_workers=2"],
        "async": ["hardware.vectorization=async"],
    }[hardware]
    result = train(config(*env_keys, *hw, *PPO, "total_timesteps=2048"), tmp_path / "run")
    assert result.status == "finished"
    assert result.eval_mean_return == 50.0  # Discrete(3, start=1) learned to the optimum


def test_imports_apply_in_a_fresh_process_its_workers_and_drl_eval(drl, clean_env, tmp_path):
    """A new `drl` process imports the module named in env.imports before checking the id, its
    env workers make their envs, and `drl eval` (another process) makes the env again."""
    env = subprocess_env(clean_env)
    run = tmp_path / "run"
    args = [*FAST, "env.id=DrlShifted-v0", f"env.imports=[{MOD}]", *PPO, "total_timesteps=2048"]
    out = subprocess.run(
        [drl, "train", *args, "hardware=workers", "hardware.num_workers=2", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert result_of(run)["eval_mean_return"] == 50.0
    out = subprocess.run(
        [drl, "eval", str(run)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mean return 50.00" in out.stdout


def test_a3c_learners_import_the_module_in_their_own_processes(tmp_path):
    # A3C's learners are spawned: fresh interpreters that know nothing of tests.envs_custom
    # until make_single_env imports it there.
    cfg = config(
        "algo=a3c",
        "algo.num_workers=1",
        "algo.report_every=256",
        "env.id=DrlShifted-v0",
        f"env.imports=[{MOD}]",
        "total_timesteps=1024",
    )
    assert train(cfg, tmp_path / "a3c").status == "finished"


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="the joblib extra is not installed",
)
def test_imports_apply_in_launcher_jobs(drl, clean_env, tmp_path):
    """joblib runs each job in a worker process of its own, which imports env.imports itself."""
    sweep = tmp_path / "sweep"
    launcher = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    launcher.append(f"hydra.sweep.dir={sweep}")
    own = ["env.id=DrlShifted-v0", f"env.imports=[{MOD}]", *PPO, "total_timesteps=256"]
    out = subprocess.run(
        [drl, "train", *launcher, "seed=1,2", *FAST, *own],
        cwd=tmp_path,
        env=subprocess_env(clean_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = sorted(sweep.glob("*/result.json"))
    assert len(runs) == 2 and all(json.loads(r.read_text())["status"] == "finished" for r in runs)
    assert f"env.imports=[{MOD}]" in " ".join(out.stdout.split())  # the summary keeps brackets


def test_registration_errors_say_what_went_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DrlError) as info:
        check_env_id("DrlNotRegistered-v0")
    msg = str(info.value)
    assert "gymnasium has no env registered" in msg and "env.imports=[mymodule]" in msg
    # A module that is not there is "not found", never "gymnasium has no env".
    with pytest.raises(DrlError, match=r"Cannot import the module 'tests.nope' \(env.imports\)"):
        check_env_id("DrlShifted-v0", ["tests.nope"])
    with pytest.raises(DrlError, match=r"Cannot import the module 'nowhere_pkg' \(env.id="):
        check_env_id("nowhere_pkg:Thing-v0")
    # A module that is found but fails to import is shown as such, with its name.
    with pytest.raises(DrlError) as info:
        check_env_id("DrlShifted-v0", ["tests.envs_broken"])
    msg = str(info.value)
    assert "Importing the module 'tests.envs_broken' (env.imports) failed" in msg
    assert "No module named 'drl_test_dependency_that_is_not_installed'" in msg
    assert "envs_broken.py:3" in msg and "no env registered" not in msg
    # The module imports, but the id is not one it registers.
    with pytest.raises(DrlError, match=r"module 'tests.envs_custom' was imported but registers no"):
        check_env_id(f"{MOD}:DrlShifty-v0")
    # What gymnasium accepts, drlcli accepts: the latest version of an unversioned id.
    check_env_id(f"{MOD}:DrlShifted")


def test_a_module_in_the_working_directory_is_found(drl, clean_env, tmp_path):
    """`drl` is a console script: unlike `python -m`, it does not put the working directory on
    sys.path; a researcher's env module next to them is found all the same."""
    run = tmp_path / "run"
    (tmp_path / "my_cwd_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyCwdShifted-v0', entry_point='tests.envs_custom:Shifted',"
        " max_episode_steps=50)\n"
    )
    out = subprocess.run(
        [drl, "train", *FAST, "env.id=my_cwd_envs:MyCwdShifted-v0", *PPO, *short(run)],
        cwd=tmp_path,
        env=subprocess_env(clean_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# --- 2. Discrete(n, start) ------------------------------------------------------------------
def test_dqn_learns_a_shifted_discrete_space(tmp_path):
    result = train(config(f"env.id={MOD}:DrlShifted-v0", *DQN, "total_timesteps=2000"), tmp_path)
    assert result.eval_mean_return == 50.0


@pytest.mark.parametrize("algo", ["a2c", "ac", "reinforce", "trpo", "ppo_gru", "ppo_kl"])
def test_every_discrete_algorithm_sends_start_plus_index(tmp_path, algo):
    # The env raises on any action outside Discrete(3, start=1): training, evaluation and the
    # checkpoint's `drl eval` all go through it.
    extra = ["algo.minibatch_size=64"] if algo.startswith("ppo") else []
    cfg = config(
        f"algo={algo}",
        f"env.id={MOD}:DrlShifted-v0",
        "algo.num_steps=16",
        *extra,
        "total_timesteps=512",
    )
    assert train(cfg, tmp_path).status == "finished"
    assert run_eval(tmp_path, episodes=1).mean_return >= 0.0


# --- 3. episodes that never end ---------------------------------------------------------------
def test_an_endless_env_trains_and_evaluates_in_bounded_time(tmp_path, capsys):
    cfg = config(
        f"env.id={MOD}:DrlEndless-v0",
        *PPO,
        "total_timesteps=1024",
        "eval.max_episode_steps=300",
        "log.progress=plain",
    )
    t0 = time.perf_counter()
    result = train(cfg, tmp_path)
    out = capsys.readouterr()
    assert time.perf_counter() - t0 < 30
    assert result.status == "finished" and result.eval_mean_return > 0
    text = out.out + out.err
    assert "DrlEndless-v0 has no time limit" in text
    assert "2 of 2 evaluation episodes of tests.envs_custom:DrlEndless-v0 were cut" in text
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [1024]


def test_reinforce_on_an_endless_env_stops_at_the_budget(tmp_path):
    cfg = config(
        "algo=reinforce",
        f"env.id={MOD}:DrlEndless-v0",
        "algo.num_steps=64",
        "total_timesteps=1024",
        "eval.max_episode_steps=100",
    )
    result = train(cfg, tmp_path)
    assert result.status == "finished" and result.global_step == 1024


@pytest.mark.parametrize(
    "where,args",
    [
        # REINFORCE's collection waits for whole episodes: none ever ends.
        ("collect", ["algo=reinforce", "total_timesteps=100000000"]),
        # PPO trains, then its final evaluation would last 10^9 steps per episode.
        ("final eval", [*PPO, "total_timesteps=512", "eval.max_episode_steps=1000000000"]),
    ],
)
def test_sigterm_stops_an_endless_loop_with_a_checkpoint(drl, clean_env, tmp_path, where, args):
    run = tmp_path / "run"
    args = [*args, "checkpoint.stop_grace_s=1", "log.progress=plain", f"hydra.run.dir={run}"]
    proc = subprocess.Popen(
        [drl, "train", *FAST, f"env.id={MOD}:DrlEndless-v0", *args],
        cwd=tmp_path,
        env=subprocess_env(clean_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "drl: training" in line:
            break
    if where == "final eval":  # the final checkpoint comes before the final evaluation
        deadline = time.time() + 60
        while not ckpt.list_checkpoints(run / "checkpoints") and time.time() < deadline:
            time.sleep(0.1)
    time.sleep(0.5)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0]
    assert time.perf_counter() - sent < 15, "".join(lines) + rest
    assert proc.returncode == 143, "".join(lines) + rest
    assert "Resume with:" in rest
    assert ckpt.list_checkpoints(run / "checkpoints"), rest
    result = result_of(run)
    assert result["status"] == "interrupted" and result["interrupted_by"] == "SIGTERM"
    if where == "final eval":
        assert result["global_step"] == 512  # every training step was done and saved


def start_hanging_run(drl, clean_env, run: Path, hardware: str, grace_s: float):
    """`drl train` in its own process group on 4 envs that hang at their 200th step (after 3
    checkpoints, a few seconds in), in env worker processes; returns once it hangs."""
    proc = subprocess.Popen(
        [
            drl,
            "train",
            *FAST,
            f"env.id={MOD}:DrlHangsAt-v0",
            "+env.kwargs={at: 200}",
            *PPO,
            f"hardware.vectorization={hardware}",
            "hardware.num_workers=4",
            "checkpoint.every=256",
            "total_timesteps=100000000",
            f"checkpoint.stop_grace_s={grace_s}",
            f"hydra.run.dir={run}",
        ],
        cwd=run.parent,
        env=subprocess_env(clean_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a batch job has
    )
    deadline = time.time() + 60
    while len(ckpt.list_checkpoints(run / "checkpoints")) < 3 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # well into the hang
    return proc


def group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (zombies excluded)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    return [
        int(p)
        for p, g, st in (line.split() for line in out.splitlines())
        if int(g) == pgid and not st.startswith("Z")
    ]


@pytest.mark.parametrize(
    "hardware,signals,code",
    [
        # SLURM's preemption: one SIGTERM to the group; cut after the 1 s grace. Closing 4
        # hung workers took 5 s each in turn before.
        ("workers", [signal.SIGTERM], 143),
        ("async", [signal.SIGTERM], 143),
        # Ctrl-C twice, the grace long: the second cuts at once and still checkpoints (it used
        # to raise KeyboardInterrupt: a traceback, no checkpoint, no result.json).
        ("async", [signal.SIGINT, signal.SIGINT], 130),
        ("workers", [signal.SIGINT, signal.SIGINT], 130),
    ],
)
def test_a_group_signal_cuts_env_workers_that_hang(
    drl, clean_env, tmp_path, hardware, signals, code
):
    """An env whose step() never returns, in worker processes: a signal to the whole process
    group must still end the run in bounded time, with a checkpoint and the usual exit status.
    gymnasium's AsyncVectorEnv waited on its workers without end, and its close() on the
    pending step: async hung for ever before."""
    run = tmp_path / "run"
    grace = 1 if len(signals) == 1 else 600
    proc = start_hanging_run(drl, clean_env, run, hardware, grace)
    sent = time.perf_counter()
    try:
        for sig in signals:
            os.killpg(proc.pid, sig)
            time.sleep(1)
        out = proc.communicate(timeout=60)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.perf_counter() - sent < 12, out
    assert proc.returncode == code, out
    assert "Resume with:" in out and "Traceback" not in out
    steps = [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")]
    assert steps and steps[-1] >= 768, out
    assert result_of(run)["status"] == "interrupted"
    assert not group_members(proc.pid), "env workers outlived the run"


@pytest.mark.parametrize("hardware", ["workers", "async"])
def test_env_workers_die_with_a_killed_training_process(drl, clean_env, tmp_path, hardware):
    """SIGKILL to the training process alone (the OOM killer, `timeout -k`): workers stuck in
    an env that hangs never saw their pipe close and stayed, orphaned, ignoring SIGTERM. The
    kernel now kills them with their parent (PR_SET_PDEATHSIG)."""
    proc = start_hanging_run(drl, clean_env, tmp_path / "run", hardware, 600)
    try:
        assert len(group_members(proc.pid)) > 1  # the workers are up
        proc.kill()
        proc.communicate(timeout=30)
        deadline = time.time() + 10
        while group_members(proc.pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not group_members(proc.pid), "env workers outlived a killed training process"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# --- 4. NaN from the env ----------------------------------------------------------------------
@pytest.mark.parametrize("what,hardware", [("reward", "sync"), ("observation", "workers")])
def test_nan_from_the_env_is_named_not_blamed_on_training(tmp_path, what, hardware):
    hw = ["hardware=workers", "hardware.num_workers=1"] if hardware == "workers" else []
    cfg = config(
        f"env.id={MOD}:DrlNanAt-v0",
        f"+env.kwargs={{what: {what}, at: 250}}",
        "env.num_envs=1",
        *hw,
        *PPO,
        "algo.minibatch_size=32",
        "total_timesteps=2048",
    )
    with pytest.raises(DrlError) as info:
        train(cfg, tmp_path)
    msg = str(info.value)
    entry = "reward = nan" if what == "reward" else "observation[1] = nan"
    assert f"Env 0 of {MOD}:DrlNanAt-v0 returned a non-finite {what} at env step 250" in msg
    assert entry in msg and "(step 50 of its episode)" in msg
    assert "diverged" not in msg and "normaliz" not in msg and "\n" not in msg
    assert not ckpt.list_checkpoints(tmp_path / "checkpoints")


# --- 5. a NaN diagnostic is not divergence -----------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        # explained variance of one sample
        ["algo=a2c", "env=cartpole", "env.num_envs=1", "algo.num_steps=1"],
        # explained variance of returns that never vary
        ["algo=a2c", f"env.id={MOD}:DrlConstant-v0"],
        ["algo=reinforce", f"env.id={MOD}:DrlConstant-v0", "algo.num_steps=8"],
    ],
)
def test_a_nan_diagnostic_does_not_stop_training(tmp_path, args):
    result = train(config(*args, "total_timesteps=256"), tmp_path)
    assert result.status == "finished" and result.global_step >= 256


def test_ppo_refuses_to_normalize_a_one_sample_minibatch():
    with pytest.raises(DrlError, match=r"algo.norm_adv=true normalizes advantages by their std"):
        config("env=cartpole", "env.num_envs=1", "algo.num_steps=1", "algo.minibatch_size=1")
    config(
        "env=cartpole",
        "env.num_envs=1",
        "algo.num_steps=1",
        "algo.minibatch_size=1",
        "algo.norm_adv=false",
    )


# --- 6. videos of envs that cannot render -----------------------------------------------------
@pytest.mark.parametrize("env_id", ["DrlNoRenderMode-v0", "DrlHumanOnly-v0"])
def test_video_of_an_env_without_rgb_array_keeps_the_evaluation(tmp_path, env_id):
    train(config(f"env.id={MOD}:{env_id}", *PPO, "total_timesteps=256"), tmp_path)
    report = run_eval(tmp_path, episodes=2, video=True)
    assert report.video is None and report.video_error is not None
    assert "cannot be recorded" in report.video_error and "rgb_array" in report.video_error
    assert "kwargs" not in report.video_error
    saved = json.loads((tmp_path / f"eval_step{report.step}.json").read_text())
    assert saved["mean_return"] == report.mean_return and len(saved["returns"]) == 2


def test_drl_eval_prints_the_evaluation_then_the_video_error(drl, clean_env, tmp_path):
    run = tmp_path / "run"
    train(config(f"env.id={MOD}:DrlNoRenderMode-v0", *PPO, "total_timesteps=256"), run)
    out = subprocess.run(
        [drl, "eval", str(run), "--video", "--episodes", "2"],
        cwd=tmp_path,
        env=subprocess_env(clean_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "mean return" in out.stdout
    assert "drl: error: no video: " in out.stderr and "render_modes" in out.stderr
    assert "Traceback" not in out.stderr


# --- 7. an env that raises ----------------------------------------------------------------------
@pytest.mark.parametrize("vectorization", ["sync", "async", "workers"])
def test_an_env_raising_is_named_alike_under_every_vectorization(vectorization, capfd):
    cfg = EnvConfig(id=f"{MOD}:DrlFragile-v0", num_envs=4)
    env = VecEnv(cfg, 4, 0, vectorization, num_workers=2)
    try:
        env.reset()
        with pytest.raises(DrlError) as info:
            for _ in range(10):
                env.step(np.zeros(4, dtype=np.int64))
    finally:
        env.close()
    msg = str(info.value)
    assert f"Env 2 of {MOD}:DrlFragile-v0 raised" in msg
    assert "RuntimeError: boom: the simulator lost its state" in msg
    assert "envs_custom.py" in msg and 'raise RuntimeError("boom' in msg  # the env's own code
    assert "ERROR" not in capfd.readouterr().err  # no second copy printed by gymnasium


ASYNC = ["hardware.vectorization=async", "seed=0"]  # env 2 is the one seeded 2


def test_an_env_raising_stops_drl_train_with_one_message(drl, clean_env, tmp_path):
    out = subprocess.run(
        [drl, "train", *FAST, f"env.id={MOD}:DrlFragile-v0", *ASYNC, f"hydra.run.dir={tmp_path}"],
        cwd=tmp_path,
        env=subprocess_env(clean_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith(f"drl: error: Env 2 of {MOD}:DrlFragile-v0 raised in step()")
    assert "Error executing job" not in out.stderr
