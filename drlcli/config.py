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
    id: str = MISSING  # gymnasium id, e.g. CartPole-v1, or module:Id (imports module first)
    imports: list[str] = field(default_factory=list)  # modules imported first (register envs)
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gymnasium.make
    num_envs: int = 8  # parallel copies in the vector env
    max_episode_steps: int | None = None  # override the registered time limit
    wrappers: list[WrapperSpec] = field(default_factory=list)  # applied in order, per env
    normalize_obs: bool = False  # running mean/std observation normalization
    normalize_reward: bool = False  # scale rewards by the std of the discounted return
    clip_obs: float = 10.0  # clip normalized observations to +-clip_obs
    clip_reward: float = 10.0  # clip normalized rewards to +-clip_reward
    # Atari-style training-only signals (eval always sees the real game): a lost life ends the
    # learner's episode without resetting the game; rewards become their sign (-1, 0, +1).
    episodic_life: bool = False
    clip_reward_sign: bool = False
    solved_return: float | None = None  # mean eval return that counts as solved


# hardware.vectorization choices (drlcli.hardware checks them; drlcli.envs builds them)
VECTORIZATIONS = ("sync", "workers", "async", "envpool")
# hardware.compile: torch.compile modes for the learner's loss functions ("none": eager).
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
CPU_LINEARS = ("auto", "onednn", "aten")
LOG_PROGRESS = ("auto", "rich", "plain", "none")
ON_ERROR = ("continue", "stop")
# Settings with a fixed set of values, checked for every swept value before a sweep starts
# (cli.check_overrides); drlcli/completion.py keeps its own copy (it must not import hydra),
# which tests/test_cli.py compares with this one.
CHOICES = {
    "hardware.vectorization": VECTORIZATIONS,
    "hardware.compile": COMPILE_MODES,
    "hardware.cpu_linear": CPU_LINEARS,
    "log.progress": LOG_PROGRESS,
    "on_error": ON_ERROR,
}


@dataclass
class HardwareConfig:
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (cuda if present, else cpu)
    # 0 = automatic: 1 for small MLPs; large MLP learners and CNNs up to the cores per job minus
    # env workers, moved with the other load on the machine (hardware.ThreadGovernor)
    torch_threads: int = 0
    # sync: envs step in this process | workers: drlcli's worker processes, several envs each,
    # shared-memory observations | async: gymnasium's AsyncVectorEnv, one process per env |
    # envpool: EnvPool's C++ envs on its thread pool (drlcli[envpool]; drlcli/envpool_backend.py)
    vectorization: str = "sync"
    num_workers: int = 0  # workers: env processes; envpool: threads (0 = min(cores, num_envs))
    envs_per_worker: int = 0  # workers: if set, env.num_envs must be num_workers x this
    deterministic: bool = False  # torch.use_deterministic_algorithms
    # torch.compile the learner's loss functions (sac, td3, ddpg, ppo): none | default |
    # reduce-overhead (CUDA graphs on a GPU) | max-autotune. Whole graphs or an error, never a
    # silent partial compile (fullgraph=True); the optimizer steps stay eager (fused Adam).
    compile: str = "none"
    # Matmul library for large float32 linear layers on the CPU (networks.linear): auto (oneDNN
    # where MKL runs without its AVX-512 kernels: x86 CPUs with AVX-512 not made by Intel) |
    # onednn | aten (torch's F.linear, MKL in its CPU builds)
    cpu_linear: str = "auto"


@dataclass
class OnPolicyConfig:
    """Settings every policy-gradient method shares (rollout storage, returns, networks)."""

    num_steps: int = 128  # env steps per env per rollout
    learning_rate: float = 3e-4
    anneal_lr: bool = True  # linear decay of the learning rate(s) to 0
    gamma: float = 0.99
    gae_lambda: float = 0.95  # GAE lambda (1.0 = n-step returns, 0.0 = one-step TD error)
    norm_adv: bool = True  # normalize advantages (per minibatch)
    ent_coef: float = 0.0  # entropy bonus coefficient
    vf_coef: float = 0.5  # value loss coefficient (one shared optimizer)
    max_grad_norm: float = 0.5  # global gradient-norm clip
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"  # tanh | relu | elu
    shared_network: bool = False  # one torso for actor and critic
    ortho_init: bool = True  # orthogonal init with gains sqrt(2), 0.01 (policy), 1 (value)
    log_std_init: float = 0.0  # initial log std of the Gaussian policy (gSDE: per feature)
    adam_eps: float = 1e-5
    # Generalized state-dependent exploration (Raffin et al. 2022), ppo, a2c and trpo/npg only:
    # noise = latent features @ an exploration matrix per env, drawn from a learned std.
    use_sde: bool = False
    sde_sample_freq: int = -1  # -1: new matrices at each rollout start only; n: also every n steps
    full_std: bool = True  # gSDE: one std per (feature, action) pair, else one per feature
    use_expln: bool = False  # gSDE: expln instead of exp keeps the std from growing too fast


