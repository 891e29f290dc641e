"""Hardware profiles: each one runs, records what it resolved to, and env worker processes
behave exactly like in-process envs and fail loudly."""

from __future__ import annotations

import json
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from drlcli import cli
from drlcli.config import EnvConfig, WrapperSpec
from drlcli.envs import VecEnv
from drlcli.errors import DrlError
from drlcli.runner import train


class Boom(gym.Wrapper):
    """Raises on the ``after``-th step of the env with index ``which`` (by creation order)."""

    created = 0

    def __init__(self, env: gym.Env, after: int = 5):
        super().__init__(env)
        self.after = after
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps >= self.after:
            raise RuntimeError("boom: the physics engine exploded")
        return self.env.step(action)


def rollout(env: VecEnv, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = [env.reset(seed=123)]
    out = []
    for _ in range(steps):
        r = env.step(rng.integers(0, 2, size=env.num_envs))
        obs.append(r.obs)
        out.append((r.reward, r.terminated, r.truncated, r.final_obs))
    return obs, out, env.drain_episodes()


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_match_sync_step_for_step(workers):
    cfg = EnvConfig(id="CartPole-v1", num_envs=6, max_episode_steps=40)
    sync = VecEnv(cfg, 6, 0, "sync")
    pool = VecEnv(cfg, 6, 0, "workers", num_workers=workers)
    try:
        a_obs, a_steps, a_eps = rollout(sync, 200)
        b_obs, b_steps, b_eps = rollout(pool, 200)
    finally:
        sync.close()
        pool.close()
    for x, y in zip(a_obs, b_obs):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a_steps, b_steps):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    assert [(e.ret, e.length, e.step) for e in a_eps] == [(e.ret, e.length, e.step) for e in b_eps]
    assert len(a_eps) > 10


def run_profile(tmp_path, name, *extra):
    overrides = [
        f"hardware={name}",
        "total_timesteps=4096",
        "algo.num_steps=64",
        "env.num_envs=4",
        "eval.every=0",
        "eval.episodes=3",
        "log.progress=none",
        "hardware.torch_threads=1",
        "hardware.deterministic=true",
        *extra,
    ]
    cfg = OmegaConf.to_object(cli._compose(overrides))
    run_dir = tmp_path / name
    result = train(cfg, run_dir)
    info = json.loads((run_dir / "run_info.json").read_text())
    return result, info


def test_workers_profile_trains_like_sync_for_a_fixed_seed(tmp_path):
    """Same seed, same actions, same envs: the episode statistics and final eval match."""
    sync, sync_info = run_profile(tmp_path, "cpu")
    pool, pool_info = run_profile(tmp_path, "workers", "hardware.num_workers=2")
    assert sync.eval_mean_return == pool.eval_mean_return
    assert sync.global_step == pool.global_step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def curve(run: str) -> list[tuple[int, float]]:
        acc = EventAccumulator(str(tmp_path / run), size_guidance={"scalars": 0})
        acc.Reload()
        return [(e.step, e.value) for e in acc.Scalars("charts/episodic_return")]

    assert curve("cpu") == curve("workers") and len(curve("cpu")) > 20
    assert sync_info["hardware"]["num_workers"] == 0
    assert pool_info["hardware"]["vectorization"] == "workers"
    assert (pool_info["hardware"]["num_workers"], pool_info["hardware"]["envs_per_worker"]) == (
        2,
        2,
    )


