"""Policy heads for factored discrete action spaces (issue #19).

Same interface as :class:`drlcli.networks.CategoricalHead` (closed-form ``sample``, ``mode``,
``sample_and_log_prob``, ``log_prob``, ``entropy``, ``kl``); the network outputs one row of
logits per sample. The action dimensions are independent given the state, so the log-prob,
entropy and KL of a joint action are the sums over its dimensions (the factorization
OpenAI baselines' MultiCategoricalPd and SB3's MultiCategoricalDistribution use).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class MultiCategoricalHead:
    """``MultiDiscrete(nvec)``: one categorical per entry. Logits (B, sum(nvec)), entry j owning
    columns ``offsets[j] : offsets[j] + nvec[j]``; actions (B, len(nvec)) int64 indices
    (0-based: ``VecEnv`` adds the space's ``start``)."""

    def __init__(self, nvec: Sequence[int]):
        self.nvec = [int(n) for n in nvec]
        self.param_dim = sum(self.nvec)
        # Equal sizes (the usual case) reshape to (B, k, n): one op per call, not one per entry.
        self._uniform = len(set(self.nvec)) == 1

    def _logps(self, logits: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        """Per-entry log-softmax: (B, k, n) when sizes are equal, else a list of (B, n_j)."""
        if self._uniform:
            k = len(self.nvec)
            return torch.log_softmax(logits.reshape(logits.shape[0], k, self.nvec[0]), dim=-1)
        return [torch.log_softmax(x, dim=-1) for x in torch.split(logits, self.nvec, dim=-1)]

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        return self.sample_and_log_prob(logits)[0]

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        logps = self._logps(logits)
        if isinstance(logps, torch.Tensor):
            return logps.argmax(-1)
        return torch.stack([lp.argmax(-1) for lp in logps], dim=-1)

    def sample_and_log_prob(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logps = self._logps(logits)
        if isinstance(logps, torch.Tensor):
            b, k, n = logps.shape
            a = torch.multinomial(logps.exp().reshape(b * k, n), 1).reshape(b, k)
            return a, logps.gather(-1, a.unsqueeze(-1)).squeeze(-1).sum(-1)
        actions = [torch.multinomial(lp.exp(), 1) for lp in logps]
        logp = torch.stack([lp.gather(-1, a).squeeze(-1) for lp, a in zip(logps, actions)]).sum(0)
        return torch.cat(actions, dim=-1), logp

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) (B,) = sum_j log pi_j(a_j|s) for actions (B, k)."""
        logps = self._logps(logits)
        actions = actions.long()
        if isinstance(logps, torch.Tensor):
            return logps.gather(-1, actions.unsqueeze(-1)).squeeze(-1).sum(-1)
        parts = [lp.gather(-1, actions[:, j : j + 1]).squeeze(-1) for j, lp in enumerate(logps)]
        return torch.stack(parts).sum(0)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """H (B,) = sum_j H_j."""
        logps = self._logps(logits)
        if isinstance(logps, torch.Tensor):
            return -(logps.exp() * logps).sum((-1, -2))
        return -torch.stack([(lp.exp() * lp).sum(-1) for lp in logps]).sum(0)

    def kl(self, old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
        """KL(old || new) (B,) = sum_j KL_j (the entries are independent)."""
        old, new = self._logps(old_logits), self._logps(new_logits)
        if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
            return (old.exp() * (old - new)).sum((-1, -2))
        return torch.stack([(o.exp() * (o - n)).sum(-1) for o, n in zip(old, new)]).sum(0)


class BernoulliHead:
    """``MultiBinary(n)``: one Bernoulli per bit, P(a_i = 1) = sigmoid(logit_i). Logits (B, n),
    actions (B, n) int64 in {0, 1}. Uses log-sigmoid throughout, so no probability is rounded
    to 0 or 1 before a log."""

    def __init__(self, n: int):
        self.n = int(n)
        self.param_dim = self.n

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        return (torch.rand_like(logits) < torch.sigmoid(logits)).long()

    def mode(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits > 0).long()

    def sample_and_log_prob(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action = self.sample(logits)
        return action, self.log_prob(logits, action)

    def log_prob(self, logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """sum_i [a_i log sigmoid(l_i) + (1 - a_i) log sigmoid(-l_i)] (B,)."""
        return -F.binary_cross_entropy_with_logits(
            logits, actions.to(logits.dtype), reduction="none"
        ).sum(-1)

    def entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """sum_i -[p_i log p_i + (1 - p_i) log(1 - p_i)] (B,)."""
        p = torch.sigmoid(logits)
        return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits)).sum(-1)

    def kl(self, old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
        """sum_i KL(Bern(p_i) || Bern(q_i)) (B,)."""
        p = torch.sigmoid(old_logits)
        log_p, log_1p = F.logsigmoid(old_logits), F.logsigmoid(-old_logits)
        log_q, log_1q = F.logsigmoid(new_logits), F.logsigmoid(-new_logits)
        return (p * (log_p - log_q) + (1 - p) * (log_1p - log_1q)).sum(-1)