@dataclass
class PPOConfig(OnPolicyConfig):
    """PPO (Schulman et al. 2017, arXiv:1707.06347) with GAE (arXiv:1506.02438): the clipped
    surrogate, or the adaptive KL penalty of section 4 (``loss=kl_penalty``); optionally with a
    recurrent (GRU / LSTM) policy trained on whole sequences."""

    name: str = "ppo"  # implementation key in drlcli.registry
    # Defaults for envs without a tuned set, chosen by measurement (issue #21,
    # benchmarks/defaults_study.py: 7 classic-control and Box2D envs, 3 seeds, 200k steps):
    # Stable-Baselines3's rollout length, minibatch and constant learning rate scored 0.74 of
    # "solved" on average against 0.61 for 128 steps, minibatch 256 and an annealed rate. The
    # variants (ppo_kl, ppo_gru, ppo_lstm) keep 128 / 256 / annealed (their algo configs).
    num_steps: int = 2048
    anneal_lr: bool = False
    minibatch_size: int = 64  # samples per step; divides the rollout (recurrent: k x num_steps)
    update_epochs: int = 10  # passes over the rollout per update
    loss: str = "clip"  # clip | kl_penalty
    clip_coef: float = 0.2  # policy ratio clip (epsilon in the paper)
    clip_vloss: bool = False  # clip the value update around the old value prediction
    vf_clip_coef: float = 0.2  # value clip range when clip_vloss is true
    target_kl: float | None = None  # stop the epoch loop once approx KL exceeds 1.5x this
    kl_target: float = 0.01  # kl_penalty: the KL d_targ the adaptive beta aims at
    kl_beta_init: float = 1.0  # kl_penalty: initial beta
    recurrent: bool = False  # GRU/LSTM core; minibatches are whole env sequences
    rnn_type: str = "gru"  # gru | lstm
    rnn_hidden: int = 64  # recurrent state size


@dataclass
class A2CConfig(OnPolicyConfig):
    """A2C: the synchronous variant of A3C (Mnih et al. 2016, arXiv:1602.01783) over vector
    envs; one gradient step per n-step rollout. Defaults follow Stable-Baselines3."""

    name: str = "a2c"
    num_steps: int = 5
    learning_rate: float = 7e-4
    anneal_lr: bool = False
    gae_lambda: float = 1.0  # 1.0: plain n-step returns; < 1: GAE
    norm_adv: bool = False
    optimizer: str = "rmsprop"  # rmsprop | adam
    rms_alpha: float = 0.99  # RMSprop smoothing constant
    rms_eps: float = 1e-5


@dataclass
class A3CConfig(OnPolicyConfig):
    """A3C (Mnih et al. 2016, arXiv:1602.01783, algorithm S3): ``num_workers`` processes, each
    with its own envs and local network, compute n-step gradients and apply them without locks
    to one shared model with a shared RMSprop state."""

    name: str = "a3c"
    num_workers: int = 2  # learner processes (the paper: one per CPU thread)
    envs_per_worker: int = 1  # envs each worker steps (the paper: 1)
    num_steps: int = 5  # t_max: steps per env between gradient pushes
    learning_rate: float = 7e-4
    anneal_lr: bool = False
    gae_lambda: float = 1.0  # n-step returns, as in the paper
    norm_adv: bool = False
    ent_coef: float = 0.01
    max_grad_norm: float = 40.0
    rms_alpha: float = 0.99
    rms_eps: float = 1e-5
    report_every: int = 2048  # env steps (all workers) between progress reports to the runner


