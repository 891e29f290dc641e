"""A3C — asynchronous advantage actor-critic (Mnih et al. 2016, arXiv:1602.01783, algorithm S3).

``num_workers`` learner processes share one model (its parameters in shared memory) and one
RMSprop state (also shared, as in the paper's "shared RMSProp"). Each worker loops:

1. copy the shared parameters into its local network;
2. act for ``num_steps`` steps in its own envs (the same rollout code as A2C);
3. compute n-step returns (or GAE) and the gradient of
   -log pi(a|s) A + vf_coef (R - V(s))^2 - ent_coef H on its local network;
4. apply that gradient to the shared parameters with the shared optimizer, without a lock.

The training process does no learning: it starts the workers, relays their episodes and losses
to the runner (so every worker logs into the one TensorBoard run), evaluates the shared model
and checkpoints it. Asynchronous by nature, so a resumed A3C run continues from the checkpoint
but is not bit-identical to an uninterrupted one.

A runner-level mode, not a module of ``drlcli.algos`` (issue #18): its workers step envs of
their own, so it cannot take data from the runner's collector; the runner hands it the training
env (only for its spaces, seed and step count: one env, never stepped) through ``collect``.
"""

from __future__ import annotations

import queue
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from drlcli import interrupts, networks
from drlcli.algos.base import (
    POLICY_GRADIENT_ACTIONS,
    Algorithm,
    AlgoSpec,
    EnvInfo,
    VectorStep,
    to_env_actions,
)
from drlcli.algos.onpolicy import (
    build_actor_critic,
    common_problems,
    raise_problems,
    rollout_gae,
)
from drlcli.buffers import RolloutBuffer
from drlcli.collector import collect_rollout
from drlcli.config import A3CConfig, EnvConfig
from drlcli.envs import Episode, VecEnv
from drlcli.errors import DrlError
from drlcli.networks import ActorCritic
from drlcli.returns import budget_progress
from drlcli.workers import ignore_interrupts


def validate_a3c(cfg: A3CConfig, num_envs: int, env_cfg: EnvConfig | None = None) -> None:
    problems = common_problems(cfg)
    if env_cfg is not None and (env_cfg.normalize_obs or env_cfg.normalize_reward):
        problems.append(
            "env.normalize_obs / env.normalize_reward must be false: each worker would keep "
            "its own statistics (use a2c or ppo for envs that need normalization)"
        )
    if cfg.num_workers < 1 or cfg.envs_per_worker < 1:
        problems.append("algo.num_workers and algo.envs_per_worker must be >= 1")
    if cfg.report_every < 1:
        problems.append(f"algo.report_every must be >= 1 (got {cfg.report_every})")
    raise_problems("A3C", problems)


def build_net(cfg: A3CConfig, info: EnvInfo) -> ActorCritic:
    return build_actor_critic(cfg, info, "separate")


def shared_rmsprop(model: torch.nn.Module, cfg: A3CConfig) -> torch.optim.RMSprop:
    """RMSprop whose per-parameter statistics live in shared memory."""
    opt = torch.optim.RMSprop(
        model.parameters(), lr=cfg.learning_rate, alpha=cfg.rms_alpha, eps=cfg.rms_eps
    )
    for p in model.parameters():
        state = opt.state[p]
        state["step"] = torch.zeros(()).share_memory_()
        state["square_avg"] = torch.zeros_like(p.data).share_memory_()
    return opt


def shared_rmsprop_step(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    shared: Sequence[dict[str, torch.Tensor]],
    lr: float,
    alpha: float,
    eps: float,
) -> None:
    """One lock-free RMSprop step (Tieleman & Hinton 2012) on shared parameters whose statistics
    are shared too (the paper's "shared RMSProp", Mnih et al. 2016, sec. 4).

    Each worker reads the shared ``square_avg`` once, computes ``s = alpha * s + (1 - alpha) g^2``
    in a tensor of its own, publishes it, and divides its own gradient by *its own* ``sqrt(s)``.
    ``torch.optim.RMSprop`` re-reads the shared statistic after updating it, so another worker's
    write landing in between (its gradient tiny where this one's is large, early in training when
    ``s`` is still ~0) divided a large gradient by ``eps``: a step of ``lr * g / 1e-5`` that drove
    the critic to inf within 30 updates on CartPole (a CI failure of the group-signal test). Here
    every element moves by at most ``lr / sqrt(1 - alpha)`` per step whatever the interleaving;
    a racing write can only lose some statistics, as any Hogwild update may.

    Shapes: ``params``, ``grads`` and each ``shared[i]["square_avg"]`` alike per parameter;
    ``shared[i]["step"]`` a 0-d counter kept for the checkpoint layout of torch's RMSprop.
    """
    with torch.no_grad():
        for p, g, state in zip(params, grads, shared):
            square_avg = state["square_avg"].mul(alpha).addcmul_(g, g, value=1 - alpha)
            state["square_avg"].copy_(square_avg)
            p.addcdiv_(g, square_avg.sqrt_().add_(eps), value=-lr)
            state["step"] += 1


