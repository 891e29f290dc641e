"""hardware.compile (issue #15): the learner's loss functions through torch.compile, tested on
CPU (no test needs a GPU). Compiled and eager learners take the same gradient steps; graphs
that cannot be captured whole raise instead of running partly eager; bad settings are refused
before any run dir exists."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from drlcli import cli, registry
from drlcli.algos.base import EnvInfo
from drlcli.config import to_train_config
from drlcli.errors import DrlError
from drlcli.hardware import compiled
from tests.test_smoke import run, single_run_dir

PENDULUM = (
    gym.spaces.Box(-8.0, 8.0, (3,), np.float32),
    gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
)
CARTPOLE = (gym.spaces.Box(-4.0, 4.0, (4,), np.float32), gym.spaces.Discrete(2))


@pytest.fixture
def inductor_eager_random():
    """Compiled kernels draw random numbers as eager torch does (inductor's own generator
    would give the same distribution but other numbers), so the two runs can be compared."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch(fallback_random=True):
        yield


def _fill_replay(algo, spaces, n=600):
    rng = np.random.default_rng(0)
    obs_dim = spaces[0].shape[0]
    for _ in range(n):
        o = rng.standard_normal((1, obs_dim)).astype(np.float32)
        a = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
        r = rng.standard_normal(1).astype(np.float32)
        algo.replay.add(o, a, r, o, np.zeros(1, bool), np.zeros(1, bool))


def _fill_rollout(algo, spaces, num_envs, seed=0):
    """One whole rollout of random transitions through the on-policy act/observe contract."""
    rng = np.random.default_rng(seed)
    obs_dim = spaces[0].shape[0]
    obs = rng.standard_normal((num_envs, obs_dim)).astype(np.float32)
    with torch.no_grad():
        algo.begin_collect(obs)
    with torch.inference_mode():  # as drlcli.collector.Collector runs a phase
        _steps(algo, rng, obs, num_envs, obs_dim)


def _steps(algo, rng, obs, num_envs, obs_dim):
    from drlcli.algos.base import VectorStep

    step = 0
    masks = algo.env_info.action_masks
    while True:
        mask = None
        if masks:  # a random legal set of the 2 actions, never empty
            mask = rng.random((num_envs, 2)) < 0.6
            mask[np.arange(num_envs), rng.integers(0, 2, num_envs)] = True
            algo.act_masked(obs, step, mask)
        else:
            algo.act(obs, step)
        next_obs = rng.standard_normal((num_envs, obs_dim)).astype(np.float32)
        step += num_envs
        vs = VectorStep(
            obs=obs,
            reward=rng.standard_normal(num_envs).astype(np.float32),
            terminated=rng.random(num_envs) < 0.05,
            truncated=np.zeros(num_envs, bool),
            final_obs=next_obs,
            next_obs=next_obs,
            global_step=step,
            action_mask=mask,
            next_action_mask=np.ones((num_envs, 2), bool) if masks else None,
        )
        obs = next_obs
        if algo.observe(vs):
            break
    algo.end_collect(obs)


def _params(algo):
    return torch.cat(
        [p.detach().flatten() for m in algo.modules().values() for p in m.parameters()]
    )


def _build(overrides, spaces, num_envs=1, mode=None, masks=False):
    torch.manual_seed(0)
    cfg = to_train_config(cli._compose(overrides))
    info = EnvInfo(spaces[0], spaces[1], num_envs, action_masks=masks)
    algo = registry.build(cfg.algo, info, torch.device("cpu"))
    if mode:
        algo.compile_learner(mode)
    return algo


@pytest.mark.parametrize(
    "algo_name",
    ["sac", "td3", "ddpg"],
)
def test_compiled_offpolicy_learner_takes_the_eager_steps(algo_name, inductor_eager_random):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overrides = [f"algo={algo_name}", "env=pendulum", "algo.hidden_sizes=[64,64]"]
        eager, comp = _build(overrides, PENDULUM), _build(overrides, PENDULUM, mode="default")
        assert comp._critic_loss != comp.critic_loss  # the compiled function is in use
        assert eager._critic_loss == eager.critic_loss
        for algo in (eager, comp):
            _fill_replay(algo, PENDULUM)
        for k in range(4):
            torch.manual_seed(k)
            out_e = eager.learn(1)
            torch.manual_seed(k)
            out_c = comp.learn(1)
            assert out_e["losses/critic_loss"] == pytest.approx(out_c["losses/critic_loss"], 1e-5)
        torch.testing.assert_close(_params(eager), _params(comp), rtol=1e-4, atol=2e-5)
        assert not torch.equal(_params(eager), _params(_build(overrides, PENDULUM)))  # it learned
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "overrides, spaces, masks",
    [
        (["algo=ppo", "env=pendulum", "algo.num_steps=64", "algo.minibatch_size=64"], PENDULUM, 0),
        (
            ["algo=ppo_kl", "env=cartpole", "algo.num_steps=32", "algo.minibatch_size=64"],
            CARTPOLE,
            0,
        ),
        (["algo=ppo", "env=cartpole", "algo.num_steps=32", "algo.minibatch_size=32"], CARTPOLE, 1),
    ],
    ids=["ppo-clip-gaussian", "ppo-kl-categorical", "ppo-action-masks"],
)
def test_compiled_ppo_learner_takes_the_eager_steps(
    overrides, spaces, masks, inductor_eager_random
):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overrides = [*overrides, "env.num_envs=4", "algo.update_epochs=2"]
        masks = bool(masks)
        eager = _build(overrides, spaces, 4, masks=masks)
        comp = _build(overrides, spaces, 4, "default", masks=masks)
        assert comp._compiled and not eager._compiled
        start = _params(eager)
        for update in range(2):
            for algo in (eager, comp):
                torch.manual_seed(100 + update)  # the same sampled actions for both
                _fill_rollout(algo, spaces, 4, seed=update)
            torch.manual_seed(update)
            out_e = eager.update(0.0)
            torch.manual_seed(update)
            out_c = comp.update(0.0)
            assert out_e["losses/policy_loss"] == pytest.approx(out_c["losses/policy_loss"], 1e-4)
            if "charts/kl_beta" in out_e:  # beta moves between updates without a recompile
                assert out_e["charts/kl_beta"] == out_c["charts/kl_beta"]
        torch.testing.assert_close(_params(eager), _params(comp), rtol=1e-4, atol=2e-5)
        assert not torch.equal(start, _params(comp))
    finally:
        torch.set_num_threads(before)