@dataclass
class ACConfig(OnPolicyConfig):
    """One-step actor-critic (Sutton & Barto 2018, sec. 13.5): after every env step the critic
    regresses on r + gamma V(s') and the actor ascends delta * grad log pi(a|s) with the TD error
    delta as the advantage; separate actor and critic optimizers."""

    name: str = "ac"
    num_steps: int = 1  # TD(0): one step per update (per env)
    gae_lambda: float = 0.0  # the advantage is the one-step TD error
    # Rates for envs without a tuned set, chosen by measurement (issue #21,
    # benchmarks/defaults_study.py ac: 7 classic-control and Box2D envs, 3 seeds, 200k steps):
    # Spinning Up's actor / value-function rates scored 0.63 of "solved" on average, ahead on 6
    # of the 7 envs; the earlier 1e-3 / 5e-3 0.30, the same with an entropy bonus of 0.01 0.38.
    learning_rate: float = 3e-4  # actor
    critic_learning_rate: float = 1e-3
    anneal_lr: bool = False
    norm_adv: bool = False
    max_grad_norm: float = 1.0


@dataclass
class ReinforceConfig(OnPolicyConfig):
    """REINFORCE (Williams 1992): Monte-Carlo policy gradient over whole episodes with
    reward-to-go returns, an optional learned value baseline and return normalization."""

    name: str = "reinforce"
    # Defaults for envs without a tuned set, kept by measurement (issue #21,
    # benchmarks/defaults_study.py reinforce: 7 classic-control and Box2D envs, 3 seeds, 200k
    # steps): 0.36 of "solved" on average; Spinning Up's slower rates 0.21; batches of 200 steps
    # 0.41, but ahead only on the two LunarLanders and behind on three envs.
    # A batch is complete once finished episodes hold >= num_steps x num_envs steps. Only
    # episodes begun under the current policy count; the rest of an episode in progress at an
    # update is played out and not learned from.
    num_steps: int = 500
    learning_rate: float = 1e-2  # policy
    critic_learning_rate: float = 1e-2  # baseline
    baseline: bool = True  # subtract a learned V(s)
    critic_epochs: int = 5  # baseline regression passes per batch
    norm_adv: bool = True  # standardize the (baselined) returns per batch
    anneal_lr: bool = False
    max_grad_norm: float = 1.0


@dataclass
class TRPOConfig(OnPolicyConfig):
    """TRPO (Schulman et al. 2015, arXiv:1502.05477) with GAE: natural-gradient step found by
    conjugate gradient on Fisher-vector products, scaled to the KL radius, with a backtracking
    line search. ``line_search=false`` is the natural policy gradient (Kakade 2001) step."""

    name: str = "trpo"
    # Defaults for envs without a tuned set, kept by measurement (issue #21,
    # benchmarks/defaults_study.py trpo: 7 classic-control and Box2D envs, 3 seeds, 200k steps):
    # 0.85 of "solved" on average against 0.67 for sb3-contrib's 2048 steps and 15 CG iterations.
    num_steps: int = 1024
    max_kl: float = 0.01  # KL radius delta
    cg_iters: int = 10
    cg_damping: float = 0.1  # F + damping * I
    line_search: bool = True  # false: NPG, take the KL-scaled step as it is
    backtrack_coef: float = 0.8  # step shrink per failed line-search trial
    backtrack_iters: int = 10
    learning_rate: float = 1e-3  # critic (Adam)
    critic_epochs: int = 10
    critic_minibatch_size: int = 128
    anneal_lr: bool = False


@dataclass
class OffPolicyConfig:
    """Settings every replay-based algorithm shares."""

    buffer_size: int = 1_000_000  # transitions kept (summed over envs)
    learning_starts: int = 100  # env steps of uniformly random actions before learning
    batch_size: int = 256
    # Replay ratio gradient_steps / train_freq per env step, the same for any env.num_envs
    # (issue #21): with N envs a vector step is N env steps and owes N x that many updates.
    train_freq: int = 1  # env steps (all envs together) between learning phases
    gradient_steps: int = 1  # gradient steps per train_freq env steps
    gamma: float = 0.99
    learning_rate: float = 3e-4
    # Linear decay of every learning rate (actor, critics, SAC's temperature) to 0 over the
    # budget, as the RL Zoo's lin_<lr> schedules (Stable-Baselines3's progress_remaining x lr).
    anneal_lr: bool = False
    tau: float = 0.005  # polyak coefficient for target networks (1.0 = hard copy)
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"
    save_replay: bool = True  # put the replay buffer in checkpoints (exact resume; size logged)
    # Generalized state-dependent exploration (Raffin et al. 2022), sac only (td3/ddpg/dqn have
    # no learned std): noise = actor features @ an exploration matrix per env.
    use_sde: bool = False
    sde_sample_freq: int = -1  # -1: new matrices at each collection phase; n: also every n steps
    full_std: bool = True  # gSDE: one std per (feature, action) pair, else one per feature
    use_expln: bool = False  # gSDE: expln instead of exp keeps the std from growing too fast