def _worker(
    rank: int,
    cfg: A3CConfig,
    env_cfg: EnvConfig,
    info: EnvInfo,
    seed: int,
    gamma: float,
    shared_model: ActorCritic,
    opt_state: list[dict[str, torch.Tensor]],
    counter: Any,
    budget: Any,
    anchor: Any,
    stop: Any,
    out: Any,
    onednn_linear: bool = False,
) -> None:
    # The training process handles Ctrl-C / SIGTERM (also sent here by a group signal) and then
    # stops the workers.
    ignore_interrupts()
    torch.set_num_threads(1)
    networks.set_onednn_linear(onednn_linear)  # the run's hardware.cpu_linear (spawned: unset)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    env = None
    try:
        shared_params = list(shared_model.parameters())
        local = build_net(cfg, info)
        env = VecEnv(env_cfg, cfg.envs_per_worker, seed, "sync", gamma, training=True)
        obs = env.reset()
        head = local.head
        buf = RolloutBuffer(
            cfg.num_steps,
            cfg.envs_per_worker,
            tuple(info.observation_space.shape or ()),
            tuple(info.action_space.shape or ()),
            torch.float32 if local.continuous else torch.long,
            torch.device("cpu"),
        )
        sums: dict[str, float] = {}
        updates = 0
        last_report = time.monotonic()
        while not stop.is_set() and counter.value < budget.value:
            local.load_state_dict(shared_model.state_dict())  # 1. sync
            obs = collect_rollout(local, env, buf, obs)  # 2. act
            with counter.get_lock():
                counter.value += buf.size
                step = counter.value
            adv, ret = rollout_gae(buf, cfg.gamma, cfg.gae_lambda)  # 3. n-step / GAE
            b_obs, b_act = buf.flat("obs"), buf.flat("actions")
            adv, ret = adv.reshape(-1), ret.reshape(-1)
            if cfg.norm_adv and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            params, value = local.dist_and_value(b_obs)
            pg_loss = -(head.log_prob(params, b_act) * adv).mean()
            v_loss = F.mse_loss(value, ret)
            entropy = head.entropy(params).mean()
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
            local.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(local.parameters(), cfg.max_grad_norm)
            lr = cfg.learning_rate
            if cfg.anneal_lr:
                # The progress at this rollout's start, as the other on-policy methods.
                progress = budget_progress(step - buf.size, budget.value, anchor[0], anchor[1])
                lr = cfg.learning_rate * (1.0 - progress)
                if progress < 1.0:  # a learner past the budget (a race) trained no more
                    anchor[2] = progress  # the latest progress a learner annealed to
            grads = [
                torch.zeros_like(lp) if lp.grad is None else lp.grad for lp in local.parameters()
            ]
            # 4. lock-free update of the shared model
            shared_rmsprop_step(shared_params, grads, opt_state, lr, cfg.rms_alpha, cfg.rms_eps)
            for key, val in (
                ("policy_loss", pg_loss),
                ("value_loss", v_loss),
                ("entropy", entropy),
            ):
                sums[key] = sums.get(key, 0.0) + float(val.detach())
            sums["learning_rate"] = sums.get("learning_rate", 0.0) + lr
            updates += 1
            episodes = env.drain_episodes()
            now = time.monotonic()
            if episodes or now - last_report > 0.5:
                out.put(
                    (
                        "report",
                        rank,
                        [(e.ret, e.length) for e in episodes],
                        {k: v / updates for k, v in sums.items()} if updates else {},
                        step,
                    )
                )
                sums, updates, last_report = {}, 0, now
        out.put(("done", rank, None, None, counter.value))
    except BaseException as exc:  # surfaced by the training process as a DrlError
        if isinstance(exc, DrlError):  # already says what failed (an env's own traceback)
            out.put(("error", rank, str(exc), "", 0))
        else:
            out.put(("error", rank, f"{type(exc).__name__}: {exc}", traceback.format_exc(), 0))
    finally:
        if env is not None:
            env.close()


