"""REINFORCE (Williams 1992): Monte-Carlo policy gradient over whole episodes.

    grad J = E[ sum_t grad log pi(a_t|s_t) (G_t - b(s_t)) ],  G_t = sum_{k>=t} gamma^(k-t) r_k

with reward-to-go returns G_t, an optional learned baseline b(s) = V(s) (fitted by regression
on G_t after the policy step) and optional standardization of G_t - b(s_t) over the batch.

A batch holds only whole episodes played by the current policy: the vector envs run until
finished episodes hold ``num_steps x num_envs`` steps. An episode still running at an update is
played to its end by the next policy but not learned from (it would be off-policy); those steps
count towards the budget and are logged as ``charts/discarded_steps``. Episodes cut by a time
limit are used as they are (G_t without a bootstrap), as in the Monte-Carlo method. Collection
stops where the run's step budget ends, with the whole episodes it has (none from an env whose
episodes never end: then there is nothing to learn from).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from drlcli.algos.base import POLICY_GRADIENT_ACTIONS, AlgoSpec, EnvInfo, VectorStep, to_env_actions
from drlcli.algos.onpolicy import OnPolicy, common_problems, descend, raise_problems
from drlcli.config import ReinforceConfig
from drlcli.returns import discounted_returns, explained_variance


def validate_reinforce(cfg: ReinforceConfig, num_envs: int, env_cfg: Any = None) -> None:
    problems = common_problems(cfg)
    if cfg.critic_epochs < 1:
        problems.append(f"algo.critic_epochs must be >= 1 (got {cfg.critic_epochs})")
    raise_problems("REINFORCE", problems)


def reward_to_go(rewards: torch.Tensor, dones: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma G_{t+1} inside an episode, 0 past its end; (T, N) -> (T, N)."""
    zeros = torch.zeros_like(rewards)
    return discounted_returns(rewards, zeros, dones, dones, gamma, bootstrap_last=False)