def test_a_function_that_cannot_be_captured_whole_raises_instead_of_running_partly_eager():
    def breaks_the_graph(x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        torch._dynamo.graph_break()  # what an untraceable call would cause
        return y + 1

    with pytest.raises(Exception, match=r"(?i)graph.?break"):
        compiled(breaks_the_graph, "default")(torch.ones(3))


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_outputs_survive_the_next_replay(monkeypatch, mode):
    """A CUDA graph returns views of a static memory pool that its next replay overwrites:
    on an H200, SAC's sampled actions were overwritten before its actor loss read them
    (hardware.compile=reduce-overhead crashed at the second gradient step, #15). Simulated
    here with a stand-in that returns one static buffer per call, as a replayed graph does:
    the caller's tensors must keep their values, and gradients must still flow."""
    static = torch.zeros(3)

    def graph_like(fn, **_):
        def replay(*args):
            with torch.no_grad():
                static.copy_(fn(*args))
            return static  # the pool's memory itself, as a replayed graph hands it out

        return replay

    monkeypatch.setattr(torch, "compile", graph_like)
    double = compiled(lambda x: 2 * x, mode)
    first = double(torch.ones(3))
    second = double(torch.full((3,), 5.0))
    assert first.tolist() == [2.0, 2.0, 2.0] and second.tolist() == [10.0, 10.0, 10.0]
    # The copy is differentiable: the actor's loss still reaches the sampling graph.
    monkeypatch.setattr(torch, "compile", lambda fn, **_: fn)
    x = torch.ones(3, requires_grad=True)
    compiled(lambda x: 2 * x, mode)(x).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [2.0, 2.0, 2.0]


def test_graph_steps_are_marked_only_after_a_graph_mode_was_compiled(monkeypatch):
    """Marking a CUDA-graph step imports torch._inductor.cudagraph_trees (0.7 s): eager runs
    must not pay it, compiled ones in reduce-overhead must mark every gradient step."""
    from drlcli import hardware

    marks = []
    monkeypatch.setattr(hardware, "_graph_modes_used", False)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    learner = _build(["algo=sac", "env=pendulum", "algo.hidden_sizes=[64,64]"], PENDULUM)
    _fill_replay(learner, PENDULUM)
    learner.learn(2)
    assert marks == []
    monkeypatch.setattr(torch, "compile", lambda fn, **_: fn)
    learner.compile_learner("reduce-overhead")
    learner.learn(2)
    assert len(marks) == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["hardware.compile=fast"],
            r"Unknown hardware.compile 'fast'. Valid choices: none, default",
        ),
        (
            ["algo=dqn", "hardware.compile=default"],
            r"dqn has no compiled learner; it is available for ddpg, ppo, sac, td3",
        ),
        (["algo=ppo_gru", "hardware.compile=default"], r"recurrent PPO has no compiled learner"),
    ],
)
def test_bad_compile_settings_fail_before_any_run_dir(overrides, message, tmp_path):
    with pytest.raises(DrlError, match=message):
        cli.preflight(cli._compose(overrides))
    with pytest.raises(DrlError, match=message):
        from drlcli.runner import train

        train(to_train_config(cli._compose([*overrides, "total_timesteps=64"])), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_drl_train_with_compile_runs_and_says_so(drl, clean_env, tmp_path):
    out = run(
        [
            drl,
            "train",
            "algo=sac",
            "env=pendulum",
            "hardware.compile=default",
            "algo.hidden_sizes=[64,64]",
            "algo.learning_starts=100",
            "total_timesteps=400",
            "eval.episodes=1",
            "log.progress=plain",
        ],
        tmp_path,
        clean_env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "hardware.compile=default: the learner's loss functions are compiled" in out.stdout
    run_dir = single_run_dir(tmp_path)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "finished" and np.isfinite(result["eval_mean_return"])
    assert "compile: default" in (run_dir / "config.yaml").read_text()


def test_compile_without_a_cpp_compiler_is_refused_before_the_run(monkeypatch, tmp_path):
    """On CPU inductor generates C++: with no working compiler the user got a 100-line
    traceback at the first update and a failed run dir; now one paragraph, before."""
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}):
        with pytest.raises(DrlError, match=r"needs a C\+\+ compiler .* hardware.compile=none"):
            cli.preflight(cli._compose(["algo=sac", "env=pendulum", "hardware.compile=default"]))
        cli.preflight(cli._compose(["algo=sac", "env=pendulum"]))  # eager needs none