def test_auto_profile_falls_back_to_cpu_and_says_so(tmp_path):
    result, info = run_profile(tmp_path, "auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert info["hardware"]["device"].startswith(expected)
    assert any("hardware.device=auto" in n for n in info["hardware"]["notes"])
    assert result.status == "finished"


def test_a_raising_env_in_a_worker_names_the_env_and_the_exception():
    cfg = EnvConfig(
        id="CartPole-v1",
        num_envs=4,
        wrappers=[WrapperSpec("tests.test_hardware:Boom", {"after": 5})],
    )
    env = VecEnv(cfg, 4, 0, "workers", num_workers=2)
    env.reset()
    with pytest.raises(DrlError) as info:
        for _ in range(10):
            env.step(np.zeros(4, dtype=np.int64))
    msg = str(info.value)
    assert "Env 0 of CartPole-v1 raised in worker 0" in msg
    assert "RuntimeError: boom: the physics engine exploded" in msg
    env.close()


def test_a_killed_worker_is_reported_not_waited_on():
    cfg = EnvConfig(id="CartPole-v1", num_envs=4)
    env = VecEnv(cfg, 4, 0, "workers", num_workers=2)
    env.reset()
    victim = env.env._procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(timeout=5)
    with pytest.raises(DrlError, match=r"Env worker 1 \(envs 2-3 of CartPole-v1\) died"):
        env.step(np.zeros(4, dtype=np.int64))
    env.close()


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["hardware=workers", "hardware.num_workers=9"],
            r"num_workers=9 is more than env.num_envs=8",
        ),
        (
            ["hardware=workers", "hardware.num_workers=2", "hardware.envs_per_worker=3"],
            r"2 x hardware.envs_per_worker=3 = 6 envs, but env.num_envs=8",
        ),
        (["hardware.vectorization=threads"], r"Unknown hardware.vectorization 'threads'"),
        (["hardware.torch_threads=-1"], r"hardware.torch_threads must be >= 0 \(0 = auto\)"),
    ],
)
def test_bad_worker_settings_fail_before_anything_runs(overrides, message):
    with pytest.raises(DrlError, match=message):
        cli.preflight(cli.check_overrides(overrides, multirun=False))


# --- A3C: worker processes sharing one model ------------------------------------------------
A3C_TINY = [
    "algo=a3c",
    "total_timesteps=6000",
    "algo.report_every=500",
    "eval.every=3000",
    "eval.episodes=3",
    "checkpoint.every=3000",
    "log.progress=none",
    "hardware.torch_threads=1",
]


def test_a3c_workers_log_into_one_run_and_stop_with_it(tmp_path):
    import multiprocessing

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = OmegaConf.to_object(cli._compose(A3C_TINY))
    result = train(cfg, tmp_path / "a3c")
    assert result.status == "finished" and result.global_step >= 6000
    acc = EventAccumulator(str(tmp_path / "a3c"), size_guidance={"scalars": 0})
    acc.Reload()
    episodes = acc.Scalars("charts/episodic_return")
    assert len(episodes) > 50  # CartPole episodes of both workers, in the one run
    assert {e.step for e in acc.Scalars("losses/value_loss")}
    assert acc.Scalars("charts/workers_alive")[0].value == 2
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("drl-a3c")]
    # The checkpoint holds the shared model and the shared RMSprop statistics.
    from drlcli import checkpoint as ckpt

    state = ckpt.latest_loadable(tmp_path / "a3c" / "checkpoints")
    assert state["algo"]["optimizer"][0]["square_avg"].abs().sum() > 0
    # Resume from it and go on to a larger budget.
    more = OmegaConf.to_object(
        cli._compose([*A3C_TINY, "total_timesteps=9000", f"resume={tmp_path / 'a3c'}"])
    )
    again = train(more, tmp_path / "a3c")
    assert again.global_step >= 9000


def test_a3c_worker_failure_is_reported_clearly(tmp_path):
    cfg = OmegaConf.to_object(
        cli._compose(
            [*A3C_TINY, "+env.wrappers=[{name: 'tests.test_hardware:Boom', kwargs: {after: 50}}]"]
        )
    )
    with pytest.raises(DrlError, match=r"A3C worker \d failed: Env 0 .* RuntimeError: boom"):
        train(cfg, tmp_path / "boom")


