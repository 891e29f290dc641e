"""TRPO (Schulman et al. 2015, arXiv:1502.05477) and the natural policy gradient (Kakade 2001).

Each update, with GAE advantages A and the rollout policy pi_old:

1. g = grad of the surrogate L(theta) = E[pi_theta(a|s) / pi_old(a|s) A] at theta_old;
2. x ~= F^-1 g by ``cg_iters`` steps of conjugate gradient, where F (the Fisher matrix) is
   only touched through Fisher-vector products Fv = grad((grad KL_mean) . v) + damping v
   (appendix C of the paper);
3. the full step s = sqrt(2 delta / x^T F x) x reaches the KL radius delta under the quadratic
   model of the KL;
4. TRPO: backtracking line search over theta_old + backtrack_coef^k s, accepting the first
   step whose exact mean KL is <= delta and whose surrogate improves; no step if none does.
   NPG (``line_search=false``): theta_old + s as it is.

The critic is fitted separately by regression on the GAE returns (minibatch Adam).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from drlcli.algos.base import POLICY_GRADIENT_ACTIONS, AlgoSpec, EnvInfo
from drlcli.algos.onpolicy import OnPolicy, common_problems, descend, raise_problems
from drlcli.config import TRPOConfig
from drlcli.networks import ActorCritic, DistParams, snapshot
from drlcli.returns import explained_variance


def validate_trpo(cfg: TRPOConfig, num_envs: int, env_cfg: Any = None) -> None:
    problems = common_problems(cfg)
    if cfg.max_kl <= 0:
        problems.append(f"algo.max_kl must be > 0 (got {cfg.max_kl})")
    if cfg.cg_iters < 1:
        problems.append(f"algo.cg_iters must be >= 1 (got {cfg.cg_iters})")
    if cfg.cg_damping < 0:
        problems.append(f"algo.cg_damping must be >= 0 (got {cfg.cg_damping})")
    if not 0 < cfg.backtrack_coef < 1:
        problems.append(f"algo.backtrack_coef must lie in (0, 1) (got {cfg.backtrack_coef})")
    if cfg.backtrack_iters < 1:
        problems.append(f"algo.backtrack_iters must be >= 1 (got {cfg.backtrack_iters})")
    if cfg.critic_epochs < 1 or cfg.critic_minibatch_size < 1:
        problems.append("algo.critic_epochs and algo.critic_minibatch_size must be >= 1")
    raise_problems("TRPO / NPG", problems)


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iters: int,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given only x -> A x
    (Nocedal & Wright, algorithm 5.2), starting from x = 0."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x
    p = r.clone()  # search direction
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / torch.dot(p, ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(
    policy: ActorCritic,
    obs: torch.Tensor,
    old_params: DistParams,
    v: torch.Tensor,
    damping: float,
) -> torch.Tensor:
    """(F + damping I) v, with F the Hessian of the mean KL(pi_old || pi_theta) at theta = theta_old
    (which equals the Fisher information there): two backward passes, never F itself."""
    params = policy.actor_parameters()
    kl = policy.head.kl(old_params, policy.dist(obs)).mean()
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    hvp = torch.autograd.grad(torch.dot(flat_grad, v), params)
    return torch.cat([g.reshape(-1) for g in hvp]) + damping * v


class TRPO(OnPolicy):
    layout = "separate"

    def __init__(self, cfg: TRPOConfig, env_info: EnvInfo, device: torch.device):
        validate_trpo(cfg, env_info.num_envs)
        self.cfg: TRPOConfig = cfg
        super().__init__(cfg, env_info, device)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # Only the critic has an optimizer; the actor moves by the natural-gradient step.
        return {
            "critic": torch.optim.Adam(
                self.policy.critic_parameters(), lr=self.cfg.learning_rate, eps=self.cfg.adam_eps
            )
        }

    def update(self, progress: float) -> dict[str, float]:
        cfg, buf, policy, head = self.cfg, self.buffer, self.policy, self.policy.head
        assert buf is not None
        self.anneal(progress)
        self.compute_advantages()
        obs, act = buf.flat("obs"), buf.flat("actions")
        old_logp, adv, ret = buf.flat("logprobs"), buf.flat("advantages"), buf.flat("returns")
        if cfg.norm_adv and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        actor_params = policy.actor_parameters()
        with torch.no_grad():
            # pi_old must be a copy: the step below moves the live log_std (issue #14).
            old_dist = snapshot(policy.dist(obs))

        def surrogate() -> torch.Tensor:
            return (torch.exp(head.log_prob(policy.dist(obs), act) - old_logp) * adv).mean()

        # 1. policy gradient of the surrogate at theta_old.
        loss_old = surrogate()
        g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss_old, actor_params)]).detach()
        loss_old = loss_old.detach()

        # 2-3. natural direction and the step that reaches the KL radius.
        def fvp(v: torch.Tensor) -> torch.Tensor:
            return fisher_vector_product(policy, obs, old_dist, v, cfg.cg_damping)

        direction = conjugate_gradient(fvp, g, cfg.cg_iters)
        shs = torch.dot(direction, fvp(direction))  # x^T F x
        step_scale = torch.sqrt(2.0 * cfg.max_kl / (shs + 1e-12))
        full_step = step_scale * direction
        expected = float(torch.dot(g, full_step))  # first-order predicted surrogate gain

        theta_old = parameters_to_vector(actor_params).detach()
        accepted, backtracks = True, 0
        with torch.no_grad():
            if cfg.line_search:
                accepted = False
                frac = 1.0
                for attempt in range(cfg.backtrack_iters):
                    backtracks = attempt
                    vector_to_parameters(theta_old + frac * full_step, actor_params)
                    kl = float(head.kl(old_dist, policy.dist(obs)).mean())
                    gain = float(surrogate() - loss_old)
                    if kl <= cfg.max_kl and gain > 0:
                        accepted = True
                        break
                    frac *= cfg.backtrack_coef
                if not accepted:
                    vector_to_parameters(theta_old, actor_params)
            else:
                vector_to_parameters(theta_old + full_step, actor_params)
            kl_reached = float(head.kl(old_dist, policy.dist(obs)).mean())
            surrogate_gain = float(surrogate() - loss_old)

        # 4. critic regression on the GAE returns.
        critic_opt = self.optimizers["critic"]
        size, mb = buf.size, min(cfg.critic_minibatch_size, buf.size)
        v_losses = []
        for _ in range(cfg.critic_epochs):
            perm = torch.randperm(size, device=self.device)
            for start in range(0, size, mb):  # every sample; the last minibatch may be smaller
                idx = perm[start : start + mb]
                v_loss = (policy.value(obs[idx]) - ret[idx]).pow(2).mean()
                descend(critic_opt, v_loss, policy.critic_parameters(), cfg.max_grad_norm)
                v_losses.append(v_loss.detach())

        out = self.entropy_metrics(obs)
        out.update(
            {
                "losses/kl": kl_reached,
                "losses/surrogate_gain": surrogate_gain,
                "losses/expected_gain": expected,
                "losses/step_norm": float(full_step.norm()),
                "losses/value_loss": float(torch.stack(v_losses).mean()),
                "losses/explained_variance": explained_variance(buf.flat("values"), ret),
                "charts/line_search_backtracks": float(backtracks),
                "charts/step_accepted": float(accepted),
            }
        )
        return out


SPECS = (
    AlgoSpec(
        "trpo", TRPOConfig, TRPO, POLICY_GRADIENT_ACTIONS, "on-policy", validate=validate_trpo
    ),
)
