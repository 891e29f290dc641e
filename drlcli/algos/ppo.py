"""PPO (Schulman et al. 2017, arXiv:1707.06347).

Collect ``num_steps`` x ``num_envs`` transitions with the current policy, compute GAE
advantages (Schulman et al. 2016), then run ``update_epochs`` passes of minibatch Adam on one of
the paper's two surrogate objectives (r = pi(a|s) / pi_old(a|s)):

* ``loss=clip`` (eq. 7):        L = -E[min(r A, clip(r, 1-eps, 1+eps) A)]
* ``loss=kl_penalty`` (eq. 8):  L = -E[r A] + beta * E[KL(pi_old(.|s) || pi(.|s))], with beta
  adapted after every update (section 4): d = mean KL reached; beta /= 2 if d < d_targ / 1.5,
  beta *= 2 if d > d_targ * 1.5.

plus vf_coef * E[(V - R)^2] - ent_coef * E[H] (no 1/2 on the squared error: SB3's scale;
CleanRL's 0.5 * E[...] weighs the same vf_coef half as much). Every epoch uses every sample: a
minibatch_size that does not divide the rollout is refused (issue #14). Implementation details
follow "The 37 implementation details of PPO" (Huang et al. 2022): orthogonal init, advantage
normalization per minibatch, optional value clipping (the max of the clipped and unclipped
squared errors, as openai/baselines ppo2 and CleanRL; SB3 regresses the clipped prediction
alone), global grad-norm clip, linear learning-rate annealing, approx-KL early stop.
``recurrent=true`` swaps the MLP for a GRU/LSTM policy (ppo_recurrent.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from drlcli.algos.base import POLICY_GRADIENT_ACTIONS, Algorithm, AlgoSpec, EnvInfo
from drlcli.algos.onpolicy import OnPolicy, common_problems, raise_problems
from drlcli.config import PPOConfig
from drlcli.hardware import compiled, graph_step
from drlcli.networks import DistParams, FlatParams, snapshot
from drlcli.returns import explained_variance


def validate_ppo(cfg: PPOConfig, num_envs: int, env_cfg: Any = None) -> None:
    batch = cfg.num_steps * num_envs
    problems = common_problems(cfg)
    if cfg.minibatch_size < 1 or cfg.minibatch_size > batch:
        problems.append(
            f"algo.minibatch_size={cfg.minibatch_size} must be between 1 and the rollout size "
            f"num_steps x num_envs = {cfg.num_steps} x {num_envs} = {batch}"
        )
    elif cfg.recurrent and cfg.minibatch_size % max(cfg.num_steps, 1):
        problems.append(
            f"a recurrent policy trains on whole env sequences, so algo.minibatch_size="
            f"{cfg.minibatch_size} must be a multiple of algo.num_steps={cfg.num_steps} "
            f"(e.g. {cfg.num_steps * max(num_envs // 2, 1)})"
        )
    elif batch % cfg.minibatch_size:
        # Refused rather than dropped in silence (issue #14): the last batch % minibatch_size
        # samples of every epoch would never be trained on.
        unit = cfg.num_steps if cfg.recurrent else 1
        problems.append(
            f"algo.minibatch_size={cfg.minibatch_size} does not divide the rollout num_steps x "
            f"num_envs = {cfg.num_steps} x {num_envs} = {batch}, so {batch % cfg.minibatch_size} "
            f"samples of every epoch would never be trained on; use a divisor "
            f"(e.g. algo.minibatch_size={_nearest_divisor(batch, cfg.minibatch_size, unit)}) or "
            "change algo.num_steps / env.num_envs"
        )
    if cfg.norm_adv and cfg.minibatch_size == 1:
        # The std of one advantage is undefined (NaN): every update would poison the network.
        problems.append(
            f"algo.norm_adv=true normalizes advantages by their std within each minibatch, "
            f"which one sample (algo.minibatch_size={cfg.minibatch_size}, rollout of "
            f"{batch}) does not have; use algo.minibatch_size >= 2 (a rollout "
            "num_steps x num_envs >= 2) or algo.norm_adv=false"
        )
    if cfg.update_epochs < 1:
        problems.append(f"algo.update_epochs must be >= 1 (got {cfg.update_epochs})")
    if cfg.loss not in ("clip", "kl_penalty"):
        problems.append(f"algo.loss must be clip or kl_penalty (got '{cfg.loss}')")
    if cfg.clip_coef <= 0:
        problems.append(f"algo.clip_coef must be > 0 (got {cfg.clip_coef})")
    if cfg.loss == "kl_penalty" and (cfg.kl_target <= 0 or cfg.kl_beta_init <= 0):
        problems.append("algo.kl_target and algo.kl_beta_init must be > 0")
    if cfg.rnn_type not in ("gru", "lstm"):
        problems.append(f"algo.rnn_type must be gru or lstm (got '{cfg.rnn_type}')")
    raise_problems("PPO", problems)


def _nearest_divisor(batch: int, wanted: int, unit: int = 1) -> int:
    """The divisor of ``batch`` that is a multiple of ``unit`` closest to ``wanted`` (the larger
    one on a tie)."""
    options = [d for d in range(unit, batch + 1, unit) if batch % d == 0]
    return min(options, key=lambda d: (abs(d - wanted), -d))


def adapt_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """PPO paper, section 4: halve beta when the update moved less than d_targ / 1.5, double it
    when it moved more than d_targ * 1.5, else keep it."""
    if kl < kl_target / 1.5:
        return beta / 2.0
    if kl > kl_target * 1.5:
        return beta * 2.0
    return beta


class PPO(OnPolicy):
    def __init__(self, cfg: PPOConfig, env_info: EnvInfo, device: torch.device):
        validate_ppo(cfg, env_info.num_envs)
        self.cfg: PPOConfig = cfg
        self.kl_beta = cfg.kl_beta_init
        super().__init__(cfg, env_info, device)
        self._minibatch_loss = self.minibatch_loss  # compile_learner swaps in a compiled one
        self._compiled = False

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # Per-op overhead, not FLOPs, bounds small nets: all parameters live in one flat tensor
        # so Adam is one fused kernel and the gradient-norm clip two ops.
        self.flat = FlatParams(list(self.policy.parameters()))
        fused = self.device.type in ("cpu", "cuda")
        adam = self.flat.optimizer(
            torch.optim.Adam, lr=self.cfg.learning_rate, eps=self.cfg.adam_eps, fused=fused
        )
        return {"optimizer": adam}

    # --- minibatching (overridden by the recurrent variant) ------------------------------
    def minibatches(self) -> Iterator[tuple[torch.Tensor | None, Any]]:
        """One epoch of (flat sample indices or None for the whole rollout, forward key)."""
        size, mb = self.buffer.size, self.cfg.minibatch_size  # type: ignore[union-attr]
        if mb >= size:
            # A minibatch as large as the rollout needs no shuffling: the loss is a mean.
            yield None, None
            return
        perm = torch.randperm(size, device=self.device)
        for start in range(0, size - mb + 1, mb):
            idx = perm[start : start + mb]
            yield idx, idx

    def compile_learner(self, mode: str) -> None:
        self._minibatch_loss = compiled(self.minibatch_loss, mode)
        self._compiled = True

    def minibatch_loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        old_logp: torch.Tensor,
        adv: torch.Tensor,
        ret: torch.Tensor,
        old_v: torch.Tensor,
        key: Any,
        old: DistParams | None,
        kl_beta: float | torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """(loss, log ratio (B,), policy loss, value loss, KL or 0) of one minibatch of B
        samples: the clipped surrogate (Schulman et al. 2017, eq. 7) or, with ``old`` (pi_old's
        distribution parameters), the KL-penalized one (eq. 8) with coefficient ``kl_beta``;
        the (optionally clipped) value loss, and the entropy bonus."""
        cfg, head = self.cfg, self.policy.head
        dist_params, value = self.forward(obs, key)
        logratio = head.log_prob(dist_params, act) - old_logp
        ratio = logratio.exp()
        kl = torch.zeros((), device=obs.device)
        if old is not None:
            kl = head.kl(old, dist_params).mean()
            pg_loss = -(ratio * adv).mean() + kl_beta * kl
        else:
            pg_loss = -torch.min(
                ratio * adv, ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef) * adv
            ).mean()
        if cfg.clip_vloss:
            v_clipped = old_v + (value - old_v).clamp(-cfg.vf_clip_coef, cfg.vf_clip_coef)
            v_loss = torch.max((value - ret).pow(2), (v_clipped - ret).pow(2)).mean()
        else:
            v_loss = F.mse_loss(value, ret)
        loss = pg_loss + cfg.vf_coef * v_loss
        if cfg.ent_coef != 0.0:
            loss = loss - cfg.ent_coef * head.entropy(dist_params).mean()
        return loss, logratio, pg_loss, v_loss, kl

    def forward(self, obs: torch.Tensor, key: Any) -> tuple[DistParams, torch.Tensor]:
        """Policy parameters and values for a minibatch (``obs`` already gathered; ``key``: its
        flat rollout indices, None for the whole rollout), action masks applied."""
        params, value = self.policy.dist_and_value(obs)
        return self.masked(params, key), value

    def old_dist(self, obs: torch.Tensor) -> DistParams:
        """pi_old's distribution parameters for ``obs``, copied: they must not move with the
        live log_std while the epochs train (issue #14)."""
        with torch.no_grad():
            return snapshot(self.masked(self.policy.dist(obs)))

    # --- learning ------------------------------------------------------------------------
    def update(self, progress: float) -> dict[str, float]:
        cfg, buf, head = self.cfg, self.buffer, self.policy.head
        assert buf is not None
        self.anneal(progress)
        self.compute_advantages()
        penalty = cfg.loss == "kl_penalty"

        b_obs, b_act = buf.flat("obs"), buf.flat("actions")
        b_logp, b_adv = buf.flat("logprobs"), buf.flat("advantages")
        b_ret, b_val = buf.flat("returns"), buf.flat("values")
        # The penalty needs the exact KL, so pi_old's distribution parameters for every sample.
        b_old = self.old_dist(b_obs) if penalty else None
        full_batch = cfg.minibatch_size >= buf.size
        if cfg.norm_adv and full_batch:
            # Per-minibatch normalization of a single full-batch minibatch, hoisted out of the loop.
            b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)

        # A compiled loss takes beta as a tensor (a float would recompile at every change).
        kl_beta: float | torch.Tensor = self.kl_beta
        if self._compiled:  # (a bound method is a new object at each access: no `is` test)
            kl_beta = torch.tensor(self.kl_beta, dtype=torch.float32, device=self.device)
        logratios, pg_losses, v_losses, kls = [], [], [], []
        epochs_done = 0
        stop = False
        for _ in range(cfg.update_epochs):
            for idx, key in self.minibatches():
                if idx is None:
                    obs, act, old_logp, adv, ret, old_v = b_obs, b_act, b_logp, b_adv, b_ret, b_val
                    old = b_old
                else:
                    obs, act, old_logp = b_obs[idx], b_act[idx], b_logp[idx]
                    adv, ret, old_v = b_adv[idx], b_ret[idx], b_val[idx]
                    old = _index(b_old, idx) if penalty else None
                    if cfg.norm_adv and adv.numel() > 1:
                        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

                graph_step()
                loss, logratio, pg_loss, v_loss, kl = self._minibatch_loss(
                    obs, act, old_logp, adv, ret, old_v, key, old, kl_beta
                )
                if cfg.target_kl is not None:
                    with torch.no_grad():
                        # Schulman's low-variance unbiased KL estimator k3 = (r - 1) - log r.
                        kl_est = (logratio.exp() - 1 - logratio).mean().item()
                    if kl_est > 1.5 * cfg.target_kl:
                        stop = True
                        break
                if penalty:
                    kls.append(kl.detach())

                self.flat.zero_grad()
                loss.backward()
                self.flat.clip_grad_norm_(cfg.max_grad_norm)
                self.optimizers["optimizer"].step()
                # Metrics are reduced once per update, not per minibatch.
                logratios.append(logratio.detach())
                pg_losses.append(pg_loss.detach())
                v_losses.append(v_loss.detach())
            epochs_done += 1
            if stop:
                break

        out = self.entropy_metrics(b_obs)
        out["charts/update_epochs"] = float(epochs_done)
        out["losses/explained_variance"] = explained_variance(b_val, b_ret)
        with torch.no_grad():
            if logratios:
                lr_all = torch.cat([x.reshape(-1) for x in logratios])
                ratio_all = lr_all.exp()
                out["losses/policy_loss"] = float(torch.stack(pg_losses).mean())
                out["losses/value_loss"] = float(torch.stack(v_losses).mean())
                out["losses/approx_kl"] = float((ratio_all - 1 - lr_all).mean())
                out["losses/clipfrac"] = float(
                    ((ratio_all - 1).abs() > cfg.clip_coef).float().mean()
                )
            if penalty:
                # d: the exact mean KL between the rollout policy and the updated one.
                with torch.no_grad():
                    kl_final = float(head.kl(b_old, self.final_dist(b_obs)).mean())
                out["losses/kl"] = kl_final
                out["charts/kl_beta"] = self.kl_beta  # the beta this update used
                self.kl_beta = adapt_kl_beta(self.kl_beta, kl_final, cfg.kl_target)
        return out

    def final_dist(self, b_obs: torch.Tensor) -> DistParams:
        return self.masked(self.policy.dist(b_obs))

    def extra_state(self) -> dict[str, Any]:
        return {"kl_beta": self.kl_beta}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.kl_beta = float(state.get("kl_beta", self.cfg.kl_beta_init))


def _index(params: DistParams, idx: torch.Tensor) -> DistParams:
    """Rows ``idx`` of per-sample distribution params; a state-independent log std (d,) is
    shared by all rows, gSDE's per-sample log std (B, d) and latent (B, F) are indexed."""
    if isinstance(params, tuple):
        return tuple(p[idx] if p.dim() > 1 else p for p in params)
    return params[idx]


def make_ppo(cfg: PPOConfig, env_info: EnvInfo, device: torch.device) -> Algorithm:
    """PPO, or its recurrent form when ``cfg.recurrent``."""
    if cfg.recurrent:
        from drlcli.algos.ppo_recurrent import RecurrentPPO

        return RecurrentPPO(cfg, env_info, device)
    return PPO(cfg, env_info, device)


SPECS = (
    AlgoSpec(
        "ppo",
        PPOConfig,
        make_ppo,
        POLICY_GRADIENT_ACTIONS,
        "on-policy",
        images=True,
        validate=validate_ppo,
        action_masks=True,
        compilable=True,
    ),
)