class _RacedStatistic(torch.Tensor):
    """A shared ``square_avg`` that another A3C worker overwrites right after each in-place
    write of this one: the lost-update interleaving of two lock-free RMSprop steps."""

    target: torch.Tensor | None = None
    other: torch.Tensor | None = None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        if getattr(func, "__name__", "") in ("copy_", "addcmul_") and args[0] is cls.target:
            with torch._C.DisableTorchFunctionSubclass():
                args[0].copy_(cls.other)
        return out


def test_shared_rmsprop_step_is_rmsprop_and_bounded_under_a_racing_write():
    """CI failure (A3C diverged at step 1664 of a CartPole run): torch's RMSprop re-reads the
    shared statistic after writing it, so a racing worker with a tiny gradient made this
    worker divide a gradient of 50 by ~eps. The step must stay within lr / sqrt(1 - alpha)."""
    from drlcli.a3c import shared_rmsprop_step

    lr, alpha, eps = 7e-4, 0.99, 1e-5
    # Alone, it is torch's RMSprop, step for step.
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 5, generator=gen, requires_grad=True)
    ours = ref.detach().clone()
    opt = torch.optim.RMSprop([ref], lr=lr, alpha=alpha, eps=eps)
    state = {"step": torch.zeros(()), "square_avg": torch.zeros(3, 5)}
    for _ in range(5):
        grad = torch.randn(3, 5, generator=gen)
        ref.grad = grad.clone()
        opt.step()
        shared_rmsprop_step([ours], [grad], [state], lr, alpha, eps)
    torch.testing.assert_close(ours, ref.detach())
    torch.testing.assert_close(state["square_avg"], opt.state[ref]["square_avg"])
    assert float(state["step"]) == 5

    # Raced: the other worker (gradient 1e-4, read s = 0) writes between our write and our read.
    grad = torch.full((4,), 50.0)
    _RacedStatistic.other = (1 - alpha) * torch.full((4,), 1e-4) ** 2
    bound = lr / (1 - alpha) ** 0.5
    torch_param = torch.zeros(4, requires_grad=True)
    torch_opt = torch.optim.RMSprop([torch_param], lr=lr, alpha=alpha, eps=eps)
    _RacedStatistic.target = torch.zeros(4).as_subclass(_RacedStatistic)
    torch_opt.state[torch_param].update(step=torch.zeros(()), square_avg=_RacedStatistic.target)
    torch_param.grad = grad.clone()
    torch_opt.step()
    assert torch_param.detach().abs().max() > 1000 * bound  # the failure, reproduced
    param = torch.zeros(4)
    _RacedStatistic.target = torch.zeros(4).as_subclass(_RacedStatistic)
    raced = {"step": torch.zeros(()), "square_avg": _RacedStatistic.target}
    shared_rmsprop_step([param], [grad], [raced], lr, alpha, eps)
    assert param.abs().max() <= bound * (1 + 1e-6)


def test_a3c_refuses_normalized_envs():
    composed = cli.check_overrides(["algo=a3c", "env=mountaincar"], multirun=False)
    with pytest.raises(DrlError, match=r"each worker would keep its own statistics"):
        cli.preflight(composed)


