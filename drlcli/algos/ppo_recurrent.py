"""PPO with a recurrent (GRU / LSTM) policy, for partially observed envs.

What changes against feed-forward PPO (the loss is the same code):

* rollouts carry the recurrent state from step to step and zero it where an episode begins;
  the state at the start of each rollout is stored, with an ``starts[t, env]`` flag per step;
* minibatches are whole env sequences (all ``num_steps`` steps of ``minibatch_size //
  num_steps`` envs), replayed through the network from the stored initial state, so the
  gradient flows back through time over the whole rollout (truncated BPTT at rollout bounds);
* evaluation keeps its own state per eval env, reset when its episode ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from drlcli.algos.base import EnvInfo, VectorStep, to_env_actions
from drlcli.algos.ppo import PPO
from drlcli.config import PPOConfig
from drlcli.networks import DistParams, RecurrentActorCritic, snapshot


def select_state(state: torch.Tensor, idx: Any) -> torch.Tensor:
    """Rows ``idx`` of a recurrent state: (B, H) for a GRU, (2, B, H) for an LSTM."""
    return state[idx] if state.dim() == 2 else state[:, idx]


class RecurrentPPO(PPO):
    def __init__(self, cfg: PPOConfig, env_info: EnvInfo, device: torch.device):
        super().__init__(cfg, env_info, device)
        n = env_info.num_envs
        self.np_starts = np.zeros((cfg.num_steps, n), dtype=bool)  # (T, N) s_t begins an episode
        self.starts = torch.from_numpy(self.np_starts)
        self.state = self.policy.initial_state(n, device)  # carried between rollouts
        self.init_state = self.state.clone()  # the state at the start of the stored rollout
        self.next_start = np.ones(n, dtype=bool)  # the next observation begins an episode
        self._eval_state: torch.Tensor | None = None
        self._eval_start = np.ones(0, dtype=bool)

    def build_policy(self) -> Any:
        cfg, info = self.cfg, self.env_info
        return RecurrentActorCritic(
            info.observation_space,
            info.action_space,
            cfg.hidden_sizes,
            cfg.activation,
            cfg.rnn_type,
            cfg.rnn_hidden,
            cfg.ortho_init,
            cfg.log_std_init,
        )

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device)

    # --- experience ----------------------------------------------------------------------
    def begin_collect(self, obs: np.ndarray) -> None:
        assert self.buffer is not None
        self.buffer.final_values.zero_()
        self.init_state = self.state.clone()
        self.t = 0

    def act(self, obs: np.ndarray, global_step: int) -> np.ndarray:
        buf, t = self.buffer, self.t
        assert buf is not None
        buf.np_obs[t] = obs
        self.np_starts[t] = self.next_start
        params, value, self.state = self.policy.step(
            self._t(buf.np_obs[t]), self.state, self._t(self.np_starts[t])
        )
        action, logprob = self.policy.head.sample_and_log_prob(params)
        buf.actions[t] = action
        buf.logprobs[t] = logprob
        buf.values[t] = value
        return to_env_actions(action, self.policy.continuous)

    def observe(self, step: VectorStep) -> bool:
        buf, t = self.buffer, self.t
        assert buf is not None
        buf.np_rewards[t] = step.reward
        buf.np_terminated[t] = step.terminated
        done = step.terminated | step.truncated
        buf.np_dones[t] = done
        trunc = np.flatnonzero(step.truncated & ~step.terminated)
        if trunc.size:
            # Bootstrap a time-limit truncation from V(final_obs), given the history.
            idx = self._t(trunc)
            _, v_final, _ = self.policy.step(
                self._t(step.final_obs[trunc]),
                select_state(self.state, idx),
                torch.zeros(trunc.size, dtype=torch.bool, device=self.device),
            )
            buf.final_values[t, idx] = v_final
        self.next_start = done.copy()
        self.t += 1
        return self.t == buf.num_steps

    def end_collect(self, next_obs: np.ndarray) -> None:
        buf = self.buffer
        assert buf is not None
        _, last_value, _ = self.policy.step(self._t(next_obs), self.state, self._t(self.next_start))
        buf.finish(last_value)
        if not buf.on_cpu:
            self.starts = self._t(self.np_starts)

    # --- sequence minibatches ------------------------------------------------------------
    def minibatches(self) -> Iterator[tuple[torch.Tensor | None, Any]]:
        buf = self.buffer
        assert buf is not None
        t, n = buf.num_steps, buf.num_envs
        envs_per_mb = self.cfg.minibatch_size // t
        if envs_per_mb >= n:
            yield None, None
            return
        perm = torch.randperm(n, device=self.device)
        steps = torch.arange(t, device=self.device).unsqueeze(1) * n
        for start in range(0, n - envs_per_mb + 1, envs_per_mb):
            envs = perm[start : start + envs_per_mb]
            # Flat (time-major) indices of those envs' whole sequences: row t*N + env.
            yield (steps + envs.unsqueeze(0)).reshape(-1), envs

    def forward(self, obs: torch.Tensor, key: Any) -> tuple[DistParams, torch.Tensor]:
        t = self.cfg.num_steps
        obs = obs.reshape(t, -1, *obs.shape[1:])
        if key is None:
            return self.policy.unroll(obs, self.init_state, self.starts)
        return self.policy.unroll(obs, select_state(self.init_state, key), self.starts[:, key])

    def old_dist(self, obs: torch.Tensor) -> DistParams:
        with torch.no_grad():
            return snapshot(self.forward(obs, None)[0])  # a copy, see PPO.old_dist

    def final_dist(self, b_obs: torch.Tensor) -> DistParams:
        return self.forward(b_obs, None)[0]

    def entropy_metrics(self, obs: torch.Tensor) -> dict[str, float]:
        """As for feed-forward PPO, with the policy replayed over the stored sequences."""
        out = {"charts/learning_rate": self.learning_rate}
        with torch.no_grad():
            params, _ = self.forward(obs, None)
            out["losses/entropy"] = float(self.policy.head.entropy(params).mean())
            if self.policy.continuous:
                out["charts/action_std"] = float(self.policy.log_std.exp().mean())
        return out

    def stream_break(self) -> None:
        """Restarted envs begin new episodes: the carried state must not run on into them."""
        self.next_start[:] = True

    # --- evaluation: a state per eval env ------------------------------------------------
    def reset_predict_state(self, num_envs: int) -> None:
        self._eval_state = self.policy.initial_state(num_envs, self.device)
        self._eval_start = np.ones(num_envs, dtype=bool)

    def episodes_ended(self, done: np.ndarray) -> None:
        self._eval_start = np.asarray(done, dtype=bool).copy()

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        n = obs.shape[0]
        if self._eval_state is None or self._eval_start.shape[0] != n:
            self.reset_predict_state(n)
        assert self._eval_state is not None
        with torch.inference_mode():
            params, _, self._eval_state = self.policy.step(
                self._t(obs), self._eval_state, self._t(self._eval_start)
            )
            head = self.policy.head
            action = head.mode(params) if deterministic else head.sample(params)
        self._eval_start = np.zeros(n, dtype=bool)
        return to_env_actions(action, self.policy.continuous)

    # --- checkpointing: the rollout state too, for an exact resume ------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            **super().extra_state(),
            "rnn_state": self.state.cpu(),
            "next_start": torch.from_numpy(self.next_start.copy()),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        if "rnn_state" in state:
            self.state = snapshot(state["rnn_state"]).to(self.device)
            self.next_start = state["next_start"].numpy().copy()