@dataclass
class DQNConfig(OffPolicyConfig):
    """DQN (Mnih et al. 2015) with Double (van Hasselt 2016), Dueling (Wang 2016), prioritized
    replay (Schaul 2016) and n-step returns as switches."""

    name: str = "dqn"
    # Defaults for envs without a tuned set, chosen by measurement (issue #21,
    # benchmarks/defaults_study.py: CartPole, Acrobot, MountainCar, LunarLander, 3 seeds, 100k
    # steps): the RL Zoo's classic-control values for the learning rate, batch, target period
    # and exploration (same compute per step) scored 0.55 of "solved" on average against 0.19
    # for Stable-Baselines3's (lr 1e-4, batch 32, target every 1000 steps, final epsilon 0.05).
    learning_rate: float = 6.3e-4
    buffer_size: int = 100_000
    learning_starts: int = 1000
    batch_size: int = 128
    train_freq: int = 4
    target_update_interval: int = 250  # env steps between target updates
    tau: float = 1.0  # 1.0 = hard copy every target_update_interval steps
    exploration_fraction: float = 0.12  # share of the budget over which epsilon decays
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.1
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

    # Defaults: Stable-Baselines3's, kept by measurement (issue #21, benchmarks/defaults_study.py:
    # Pendulum, MountainCarContinuous, LunarLanderContinuous, 3 seeds, 50k steps; the RL Zoo's
    # lr 7.3e-4 / tau 0.01 / 10k random steps scored 0.59 of "solved" against 0.65).
    name: str = "sac"
    ent_coef: str = "auto"  # "auto" (tuned to target entropy -|A|) or a fixed alpha, e.g. "0.2"
    ent_coef_init: float = 1.0  # initial alpha when tuned
    target_update_interval: int = 1  # gradient steps between polyak updates
    log_std_init: float = -3.0  # gSDE: initial log of the per-feature noise std (SB3's default)


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
    # An evaluation episode still running after this many steps is cut (with a warning): an env
    # without a time limit may never end one. 27000 = the ALE's 108k frames at frame skip 4.
    max_episode_steps: int = 27_000


@dataclass
class CheckpointConfig:
    every: int = 50_000  # env steps between checkpoints (0 = only at the end)
    keep_last: int = 3  # checkpoints kept on disk (the newest ones)
    # After SIGINT/SIGTERM the current iteration may finish (resume stays exact) for this long;
    # then loops that have not ended (evaluation, whole-episode collection) are cut.
    stop_grace_s: float = 10.0


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


def algo_schemas() -> dict[str, type]:
    """Algorithm config schemas by ``algo.name``, from the registry's specs (issue #18). A
    variant config (e.g. a tuned PPO) extends its base YAML rather than adding a schema."""
    from drlcli.registry import specs

    return {name: spec.config for name, spec in specs().items()}


def register_configs() -> None:
    """Put the schemas where the YAML defaults lists find them, and the tuned sets that pairs
    share (drlcli/tuned.py). Idempotent."""
    from drlcli.cli import config_dir
    from drlcli.tuned import register_shared_tuned_sets

    register_shared_tuned_sets(config_dir())
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="schema", name="env", node=EnvConfig)
    cs.store(group="schema", name="hardware", node=HardwareConfig)
    for name, schema in algo_schemas().items():
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
    schemas = algo_schemas()
    schema = schemas.get(str(name))
    if schema is None:
        raise DrlError(
            f"The saved config names algorithm '{name}', which this drlcli does not know."
            f"{did_you_mean(str(name), schemas)}"
        )
    rest = {k: v for k, v in data.items() if k != "algo"}
    base = OmegaConf.structured(TrainConfig(algo=schema()))
    merged = OmegaConf.merge(
        base, rest, {"algo": OmegaConf.merge(OmegaConf.structured(schema), algo)}
    )
    return to_train_config(merged)
