"""CrossQ (Bhatt et al., ICLR 2024): the joint batch-norm forward, no target networks, batch-norm
train/eval modes, policy delay, checkpoints, a peer check against sb3-contrib's CrossQ, and a
smoke run through the real `drl` command."""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from drlcli import cli
from drlcli.algos.base import EnvInfo
from drlcli.algos.crossq import CrossQ, CrossQConfig, critic_loss_and_target
from tests.test_smoke import TINY, run, single_run_dir

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def make_agent(**overrides) -> CrossQ:
    settings = dict(
        hidden_sizes=[8, 8],
        critic_hidden_sizes=[16, 16],
        buffer_size=256,
        batch_size=32,
        learning_starts=0,
    )
    settings.update(overrides)
    return CrossQ(CrossQConfig(**settings), EnvInfo(OBS, ACT, 1), torch.device("cpu"))


def fill(agent: CrossQ, n: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        o = rng.uniform(-1, 1, (1, 3)).astype(np.float32)
        o2 = rng.uniform(-1, 1, (1, 3)).astype(np.float32)
        a = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
        r = rng.normal(size=1).astype(np.float32)
        term = np.array([i % 17 == 0])
        agent.replay.add(o, a, r, o2, term, np.zeros(1, bool))
    agent.env_steps = n


def random_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.rand(n, 3, generator=g) * 2 - 1,
        "actions": torch.rand(n, 1, generator=g) * 2 - 1,
        "next_obs": torch.rand(n, 3, generator=g) * 2 + 0.5,  # a shifted distribution
        "rewards": torch.randn(n, generator=g),
        "terminated": torch.rand(n, generator=g) < 0.2,
        "discounts": torch.full((n,), 0.99),
    }


def batch_norms(module: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def test_joint_forward_normalizes_over_both_batches_and_stops_the_target_gradient():
    torch.manual_seed(0)
    agent = make_agent()
    critics = agent.critics
    b = random_batch(32)
    a_next = torch.rand(32, 1) * 2 - 1
    logp_next = torch.randn(32)
    alpha = torch.tensor([0.3])
    before = copy.deepcopy(critics.state_dict())

    loss, y, q = critic_loss_and_target(critics, b, a_next, logp_next, alpha)

    # One forward in train mode on the concatenation: the input batch norm's running mean moved
    # by momentum x the mean over BOTH halves, once.
    x_joint = torch.cat(
        [torch.cat([b["obs"], b["actions"]], 1), torch.cat([b["next_obs"], a_next], 1)]
    )
    m = agent.cfg.batch_norm_momentum
    for net in critics.nets:
        bn = net[0]
        assert bn.num_batches_tracked.item() == 1
        torch.testing.assert_close(bn.running_mean, m * x_joint.mean(0))
    # Both halves come from that one pass: recompute it by hand from the saved weights.
    ref = copy.deepcopy(critics)
    ref.load_state_dict(before)
    ref.train()
    with torch.no_grad():
        q_all = ref(x_joint[:, :3], x_joint[:, 3:])
        # Separate passes would normalize each half with its own statistics: a different Q.
        q_alone = ref(b["obs"], b["actions"])
    torch.testing.assert_close(q.detach(), q_all[:, :32])
    assert not torch.allclose(q_alone, q_all[:, :32], atol=1e-3)
    soft = q_all[:, 32:].min(0).values - alpha * logp_next
    y_hand = b["rewards"] + 0.99 * (1.0 - b["terminated"].float()) * soft
    torch.testing.assert_close(y, y_hand)
    torch.testing.assert_close(loss, 0.5 * ((q_all[:, :32] - y_hand) ** 2).mean(1).sum())
    # Stop-gradient on the target: the gradient is that of 0.5 sum (Q - const)^2.
    assert not y.requires_grad
    grads = torch.autograd.grad(loss, list(critics.parameters()), allow_unused=True)
    q2 = critics.train()(x_joint[:, :3], x_joint[:, 3:])[:, :32]
    critics.eval()
    manual = torch.autograd.grad(
        0.5 * ((q2 - y.detach()) ** 2).mean(1).sum(), list(critics.parameters())
    )
    for g1, g2 in zip(grads, manual, strict=True):
        torch.testing.assert_close(g1, g2)
    assert not critics.training  # left in eval mode


def test_no_target_networks_and_paper_optimizer_settings():
    agent = make_agent()
    assert set(agent.stateful) == {"actor", "critics", "actor_opt", "critic_opt", "alpha_opt"}
    assert not [k for k in vars(agent) if "target" in k and k != "target_entropy"]
    nets = {id(p) for m in agent.modules().values() for p in m.parameters()}
    assert nets == {id(p) for p in agent.actor.parameters()} | {
        id(p) for p in agent.critics.parameters()
    }
    for opt in (agent.actor_opt, agent.critic_opt):
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)
        assert opt.param_groups[0]["lr"] == 1e-3
    assert len(agent.critics.nets) == 2 and len(batch_norms(agent.critics)) == 6
    assert len(batch_norms(agent.actor)) == 3