@pytest.mark.parametrize("cores", [1, 2, 16])
def test_auto_threads_by_learner_size_whatever_the_core_count(monkeypatch, cores):
    """Two runs on two cores with two spinning OpenMP threads each ran 4-150x slower (#15):
    small MLPs get one thread; large learners and CNNs may use more, starting on one and
    moved by a ThreadGovernor with the other load."""
    from drlcli import hardware
    from drlcli.config import HardwareConfig

    monkeypatch.setattr(hardware, "available_cores", lambda: cores)
    before = torch.get_num_threads()
    try:
        _, resolved = hardware.setup(HardwareConfig(), seed=1, num_envs=8)
        work = hardware.PARALLEL_WORK - 1
        assert hardware.choose_threads(HardwareConfig(), resolved, False, work) == 1
        assert torch.get_num_threads() == 1 and resolved.torch_threads == 1
        assert not resolved.adaptive_threads
        assert any("torch threads: 1 (auto" in n for n in resolved.notes)
        # A large MLP learner: up to the cores (at most MAX_MLP_THREADS), starting on one.
        _, resolved = hardware.setup(HardwareConfig(), seed=1, num_envs=8)
        work = hardware.PARALLEL_WORK
        assert hardware.choose_threads(HardwareConfig(), resolved, False, work) == 1
        assert resolved.torch_threads == min(cores, hardware.MAX_MLP_THREADS)
        assert resolved.adaptive_threads == (cores > 1)
        if cores > 1:
            most = resolved.torch_threads
            assert any(f"torch threads: 1-{most} (auto" in n for n in resolved.notes)
        # hardware.deterministic keeps a fixed count: one for an MLP.
        fixed = HardwareConfig(deterministic=True)
        try:
            _, resolved = hardware.setup(fixed, seed=1, num_envs=8)
        finally:
            torch.use_deterministic_algorithms(False)
        assert hardware.choose_threads(fixed, resolved, False, work) == 1
        assert not resolved.adaptive_threads
        # CNN torsos: the cores per parallel job, minus env worker processes.
        monkeypatch.setenv("DRL_PARALLEL_JOBS", "2")
        _, resolved = hardware.setup(HardwareConfig(), seed=1, num_envs=8)
        hardware.choose_threads(HardwareConfig(), resolved, image_obs=True)
        assert resolved.torch_threads == max(cores // 2, 1)
        assert resolved.adaptive_threads == (resolved.torch_threads > 1)
        assert torch.get_num_threads() == 1
        workers = HardwareConfig(vectorization="workers", num_workers=2)
        monkeypatch.delenv("DRL_PARALLEL_JOBS")
        _, resolved = hardware.setup(workers, seed=1, num_envs=8)
        hardware.choose_threads(workers, resolved, image_obs=True)
        assert resolved.torch_threads == max(cores - 2, 1)
        # Where the load cannot be watched, a CNN keeps its fixed count and an MLP one thread.
        monkeypatch.setattr(hardware, "cpu_load_readable", lambda: False)
        _, resolved = hardware.setup(HardwareConfig(), seed=1, num_envs=8)
        assert hardware.choose_threads(HardwareConfig(), resolved, True) == cores
        _, resolved = hardware.setup(HardwareConfig(), seed=1, num_envs=8)
        assert hardware.choose_threads(HardwareConfig(), resolved, False, work) == 1
        assert not resolved.adaptive_threads
        # An explicit count is taken as given, with no note.
        explicit = HardwareConfig(torch_threads=3)
        _, resolved = hardware.setup(explicit, seed=1, num_envs=8)
        assert hardware.choose_threads(explicit, resolved, image_obs=False, work=work) == 3
        assert not any("torch threads" in n for n in resolved.notes)
        assert any("more than the" in n for n in resolved.notes) == (cores < 3)
    finally:
        torch.set_num_threads(before)


def test_compiled_and_gpu_learners_keep_one_fixed_thread(monkeypatch):
    """torch.compile guards on the thread count: a governor that moved it recompiled SAC's
    functions at each change (a compiled SAC run went 5x slower than eager on 2 cores, #15). A
    learner on a GPU gets one thread: its CPU threads carry only host-side ops."""
    from drlcli import hardware
    from drlcli.config import HardwareConfig

    monkeypatch.setattr(hardware, "available_cores", lambda: 8)
    before = torch.get_num_threads()
    try:
        for image_obs in (False, True):
            compiled = HardwareConfig(compile="default")
            _, resolved = hardware.setup(compiled, seed=1, num_envs=1)
            work = hardware.PARALLEL_WORK * 4
            assert hardware.choose_threads(compiled, resolved, image_obs, work) == 1
            assert not resolved.adaptive_threads and resolved.torch_threads == 1
            assert any("fixed at 1 with hardware.compile=default" in n for n in resolved.notes)
            # The same learner on a GPU (setup is not asked for a device it cannot give).
            _, resolved = hardware.setup(HardwareConfig(), seed=1, num_envs=1)
            resolved.device = "cuda"
            assert hardware.choose_threads(HardwareConfig(), resolved, image_obs, work) == 1
            assert not resolved.adaptive_threads
            assert any("the learner runs on cuda" in n for n in resolved.notes)
    finally:
        torch.set_num_threads(before)


def test_learner_work_counts_the_largest_network_over_a_batch():
    from drlcli import hardware
    from drlcli.networks import StackedMLP, mlp

    actor = mlp(3, [256, 256], 2, "relu")
    critics = StackedMLP(2, 4, [256, 256], [1, 1], "relu")
    per_sample = sum(p.numel() for p in critics.parameters())
    assert per_sample == 2 * (4 * 256 + 256 + 256 * 256 + 256 + 256 + 1)
    assert hardware.learner_work({"actor": actor, "critics": critics}, 256) == 256 * per_sample
    # SAC's Pendulum learner is above the threshold; PPO's CartPole one far below it.
    assert 256 * per_sample >= hardware.PARALLEL_WORK
    ppo = mlp(4, [64, 64], 2, "tanh")
    assert hardware.learner_work({"actor": ppo}, 64) < hardware.PARALLEL_WORK / 10


class FakeLoad:
    """Seconds-valued clock and CPU counters for a ThreadGovernor: ``advance(dt, own, other)``
    lets ``dt`` seconds pass with this run using ``own`` cores and other processes ``other``."""

    def __init__(self):
        self.now = self.busy = self.own = 0.0

    def advance(self, dt, own, other):
        self.now += dt
        self.own += own * dt
        self.busy += (own + other) * dt


def make_governor(load, most=2, reserved=0, cpus=(0, 1)):
    from drlcli import hardware

    return hardware.ThreadGovernor(
        most,
        reserved,
        interval_s=2.0,
        cpus=list(cpus),
        busy=lambda cpus: load.busy,
        own=lambda: load.own,
        clock=lambda: load.now,
    )


def test_thread_governor_rises_when_alone_and_falls_at_once_under_load():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        load = FakeLoad()
        gov = make_governor(load)
        load.advance(1.0, own=1, other=0)
        assert gov.tick() is None and gov.threads == 1  # the interval has not passed
        load.advance(1.5, own=1, other=0.1)
        assert gov.tick() == 2 and torch.get_num_threads() == 2  # alone: up at the first check
        load.advance(2.0, own=2, other=0)
        assert gov.tick() is None and gov.threads == 2  # its own two threads are not load
        # Another run starts and takes a core (its share of a core against our spinning pair
        # is enough): down at the first check.
        load.advance(2.0, own=1.4, other=0.6)
        assert gov.tick() == 1 and torch.get_num_threads() == 1
        assert gov.other_load == pytest.approx(0.6)
        # Both runs on one thread each: each sees the other's core busy, nobody rises.
        for _ in range(5):
            load.advance(2.0, own=1, other=1)
            assert gov.tick() is None and gov.threads == 1
        # A rise needs two checks in a row: one quiet interval between busy ones is not enough.
        load.advance(2.0, own=1, other=0)
        assert gov.tick() is None
        load.advance(2.0, own=1, other=1)
        assert gov.tick() is None
        load.advance(2.0, own=1, other=0)
        assert gov.tick() is None and gov.threads == 1
        # The other run ends: back to two.
        load.advance(2.0, own=1, other=0)
        assert gov.tick() == 2
    finally:
        torch.set_num_threads(before)


def test_thread_governor_keeps_cores_for_env_workers_and_its_maximum():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        load = FakeLoad()
        gov = make_governor(load, most=3, reserved=1, cpus=range(4))
        for _ in range(2):
            load.advance(2.0, own=2, other=0)
            gov.tick()
        assert gov.threads == 3  # 4 free cores, one kept for the env worker
        load.advance(2.0, own=4, other=1)  # one core taken by someone else: 3 free - 1 worker
        assert gov.tick() == 2
        gov = make_governor(load, most=2, cpus=range(16))
        for _ in range(3):
            load.advance(2.0, own=1, other=0)
            gov.tick()
        assert gov.threads == 2  # never above the maximum
    finally:
        torch.set_num_threads(before)


BURN = "while True: pass"


def _detached_burners(n):
    """``n`` busy-looping processes that are not descendants of this one (their parent exits
    at once); returns their pids."""
    import subprocess
    import sys

    spawn = (
        "import subprocess, sys\n"
        f"ps = [subprocess.Popen([sys.executable, '-c', {BURN!r}], start_new_session=True, "
        "stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) "
        f"for _ in range({n})]\n"
        "print(' '.join(str(p.pid) for p in ps))"
    )
    out = subprocess.run(
        [sys.executable, "-c", spawn], capture_output=True, text=True, check=True, timeout=60
    )
    return [int(pid) for pid in out.stdout.split()]


def test_thread_governor_reads_the_real_load_of_others_and_of_its_own_children():
    """On this machine's real counters: busy-looping processes elsewhere on every core make a
    two-thread run drop to one; the same processes as its own children (env workers) are its
    own load and count as such (compared with the first case, so that whatever else runs on
    the machine cancels out)."""
    import subprocess
    import sys
    import time

    from drlcli import hardware

    cpus = sorted(os.sched_getaffinity(0))
    n = len(cpus)
    before = torch.get_num_threads()
    pids = _detached_burners(n)
    try:
        time.sleep(0.2)
        torch.set_num_threads(2)
        gov = hardware.ThreadGovernor(2, interval_s=0.5, cpus=cpus)
        time.sleep(1.0)
        gov.tick()
        others_detached = gov.other_load
        assert others_detached > 0.5 * n, others_detached
        assert gov.threads == 1 and torch.get_num_threads() == 1
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        torch.set_num_threads(before)
    children = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(n)]
    try:
        time.sleep(0.2)
        gov = hardware.ThreadGovernor(2, interval_s=0.5, cpus=cpus)
        time.sleep(1.0)
        gov.tick()
        assert gov.other_load < others_detached - 0.25 * n, (gov.other_load, others_detached)
    finally:
        for c in children:
            c.kill()
            c.wait()
        torch.set_num_threads(before)