class A3C(Algorithm):
    def __init__(self, cfg: A3CConfig, env_info: EnvInfo, device: torch.device):
        validate_a3c(cfg, env_info.num_envs)
        if device.type != "cpu":
            raise DrlError(
                "algo=a3c runs its learners as CPU processes sharing one model in shared memory; "
                "use hardware=cpu (or a2c / ppo on the GPU)."
            )
        super().__init__(cfg, env_info, device)
        self.cfg: A3CConfig = cfg
        self.model = build_net(cfg, env_info)
        self.model.share_memory()
        self.optimizer = shared_rmsprop(self.model, cfg)
        ctx = mp.get_context("spawn")  # fork after torch's thread pools start can deadlock
        self._ctx = ctx
        self.counter = ctx.Value("q", 0)
        self.budget = ctx.Value("q", 2**62)
        # budget_progress's (step0, progress0), then the progress the learners last used
        self.anchor = ctx.Array("d", [0.0, 0.0, 0.0])
        self.stop = ctx.Event()
        self.out: Any = ctx.Queue()
        self.procs: list[Any] = []
        self.env_cfg: EnvConfig | None = None
        self.seed = 0
        self.metrics: dict[str, float] = {}
        self.done: set[int] = set()

    # --- runner hooks ------------------------------------------------------------------
    def act(self, obs: np.ndarray, global_step: int) -> np.ndarray:
        raise NotImplementedError("A3C's workers act in their own envs; the runner calls collect")

    def observe(self, step: VectorStep) -> bool:
        raise NotImplementedError("A3C's workers store their own rollouts")

    def set_budget(self, total_timesteps: int, step0: float = 0.0, progress0: float = 0.0) -> None:
        self.budget.value = int(total_timesteps)
        self.anchor[0], self.anchor[1] = step0, progress0

    def _start(self, env: VecEnv) -> None:
        validate_a3c(self.cfg, env.num_envs, env.cfg)
        self.counter.value = env.global_step
        info = EnvInfo(env.single_observation_space, env.single_action_space, 1)
        gamma = float(self.cfg.gamma)
        opt_state = [self.optimizer.state[p] for p in self.model.parameters()]
        for rank in range(self.cfg.num_workers):
            # Seeds no other worker, segment or the eval env uses.
            seed = env.seed + 1009 * (rank + 1) + 7919 * (env.global_step // 1000)
            proc = self._ctx.Process(
                target=_worker,
                args=(
                    rank,
                    self.cfg,
                    env.cfg,
                    info,
                    seed,
                    gamma,
                    self.model,
                    opt_state,
                    self.counter,
                    self.budget,
                    self.anchor,
                    self.stop,
                    self.out,
                    networks.onednn_linear_enabled(),
                ),
                daemon=True,
                name=f"drl-a3c-{rank}",
            )
            proc.start()
            self.procs.append(proc)

    def collect(self, env: VecEnv) -> None:
        """Wait for the workers' next ``report_every`` steps; hand their episodes to the runner."""
        if not self.procs:
            self._start(env)
        target = min(env.global_step + self.cfg.report_every, self.budget.value)
        sums: dict[str, list[float]] = {}
        while True:
            interrupts.check()
            try:
                kind, rank, a, b, step = self.out.get(timeout=0.2)
            except queue.Empty:
                kind = None
            if kind == "error":
                self.close()
                raise DrlError(f"A3C worker {rank} failed: {a}\n{b}".rstrip())
            if kind == "report":
                for ret, length in a:
                    env.episodes.append(Episode(ret, length, step))
                for k, v in b.items():
                    sums.setdefault(k, []).append(v)
            elif kind == "done":
                self.done.add(rank)
            elif (
                kind is None
                and not any(p.is_alive() for p in self.procs)
                and len(self.done) < len(self.procs)
            ):
                codes = [p.exitcode for p in self.procs]
                self.close()
                raise DrlError(f"A3C workers exited unexpectedly (exit codes {codes}).")
            reached = self.counter.value >= target
            if reached or len(self.done) == len(self.procs):
                break
        env.global_step = max(env.global_step, int(self.counter.value))
        self.metrics = {
            ("charts/" if k == "learning_rate" else "losses/") + k: float(np.mean(v))
            for k, v in sums.items()
        }

    def schedule_progress(self, progress: float) -> float:
        return float(self.anchor[2]) if self.cfg.anneal_lr else progress

    def update(self, progress: float) -> dict[str, float]:
        out = dict(self.metrics)
        out["charts/workers_alive"] = float(sum(p.is_alive() for p in self.procs))
        return out

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with torch.inference_mode():
            params = self.model.dist(torch.as_tensor(obs))
            head = self.model.head
            action = head.mode(params) if deterministic else head.sample(params)
        return to_env_actions(action, self.model.continuous)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"policy": self.model}

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": [
                {k: v.clone() for k, v in self.optimizer.state[p].items()}
                for p in self.model.parameters()
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(state["policy"][k])
            for p, saved in zip(self.model.parameters(), state["optimizer"]):
                for k, v in self.optimizer.state[p].items():
                    v.copy_(saved[k])

    def close(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            proc.join(timeout=max(deadline - time.monotonic(), 0.1))
            if proc.is_alive():
                proc.kill()  # SIGTERM is ignored in the workers
                proc.join(timeout=1)
        self.procs = []


SPECS = (
    AlgoSpec("a3c", A3CConfig, A3C, POLICY_GRADIENT_ACTIONS, "asynchronous", validate=validate_a3c),
)
