"""Typed config schemas, registered in Hydra's ConfigStore.

Every hyperparameter is declared once, here, as a dataclass field with a default and a short
docstring-comment. The YAML files under ``conf/`` only override values; because each YAML
starts from one of these schemas (``defaults: [/schema/...@_here_]``), a misspelt key or a
wrongly typed value fails when Hydra composes the config, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class WrapperSpec:
    """A per-env gymnasium wrapper: ``name`` from drlcli.envs.WRAPPERS or gymnasium.wrappers."""

    name: str = MISSING
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnvConfig:
    id: str = MISSING  # gymnasium id, e.g. CartPole-v1
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    num_envs: int = 8  # parallel copies in the vector env
    max_episode_steps: int | None = None  # override the registered time limit
    wrappers: list[WrapperSpec] = field(default_factory=list)  # applied in order, per env
    normalize_obs: bool = False  # running mean/std observation normalization
    normalize_reward: bool = False  # scale rewards by the std of the discounted return
    clip_obs: float = 10.0  # clip normalized observations to +-clip_obs
    clip_reward: float = 10.0  # clip normalized rewards to +-clip_reward
    solved_return: float | None = None  # mean eval return that counts as solved


@dataclass
class HardwareConfig:
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    torch_threads: int = 0  # 0 = automatic (cores / parallel jobs, at least 1)
    vectorization: str = "sync"  # sync | async (one process per env)
    deterministic: bool = False  # torch.use_deterministic_algorithms


@dataclass
class PPOConfig:
    """PPO-Clip (Schulman et al. 2017, arXiv:1707.06347) with GAE (arXiv:1506.02438)."""

    name: str = "ppo"  # implementation key in drlcli.registry
    num_steps: int = 128  # env steps per env per rollout
    minibatch_size: int = 256  # samples per gradient step
    update_epochs: int = 10  # passes over the rollout per update
    learning_rate: float = 3e-4
    anneal_lr: bool = True  # linear decay of the learning rate to 0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    norm_adv: bool = True  # normalize advantages per minibatch
    clip_coef: float = 0.2  # policy ratio clip (epsilon in the paper)
    clip_vloss: bool = False  # clip the value update around the old value prediction
    vf_clip_coef: float = 0.2  # value clip range when clip_vloss is true
    ent_coef: float = 0.0  # entropy bonus coefficient
    vf_coef: float = 0.5  # value loss coefficient
    max_grad_norm: float = 0.5  # global gradient-norm clip
    target_kl: float | None = None  # stop the epoch loop once approx KL exceeds 1.5x this
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"  # tanh | relu | elu
    shared_network: bool = False  # one torso for actor and critic
    ortho_init: bool = True  # orthogonal init with gains sqrt(2), 0.01 (policy), 1 (value)
    log_std_init: float = 0.0  # initial log std of the Gaussian policy (continuous actions)
    adam_eps: float = 1e-5


@dataclass
class OffPolicyConfig:
    """Settings every replay-based algorithm shares."""

    buffer_size: int = 1_000_000  # transitions kept (summed over envs)
    learning_starts: int = 100  # env steps of uniformly random actions before learning
    batch_size: int = 256
    train_freq: int = 1  # vector env steps between learning phases
    gradient_steps: int = 1  # gradient steps per learning phase
    gamma: float = 0.99
    learning_rate: float = 3e-4
    tau: float = 0.005  # polyak coefficient for target networks (1.0 = hard copy)
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"
    save_replay: bool = True  # put the replay buffer in checkpoints (exact resume; size logged)


@dataclass
class DQNConfig(OffPolicyConfig):
    """DQN (Mnih et al. 2015) with Double (van Hasselt 2016), Dueling (Wang 2016), prioritized
    replay (Schaul 2016) and n-step returns as switches."""

    name: str = "dqn"
    learning_rate: float = 1e-4
    buffer_size: int = 100_000
    learning_starts: int = 1000
    batch_size: int = 32
    train_freq: int = 4
    target_update_interval: int = 1000  # env steps between target updates
    tau: float = 1.0  # 1.0 = hard copy every target_update_interval steps
    exploration_fraction: float = 0.1  # share of the budget over which epsilon decays
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    max_grad_norm: float = 10.0
    loss: str = "huber"  # huber | mse
    double: bool = False  # online net picks a', target net values it
    dueling: bool = False  # Q = V + A - mean(A)
    prioritized: bool = False  # proportional prioritized replay
    per_alpha: float = 0.6  # priority exponent
    per_beta: float = 0.4  # initial importance-sampling exponent, annealed to 1
    per_eps: float = 1e-6  # added to |TD error|
    n_step: int = 1  # n-step returns
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])


@dataclass
class SACConfig(OffPolicyConfig):
    """Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1812.05905): squashed Gaussian actor, twin
    critics, automatic entropy temperature."""

    name: str = "sac"
    ent_coef: str = "auto"  # "auto" (tuned to target entropy -|A|) or a fixed alpha, e.g. "0.2"
    ent_coef_init: float = 1.0  # initial alpha when tuned
    target_update_interval: int = 1  # gradient steps between polyak updates


@dataclass
class TD3Config(OffPolicyConfig):
    """TD3 (Fujimoto et al. 2018): twin critics with the min target, target policy smoothing,
    delayed actor updates. DDPG (Lillicrap et al. 2016) is the same machinery with one critic,
    no smoothing and no delay (conf/algo/ddpg.yaml)."""

    name: str = "td3"
    twin_critics: bool = True
    policy_delay: int = 2  # critic updates per actor update
    target_policy_noise: float = 0.2  # smoothing noise std (actions scaled to [-1, 1])
    target_noise_clip: float = 0.5
    action_noise: str = "normal"  # normal | ou (Ornstein-Uhlenbeck) exploration noise
    action_noise_std: float = 0.1  # in the [-1, 1] action scale
    ou_theta: float = 0.15
    ou_dt: float = 0.01


@dataclass
class EvalConfig:
    every: int = 10_000  # env steps between evaluations (0 = only at the end)
    episodes: int = 10  # episodes per evaluation, on a separate env
    deterministic: bool = True  # greedy / mean action
    early_stop: bool = False  # stop training once mean eval return >= target
    target_return: float | None = None  # defaults to env.solved_return
    # Threshold pruning for searches: stop a run whose mean eval return is still below
    # prune_below once prune_after env steps have passed (status "pruned").
    prune_below: float | None = None
    prune_after: int = 0


@dataclass
class CheckpointConfig:
    every: int = 50_000  # env steps between checkpoints (0 = only at the end)
    keep_last: int = 3  # checkpoints kept on disk (the newest ones)


@dataclass
class LogConfig:
    tensorboard: bool = True
    every: int = 2_048  # env steps between scalar dumps (at least once per update)
    console_every_s: float = 10.0  # seconds between plain lines when not on a terminal
    progress: str = "auto"  # auto | rich | plain | none


@dataclass
class TrainConfig:
    algo: Any = MISSING
    env: EnvConfig = MISSING
    hardware: HardwareConfig = MISSING
    seed: int = 1
    total_timesteps: int = 100_000
    # Continue a run: its directory, or "auto" (resume when this run dir holds a checkpoint).
    resume: str | None = None
    # In a multirun: a failing job is recorded as failed and the sweep goes on (continue), or
    # the sweep stops (stop). A single run always exits with an error.
    on_error: str = "continue"
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)


# Algorithm schemas by config name. A variant config (e.g. a tuned PPO) extends its base YAML
# rather than adding a schema here.
ALGO_SCHEMAS: dict[str, type] = {
    "ppo": PPOConfig,
    "dqn": DQNConfig,
    "sac": SACConfig,
    "td3": TD3Config,
    "ddpg": TD3Config,
}


def register_configs() -> None:
    """Put the schemas where the YAML defaults lists find them. Idempotent."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="schema", name="env", node=EnvConfig)
    cs.store(group="schema", name="hardware", node=HardwareConfig)
    for name, schema in ALGO_SCHEMAS.items():
        cs.store(group="schema/algo", name=name, node=schema)


def to_train_config(cfg: Any) -> TrainConfig:
    """Composed DictConfig -> typed TrainConfig (algo becomes its own dataclass)."""
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, TrainConfig), type(obj)
    return obj


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A saved config (checkpoint or config.yaml) back into typed dataclasses."""
    from omegaconf import OmegaConf

    from drlcli.errors import DrlError, did_you_mean

    algo = dict(data.get("algo") or {})
    name = algo.get("name")
    schema = ALGO_SCHEMAS.get(str(name))
    if schema is None:
        raise DrlError(
            f"The saved config names algorithm '{name}', which this drlcli does not know."
            f"{did_you_mean(str(name), ALGO_SCHEMAS)}"
        )
    rest = {k: v for k, v in data.items() if k != "algo"}
    base = OmegaConf.structured(TrainConfig(algo=schema()))
    merged = OmegaConf.merge(
        base, rest, {"algo": OmegaConf.merge(OmegaConf.structured(schema), algo)}
    )
    return to_train_config(merged)