def test_gradient_steps_are_the_same_on_one_and_two_threads():
    """The adaptive count may change mid-run: SAC's gradient steps give the same parameters on
    1 and 2 threads (bit for bit on the development machine), so a run, or its resume, does not
    depend on when the count moved."""
    from drlcli import registry
    from drlcli.algos.base import EnvInfo
    from drlcli.config import to_train_config

    def params_after(threads_per_phase):
        torch.manual_seed(0)
        cfg = to_train_config(cli._compose(["algo=sac", "env=pendulum"]))
        space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        act = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        algo = registry.build(cfg.algo, EnvInfo(space, act, 1), torch.device("cpu"))
        rng = np.random.default_rng(0)
        for _ in range(600):
            o = rng.standard_normal((1, 3)).astype(np.float32)
            a = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
            r = rng.standard_normal(1).astype(np.float32)
            algo.replay.add(o, a, r, o, np.zeros(1, bool), np.zeros(1, bool))
        for threads in threads_per_phase:
            torch.set_num_threads(threads)
            algo.learn(5)
        return torch.cat([p.detach().flatten() for p in algo.critics.parameters()])

    before = torch.get_num_threads()
    try:
        one, mixed = params_after([1, 1, 1]), params_after([1, 2, 1])
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(one, mixed, rtol=1e-6, atol=1e-7)