def test_batch_norm_modes_while_acting_and_learning():
    torch.manual_seed(0)
    agent = make_agent(policy_delay=2)
    fill(agent)
    log: list[tuple[str, bool, int]] = []
    for name, module in agent.modules().items():
        first = batch_norms(module)[0]
        first.register_forward_pre_hook(
            lambda mod, inp, name=name: log.append((name, mod.training, inp[0].shape[0]))
        )
    obs = np.random.default_rng(1).uniform(-1, 1, (5, 3)).astype(np.float32)

    agent.learn(4)
    b = agent.cfg.batch_size
    # (first batch norm of the actor / of critic 0: train mode?, batch rows)
    step = [("actor", False, b), ("critics", True, 2 * b)]
    actor_step = [("actor", True, b), ("critics", False, b)]
    assert log == step + step + actor_step + step + step + actor_step
    assert not agent.actor.training and not agent.critics.training

    # Acting and evaluation use the running statistics: no statistics change, and each
    # observation's action does not depend on the rest of the batch.
    stats = copy.deepcopy(agent.actor.state_dict())
    log.clear()
    batch = agent.predict(obs)
    rows = np.concatenate([agent.predict(obs[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(batch, rows, rtol=1e-5, atol=1e-6)
    agent.explore(obs, random=False)
    assert log and all(not training for _, training, _ in log)
    for k, v in agent.actor.state_dict().items():
        assert torch.equal(v, stats[k]), k


def test_policy_delay_counts_actor_and_temperature_steps():
    torch.manual_seed(0)
    agent = make_agent(policy_delay=3)
    fill(agent)
    alpha0 = agent.log_alpha.item()
    out = agent.learn(7)
    assert agent.critic_opt.state[agent.critic_opt.param_groups[0]["params"][0]]["step"].item() == 7
    assert agent.actor_opt.state[agent.actor_opt.param_groups[0]["params"][0]]["step"].item() == 2
    assert agent.alpha_opt.state[agent.log_alpha]["step"].item() == 2
    assert agent.log_alpha.item() != alpha0
    assert {"losses/critic_loss", "losses/actor_loss", "losses/alpha_loss"} <= set(out)
    assert batch_norms(agent.critics)[0].num_batches_tracked.item() == 7
    assert batch_norms(agent.actor)[0].num_batches_tracked.item() == 2
    # Step 8 updates no actor and reports no actor loss; step 9 does.
    assert "losses/actor_loss" not in agent.learn(1)
    assert "losses/actor_loss" in agent.learn(1)


def test_checkpoint_round_trip_keeps_batch_norm_statistics():
    torch.manual_seed(0)
    agent = make_agent()
    fill(agent)
    agent.learn(6)
    state = agent.state_dict()
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert any(key in k for k in state["critics"]) and any(key in k for k in state["actor"])
    first = batch_norms(agent.critics)[0]
    assert first.num_batches_tracked.item() == 6 and not torch.equal(
        first.running_var, torch.ones_like(first.running_var)
    )
    other = make_agent()
    other.load_state_dict(state)
    for mine, theirs in zip(batch_norms(agent.modules()["critics"]), batch_norms(other.critics)):
        assert torch.equal(mine.running_mean, theirs.running_mean)
        assert torch.equal(mine.running_var, theirs.running_var)
        assert torch.equal(mine.num_batches_tracked, theirs.num_batches_tracked)
    obs = np.random.default_rng(2).uniform(-1, 1, (4, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs), other.predict(obs))
    o, a = torch.as_tensor(obs), torch.zeros(4, 1)
    assert torch.equal(agent.critics(o, a), other.critics(o, a))
    assert other.log_alpha.item() == agent.log_alpha.item()
    # Both continue identically from the same state (same replay, rng and moments).
    torch.manual_seed(5)
    agent.learn(3)
    torch.manual_seed(5)
    other.learn(3)
    np.testing.assert_array_equal(agent.predict(obs), other.predict(obs))


def test_bad_setting_fails_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "algo=crossq", "env=pendulum", "algo.batch_size=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drl: error: Invalid CrossQ settings: algo.batch_size must be >= 2")
    assert "batch normalization" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_tuned_pendulum_set_is_applied():
    cfg = cli._compose(["algo=crossq", "env=pendulum"])
    assert cfg.algo.name == "crossq" and cfg.env.num_envs == 1 and cfg.total_timesteps == 20000
    assert list(cfg.algo.critic_hidden_sizes) == [256, 256] and cfg.algo.policy_delay == 3


# --- peer: sb3-contrib's CrossQ on the same weights and batch -------------------------------


def unbiased_batch_norm(self: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d normalizing by the unbiased batch variance, as sb3-contrib's BatchRenorm."""
    if not self.training:
        return _BATCH_NORM_FORWARD(self, x)
    mean, var = x.mean(0), x.var(0)
    with torch.no_grad():
        self.running_mean.lerp_(mean, self.momentum)
        self.running_var.lerp_(var, self.momentum)
        self.num_batches_tracked.add_(1)
    return (x - mean) / (var + self.eps).sqrt() * self.weight + self.bias


_BATCH_NORM_FORWARD = nn.BatchNorm1d.forward


@pytest.mark.parametrize("variance", ["biased", "unbiased"])
def test_one_critic_update_matches_sb3_contrib(variance, monkeypatch):
    """Same weights, batch and next actions: sb3-contrib's CrossQ.train and ours give the same
    critic loss, updated critic weights and running statistics. Its BatchRenorm (in its 100k-step
    warm-up, i.e. batch norm) divides by the unbiased batch variance, torch's BatchNorm1d by the
    biased one (a relative difference ~1/(2 x 2B) in activations): with the unbiased one patched
    in the two agree to float precision, with torch's to ~0.3% in the loss."""
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from stable_baselines3.common.logger import Logger

    if variance == "unbiased":
        monkeypatch.setattr(nn.BatchNorm1d, "forward", unbiased_batch_norm)
    rel = 1e-5 if variance == "unbiased" else 5e-3

    torch.manual_seed(0)
    b = 128
    peer = sb3_contrib.CrossQ(
        "MlpPolicy",
        "Pendulum-v1",
        batch_size=b,
        policy_delay=1000,  # critic only
        policy_kwargs={"net_arch": {"pi": [8, 8], "qf": [16, 16]}},
        device="cpu",
    )
    peer.set_logger(Logger(folder=None, output_formats=[]))
    agent = make_agent(batch_size=b, policy_delay=1000)
    # Copy the peer's weights: BatchRenorm (scale, bias, ra_mean, ra_var) -> BatchNorm1d.
    for ours, theirs in zip(agent.critics.nets, peer.critic.q_networks, strict=True):
        for lo, lt in zip(ours, theirs, strict=True):
            if isinstance(lo, nn.Linear):
                lo.weight.data.copy_(lt.weight.data)
                lo.bias.data.copy_(lt.bias.data)
            elif isinstance(lo, nn.BatchNorm1d):
                lo.weight.data.copy_(lt.scale.data)
                lo.bias.data.copy_(lt.bias.data)
    batch = random_batch(b, seed=3)
    batch["rewards"] = batch["rewards"] * 0.1
    a_next = torch.rand(b, 1) * 2 - 1
    logp_next = torch.randn(b)

    class Data:
        observations = batch["obs"]
        actions = batch["actions"]
        next_observations = batch["next_obs"]
        rewards = batch["rewards"][:, None]
        dones = batch["terminated"].float()[:, None]
        discounts = None

    peer.replay_buffer.sample = lambda *args, **kwargs: Data()  # type: ignore[method-assign]
    peer.actor.action_log_prob = lambda obs: (a_next, logp_next)  # type: ignore[method-assign]
    peer.gamma = 0.99
    peer.train(gradient_steps=1, batch_size=b)
    peer_loss = peer.logger.name_to_value["train/critic_loss"]

    alpha = agent.log_alpha.detach().exp()
    loss, _, _ = critic_loss_and_target(agent.critics, batch, a_next, logp_next, alpha)
    agent.critic_flat.zero_grad()
    loss.backward()
    agent.critic_opt.step()

    assert loss.item() == pytest.approx(peer_loss, rel=rel)
    for ours, theirs in zip(agent.critics.nets, peer.critic.q_networks, strict=True):
        for lo, lt in zip(ours, theirs, strict=True):
            if isinstance(lo, nn.Linear):
                torch.testing.assert_close(lo.weight, lt.weight, rtol=0, atol=rel * 1e-2)
            elif isinstance(lo, nn.BatchNorm1d):
                torch.testing.assert_close(lo.running_mean, lt.ra_mean, rtol=rel, atol=1e-6)
                torch.testing.assert_close(lo.running_var, lt.ra_var, rtol=rel, atol=1e-6)
                torch.testing.assert_close(lo.weight, lt.scale, rtol=0, atol=rel * 1e-2)


# --- the real command -----------------------------------------------------------------------


def test_smoke_train_and_resume_through_drl(drl, clean_env, tmp_path):
    small = [
        "algo.hidden_sizes=[16,16]",
        "algo.critic_hidden_sizes=[32,32]",
        "algo.buffer_size=2048",  # small checkpoints
    ]
    args = [drl, "train", "algo=crossq", "env=pendulum", *TINY, *small, "algo.learning_starts=200"]
    out = run(args, tmp_path, clean_env)
    assert out.returncode == 0, out.stdout + out.stderr
    run_dir = single_run_dir(tmp_path)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["algo"]["name"] == "crossq" and cfg["algo"]["critic_hidden_sizes"] == [32, 32]
    assert cfg["env"]["num_envs"] == 1  # the tuned Pendulum set applied
    assert json.loads((run_dir / "result.json").read_text())["status"] == "finished"
    out = run([drl, "train", f"resume={run_dir}", "total_timesteps=1536"], tmp_path, clean_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resumed from" in out.stdout and "step_0000001024.pt at step 1024" in out.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["global_step"] >= 1536 and result["status"] == "finished"