class Reinforce(OnPolicy):
    layout = "separate"

    def __init__(self, cfg: ReinforceConfig, env_info: EnvInfo, device: torch.device):
        validate_reinforce(cfg, env_info.num_envs)
        self.cfg: ReinforceConfig = cfg
        super().__init__(cfg, env_info, device)
        n = env_info.num_envs
        # Env i's running episode began under the current policy (true after a reset).
        self.on_policy = np.ones(n, dtype=bool)
        self.batch: dict[str, torch.Tensor] = {}
        self.discarded = 0
        self.budget = 2**62  # the run's total env steps (set_budget)

    def set_budget(self, total_timesteps: int, step0: float = 0.0, progress0: float = 0.0) -> None:
        self.budget = int(total_timesteps)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg, policy = self.cfg, self.policy
        opts: dict[str, torch.optim.Optimizer] = {
            "actor": torch.optim.Adam(
                policy.actor_parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps
            )
        }
        if cfg.baseline:
            opts["critic"] = torch.optim.Adam(
                policy.critic_parameters(), lr=cfg.critic_learning_rate, eps=cfg.adam_eps
            )
        return opts

    def build_buffer(self) -> None:
        return None  # variable-length batches of whole episodes, gathered in collect()

    def begin_collect(self, obs: np.ndarray) -> None:
        n = self.env_info.num_envs
        self.rows: dict[str, list[np.ndarray]] = {
            k: [] for k in ("obs", "act", "rew", "done", "use")
        }
        self.ep_start = np.zeros(n, dtype=np.int64)  # row where env i's running episode began
        self.complete = 0  # steps of whole on-policy episodes gathered
        # Whatever was running at the previous update belongs to an older policy.
        self.use = self.on_policy.copy()
        self._action = np.zeros(0)

    def act(self, obs: np.ndarray, global_step: int) -> np.ndarray:
        policy = self.policy
        action = policy.head.sample(policy.dist(torch.as_tensor(obs, device=self.device)))
        self._action = to_env_actions(action, policy.continuous)
        return self._action

    def observe(self, step: VectorStep) -> bool:
        rows, use, ep_start = self.rows, self.use, self.ep_start
        t = len(rows["obs"])
        done = step.terminated | step.truncated
        rows["obs"].append(step.obs)
        rows["act"].append(self._action)
        rows["rew"].append(step.reward.astype(np.float32))
        rows["done"].append(done)
        rows["use"].append(use.copy())
        for j in np.flatnonzero(done & use):
            self.complete += int(t + 1 - ep_start[j])
        ep_start[done] = t + 1
        use |= done  # a new episode starts under this policy
        # Collection stops at the run's budget with the whole episodes it has.
        target = self.cfg.num_steps * self.env_info.num_envs
        return self.complete >= target or step.global_step >= self.budget

    def end_collect(self, next_obs: np.ndarray) -> None:
        rows, ep_start, n = self.rows, self.ep_start, self.env_info.num_envs
        t_total = len(rows["obs"])
        use_rows = np.stack(rows["use"])
        for i in range(n):
            # Episodes still running now are incomplete: not learned from.
            use_rows[ep_start[i] :, i] = False
        # Next batch: envs in mid-episode continue an episode of this (soon old) policy.
        self.on_policy = ep_start == t_total
        self.discarded = int(t_total * n - use_rows.sum())

        def tensor(key: str, dtype: Any = None) -> torch.Tensor:
            return torch.as_tensor(np.stack(rows[key]), dtype=dtype, device=self.device)

        # The collector runs end_collect under inference mode; the batch is trained on, so it
        # must be made of normal tensors.
        with torch.inference_mode(False):
            rew, done = tensor("rew"), tensor("done")
            g = reward_to_go(rew, done, self.cfg.gamma)
            mask = torch.as_tensor(use_rows, device=self.device)
            self.batch = {
                "obs": tensor("obs", torch.float32)[mask],
                "act": tensor("act")[mask],
                "ret": g[mask],
            }

    def update(self, progress: float) -> dict[str, float]:
        cfg, policy, head = self.cfg, self.policy, self.policy.head
        self.anneal(progress)
        obs, act, ret = self.batch["obs"], self.batch["act"], self.batch["ret"]
        out: dict[str, float] = {"charts/discarded_steps": float(self.discarded)}
        if obs.shape[0] == 0:
            out["charts/batch_steps"] = 0.0
            return out  # no episode ended before the budget did: nothing to learn from
        if cfg.baseline:
            with torch.no_grad():
                values = policy.value(obs)
            adv = ret - values
            out["losses/explained_variance"] = explained_variance(values, ret)
        else:
            adv = ret.clone()
        if cfg.norm_adv and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        dist_params = policy.dist(obs)
        pg_loss = -(head.log_prob(dist_params, act) * adv).mean()
        entropy = head.entropy(dist_params).mean()
        actor_loss = pg_loss - cfg.ent_coef * entropy
        descend(self.optimizers["actor"], actor_loss, policy.actor_parameters(), cfg.max_grad_norm)

        if cfg.baseline:
            critic_opt = self.optimizers["critic"]
            for _ in range(cfg.critic_epochs):
                v_loss = (policy.value(obs) - ret).pow(2).mean()
                descend(critic_opt, v_loss, policy.critic_parameters(), cfg.max_grad_norm)
            out["losses/value_loss"] = float(v_loss.detach())
        out.update(
            {
                "charts/learning_rate": self.learning_rate,
                "losses/policy_loss": float(pg_loss.detach()),
                "losses/entropy": float(entropy.detach()),
                "charts/batch_steps": float(obs.shape[0]),
                "charts/discarded_steps": float(self.discarded),
            }
        )
        if policy.continuous:
            out["charts/action_std"] = float(policy.log_std.detach().exp().mean())
        return out

    def stream_break(self) -> None:
        """Restarted envs begin new episodes, all under the current policy."""
        self.on_policy[:] = True

    def extra_state(self) -> dict[str, Any]:
        return {"on_policy": torch.from_numpy(self.on_policy.copy())}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "on_policy" in state:
            self.on_policy = state["on_policy"].numpy().copy()


SPECS = (
    AlgoSpec(
        "reinforce",
        ReinforceConfig,
        Reinforce,
        POLICY_GRADIENT_ACTIONS,
        "on-policy",
        validate=validate_reinforce,
    ),
)
