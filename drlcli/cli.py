"""`drl` entry point: picks the subcommand and hands the rest to Hydra (for `train`)."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from drlcli.errors import DrlError, did_you_mean

GROUPS = ("algo", "env", "hardware")
# Hydra flags that consume the next argument.
_VALUE_FLAGS = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
}

USAGE = """\
usage: drl <command> [args]      drl --version

Config-driven deep reinforcement learning.

commands:
  train [overrides...]   train an agent; arguments are Hydra overrides and flags
                         (drl train algo=ppo env=cartpole seed=3, -m for sweeps)
  tune SEARCH [...]      hyperparameter search with Optuna (drl tune ppo_cartpole --trials 16)
  list                   the available algorithms, environments, hardware profiles, searches
  eval RUN_DIR           evaluate a run's checkpoint (--episodes N, --video, --stochastic)
  compare PATH...        curves (PNG) and final-return tables across runs, grouped over seeds
  completion bash|zsh    shell completion script (--install writes it for your user)

Run `drl train --help` for the overrides, `drl list` for the choices.
"""

TRAIN_HELP = """\
usage: drl train [key=value ...] [-m] [--cfg job] [--hydra-help]

Compose conf/config.yaml with one option from each config group and train.

examples:
  drl train                                   # PPO on CartPole-v1 (the defaults)
  drl train algo=ppo env=pendulum total_timesteps=200000
  drl train env=cartpole algo.learning_rate=3e-4 env.num_envs=16 seed=7
  drl train -m seed=1,2,3                     # multirun: one job per seed
  drl train --cfg job                         # print the composed config and exit
  drl train eval.early_stop=true              # stop once env.solved_return is reached

config groups (pick one with group=option):
{groups}
resume: drl train resume=RUN_DIR [total_timesteps=N]   continue a run from its last checkpoint
        drl train hydra.run.dir=DIR resume=auto         resume if DIR has a checkpoint, else start

run settings: seed, total_timesteps, eval.every, eval.episodes, eval.deterministic,
  eval.early_stop, eval.target_return, checkpoint.every, checkpoint.keep_last,
  log.tensorboard, log.every, log.progress (auto|rich|plain|none)
hardware settings: hardware.device (cpu|cuda|cuda:N|auto), hardware.torch_threads (0 = auto:
  one for small MLPs, up to the free cores for large learners and CNNs), hardware.vectorization
  (sync|workers|async|envpool), hardware.num_workers, hardware.deterministic,
  hardware.compile (none|default|reduce-overhead|max-autotune: sac, td3, ddpg, ppo),
  hardware.cpu_linear (auto|onednn|aten: the matmul library for large CPU linear layers)

Runs land in outputs/runs/<date>/<time>_<algo>_<env>_s<seed>/ (multirun: outputs/multirun/...),
each with config.yaml, command.txt, TensorBoard events and checkpoints/.
Hyperparameter search: drl tune --help.  Shell completion: drl completion bash|zsh.
Hydra's own flags: drl train --hydra-help
"""


def config_dir() -> Path:
    """The shipped configs: drlcli/conf in a wheel, ../conf in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise DrlError(f"drlcli's configs are missing (looked in {here / 'conf'} and ../conf).")


def describe_options(group: str) -> list[tuple[str, str]]:
    """(option, description) for each YAML in a config group: the first sentence of the file's
    leading comment block."""
    out = []
    for path in sorted((config_dir() / group).glob("*.yaml")):
        block: list[str] = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            if "@package" not in line:
                block.append(line.lstrip("# ").strip())
        text = " ".join(block)
        # A sentence ends at ". " before a capital letter (not "et al. 2015").
        first = re.split(r"(?<=[a-z0-9)\]]\.)\s+(?=[A-Z])", text, maxsplit=1)[0]
        out.append((path.stem, first))
    return out


def option_spec(option: str) -> Any:
    """The registry spec of ``algo=<option>`` as that option can use it: a recurrent PPO
    option (``recurrent: true``) takes neither images nor action masks (issue #19)."""
    import dataclasses

    import yaml

    from drlcli import registry

    spec = registry.spec(algo_option_name(option))
    data = yaml.safe_load((config_dir() / "algo" / f"{option}.yaml").read_text()) or {}
    if data.get("recurrent"):
        spec = dataclasses.replace(spec, images=False, action_masks=False)
    return spec


def algo_option_name(option: str) -> str:
    """The ``algo.name`` (registry spec) an ``algo=<option>`` YAML resolves to: its own ``name:``
    or, through its ``defaults`` list, its base's (``/schema/algo/<name>`` or a base option)."""
    import yaml

    data = yaml.safe_load((config_dir() / "algo" / f"{option}.yaml").read_text()) or {}
    if "name" in data:
        return str(data["name"])
    for entry in data.get("defaults") or []:
        if not isinstance(entry, str) or entry == "_self_":
            continue
        if entry.startswith("/schema/algo/"):
            return entry.removeprefix("/schema/algo/").split("@")[0]
        return algo_option_name(entry.split("@")[0])
    raise DrlError(f"conf/algo/{option}.yaml names no algorithm (no name: and no base).")


def group_options(group: str) -> list[str]:
    """The option names of a config group; for ``tuned`` also the pairs sharing a family's
    set (drlcli/tuned.py), which have no file of their own."""
    names = [name for name, _ in describe_options(group)]
    if group == "tuned":
        from drlcli.tuned import shared_tuned_sets

        names = sorted({*names, *shared_tuned_sets(config_dir())})
    return names


def cmd_list(argv: list[str]) -> int:
    from rich.markup import escape
    from rich.table import Table

    from drlcli import registry
    from drlcli.logger import make_console

    console = make_console()
    for group in GROUPS:
        table = Table(title=f"{group}  ({group}=<name>)", title_justify="left", show_header=False)
        table.add_column(style="bold cyan")
        table.add_column()
        if group == "algo":
            table.add_column(style="dim")
        for name, desc in describe_options(group):
            row = [name, escape(desc)]  # "drlcli[atari]" is not rich markup
            if group == "algo":
                obs, act = registry.describe_spaces(option_spec(name))
                row.append(f"obs: {obs}; actions: {act}")
            table.add_row(*row)
        console.print(table)
    tuned = group_options("tuned")
    if tuned:
        console.print("tuned settings applied automatically: " + ", ".join(tuned))
    searches = describe_options("search")
    if searches:
        console.print("search spaces (drl tune <name>):")
        for name, desc in searches:
            console.print(f"  [bold cyan]{name}[/bold cyan]  {escape(desc)}")
    return 0


# --- override pre-validation ------------------------------------------------------------------
_OWN_CONFIG_FLAGS = ("-cd", "--config-dir", "-cn", "--config-name", "-cp", "--config-path")


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return bool(OverridesParser.create().parse_overrides([override])[0].is_sweep_override())


def split_train_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, flags) from the arguments after `train`."""
    overrides, flags = [], []
    it = iter(argv)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in _VALUE_FLAGS:
                nxt = next(it, None)
                if nxt is not None:
                    flags.append(nxt)
        else:
            overrides.append(arg)
    return overrides, flags


def _compose(overrides: list[str]) -> Any:
    """The config composed from drlcli's configs with ``overrides`` (inside a running Hydra app,
    such as a `drl train` job, through that app's already initialized Hydra)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from drlcli.config import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():
        return compose("config", overrides=overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


def _exception_text(exc: BaseException) -> str:
    """The informative lines of a Hydra/OmegaConf exception chain, without templates."""
    parts: list[str] = []
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for line in str(e).splitlines():
            line = " ".join(line.split())
            if (
                line
                and "$" not in line
                and not line.startswith(("full_key", "object_type", "provider", "Config search"))
                and line not in parts
            ):
                parts.append(line)
        e = e.__cause__ or e.__context__
    return "; ".join(parts[:2]) + "."


# Hydra launcher plugins drlcli supports: launcher name -> (plugin module, drlcli extra).
LAUNCHERS: dict[str, tuple[str, str]] = {
    "basic": ("hydra", ""),
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "submitit"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "submitit"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
}


def check_launcher(name: str) -> None:
    """A clear error for an unknown launcher or one whose extra is not installed."""
    import importlib.util

    if name not in LAUNCHERS:
        raise DrlError(
            f"Unknown hydra/launcher '{name}'.{did_you_mean(name, LAUNCHERS)} Valid choices: "
            f"{', '.join(LAUNCHERS)} (each but basic comes with a drlcli extra)."
        )
    module, extra = LAUNCHERS[name]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise DrlError(
            f"hydra/launcher={name} needs the {extra} launcher plugin, which is not installed: "
            f"pip install 'drlcli[{extra}]' (from a checkout: make install EXTRAS=...,{extra})."
        )


def _sweep_values(o: Any) -> list[str]:
    """The values a sweep override takes, as strings; a ``glob()`` over a config group's options
    (``algo=glob(ppo*)``) expands against them, as Hydra's sweeper does. Raises DrlError for a
    glob over anything else."""
    from hydra.core.override_parser.types import ValueType

    if o.value_type == ValueType.INTERVAL_SWEEP:
        raise DrlError(
            f"{o.input_line}: interval() is for search sweepers, which sample from it; drl tune "
            "runs searches (drl tune --help). For a grid, list the values (key=a,b,c) or use "
            "range()."
        )
    if o.value_type == ValueType.GLOB_CHOICE_SWEEP:
        key = o.key_or_group
        if key not in (*GROUPS, "tuned"):
            raise DrlError(
                f"{o.input_line}: glob() sweeps config group options ({', '.join(GROUPS)}); "
                f"for {key} list the values (key=a,b,c) or use range()."
            )
        values = o.value().filter(group_options(key))
        if not values:
            raise DrlError(
                f"{o.input_line} matches no {key} option. Valid choices for {key}: "
                f"{', '.join(group_options(key))}."
            )
        return [str(v) for v in values]
    return list(o.sweep_string_iterator())


def check_overrides(overrides: list[str], multirun: bool) -> Any:
    """Catch unknown groups/options/keys and bad values before Hydra creates any run dir;
    returns the composed config of the first job (or None when it cannot be composed alone)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    from omegaconf import DictConfig, OmegaConf

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        raise DrlError(f"Could not parse the overrides: {' '.join(str(exc).split())}") from exc

    first_choice: list[str] = []
    plain: list[Any] = []
    for o in parsed:
        key = o.key_or_group
        if key == "hydra/launcher":
            check_launcher(o.get_value_element_as_str())
        if key.startswith("hydra") or o.is_delete() or o.is_add() or o.is_force_add():
            continue
        if key == "search":
            raise DrlError(
                f"search={o.get_value_element_as_str()}: hyperparameter search is its own command "
                "now, with pruning: drl tune <search space> [overrides] (drl tune --help; the "
                "spaces are in conf/search/)."
            )
        values = _sweep_values(o) if o.is_sweep_override() else None
        if key in (*GROUPS, "tuned"):
            options = group_options(key)
            for v in values if values is not None else [o.get_value_element_as_str()]:
                if v not in options:
                    off = ""
                    if key == "tuned":  # tuned=null / none: the way to switch sets off
                        off = " To train without a tuned set, write ~tuned (drl train ~tuned ...)."
                    raise DrlError(
                        f"Unknown {key} '{v}'.{did_you_mean(v, options)}{off} Valid choices for "
                        f"{key}: {', '.join(options)}. `drl list` describes each."
                    )
            first_choice.append(f"{key}={values[0] if values else o.get_value_element_as_str()}")
        else:
            plain.append(o)

    cfg = _compose(first_choice)
    from drlcli.config import CHOICES

    for o in plain:
        key = o.key_or_group
        # Settings with a fixed set of values: every value of a sweep too, before the first
        # job's directory exists.
        if key in CHOICES:
            choices = CHOICES[key]
            sweep = o.is_sweep_override()
            for v in _sweep_values(o) if sweep else [o.get_value_element_as_str()]:
                if v not in choices:
                    raise DrlError(
                        f"Unknown {key} '{v}'.{did_you_mean(v, choices)} Valid choices: "
                        f"{', '.join(choices)}."
                    )
        node: Any = cfg
        walked: list[str] = []
        for part in key.split("."):
            if not isinstance(node, DictConfig):
                break
            if OmegaConf.get_type(node) is dict:  # free-form dicts (env.kwargs) take any key
                break
            if part not in node.keys():  # noqa: SIM118 (`in` is False for a ??? value)
                where = ".".join(walked) or "the top level"
                valid = [str(k) for k in node]
                raise DrlError(
                    f"Unknown config key '{key}': '{part}' is not a setting of {where}."
                    f"{did_you_mean(part, valid)} Valid keys there: {', '.join(valid)}. "
                    "(Use `drl train --cfg job` to print the whole composed config.)"
                )
            walked.append(part)
            if len(walked) < len(key.split(".")):  # leaves may be mandatory (???): don't read
                node = node[part]

    if multirun or any(o.is_sweep_override() for o in parsed):
        return None
    try:
        return _compose(overrides)
    except Exception as exc:  # Hydra/OmegaConf validation: type errors, missing values...
        raise DrlError(f"Invalid override: {_exception_text(exc)}") from exc


def preflight(cfg: Any) -> None:
    """Semantic checks on a composed single-run config: sizes, env id, algo/env fit."""
    from omegaconf.errors import MissingMandatoryValue

    from drlcli.config import to_train_config
    from drlcli.envs import (
        action_mask_source,
        check_env_id,
        check_workers_can_carry,
        make_single_env,
    )
    from drlcli.hardware import check_compiler, check_threads, resolve_device, resolve_workers
    from drlcli.networks import check_sde_action_space, is_image
    from drlcli.registry import check_compatible
    from drlcli.registry import validate as validate_algo
    from drlcli.runner import validate

    try:
        tc = to_train_config(cfg)
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", "") or "a setting"
        raise DrlError(
            f"{key} has no value: pass {key}=<value> on the command line (for example "
            "`drl train env=gym env.id=MountainCar-v0`)."
        ) from exc
    # The run's and the algorithm's settings problems in one message, not one per attempt.
    # (The algorithm's checks divide by env.num_envs: skipped when that is already wrong.)
    problems = []
    try:
        validate(tc)
    except DrlError as exc:
        problems.append(str(exc))
    if tc.env.num_envs >= 1:
        try:
            validate_algo(tc.algo, tc.env.num_envs, tc.env)
        except DrlError as exc:
            problems.append(str(exc))
    if problems:
        raise DrlError(" ".join(problems))
    if tc.resume not in (None, "auto"):
        # Before Hydra rewrites RUN_DIR/.hydra: a refused resume must leave the run untouched.
        from drlcli import checkpoint as ckpt
        from drlcli.runner import check_resume_config

        run_dir = Path(tc.resume).expanduser().resolve()
        check_resume_config(tc, ckpt.latest_loadable(run_dir / "checkpoints"), run_dir)
    check_env_id(tc.env.id, tc.env.imports)
    device = resolve_device(tc.hardware.device)
    resolve_workers(tc.hardware, tc.env.num_envs)
    check_threads(tc.hardware)
    check_compiler(tc.hardware, device)
    # Build one env: missing optional extras, bad kwargs or wrappers, incompatible spaces.
    probe = make_single_env(tc.env)
    try:
        masks = action_mask_source(probe) is not None
        check_compatible(tc.algo.name, probe.observation_space, probe.action_space, masks, tc.algo)
        check_sde_action_space(tc.algo, probe.action_space)
        if tc.hardware.vectorization == "workers":
            check_workers_can_carry(tc.env.id, probe.observation_space, masks)
        if tc.hardware.vectorization == "envpool":
            from drlcli.envpool_backend import check_envpool

            check_envpool(tc.env, masks)
        if tc.env.normalize_obs and is_image(probe.observation_space):
            raise DrlError(
                f"env.normalize_obs=true on image observations {probe.observation_space.shape}: "
                "the Nature-CNN scales pixels to [0, 1] itself and image replay stores raw "
                "uint8 frames; set env.normalize_obs=false."
            )
    finally:
        probe.close()


def sweep_jobs(overrides: list[str]) -> list[list[str]] | None:
    """Each job's overrides of a Hydra grid sweep (the basic sweeper's cartesian product of every
    ``key=a,b`` / ``choice()`` / ``range()`` value and of ``glob()`` over a group's options), in
    order; None under another sweeper, whose jobs cannot be known here. Raises DrlError for a
    glob that matches nothing and for interval(), which only a search sweeper samples."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    for o in parsed:
        if o.key_or_group == "hydra/sweeper" and o.get_value_element_as_str() != "basic":
            return None
        if o.key_or_group.startswith("hydra.sweeper"):
            return None
        if o.value_type == ValueType.INTERVAL_SWEEP:
            _sweep_values(o)  # raises: only a search sweeper samples an interval
    # A glob needs Hydra's config loader to list a group's options: spelled out as a choice.
    spelled = [
        f"{o.get_key_element()}={','.join(_sweep_values(o))}"
        if o.value_type == ValueType.GLOB_CHOICE_SWEEP
        else raw
        for raw, o in zip(overrides, parsed, strict=True)
    ]
    # Hydra's own expansion: the product in its order, a repeated key merged as it merges it.
    (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(spelled), None)
    return [list(job) for job in jobs]


def preflight_sweep(overrides: list[str]) -> None:
    """:func:`preflight` for every job of a multirun before its sweep directory exists: a
    combination no job may run (``algo=ppo,a3c hardware.compile=default``) used to fail as the
    second job, after the first had trained. Hydra composes once per distinct choice of config
    groups and ``+``/``++``/``~`` overrides; each job's plain ``key=value`` overrides are then
    applied the way Hydra applies them (``OmegaConf.update``, merge). Jobs that differ only in
    ``seed`` are checked once. Raises DrlError naming the first bad job. The caller skips this
    for configs of the user's own (``-cd``/``-cn``), which ``_compose`` does not read."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    jobs = sweep_jobs(overrides)
    if not jobs:
        return
    parser = OverridesParser.create()
    composed: dict[tuple[str, ...], Any] = {}
    checked: set[str] = set()
    # Named in an error: the job's swept values (a repeated key's last occurrence counts).
    is_swept = {
        o.get_key_element(): o.is_sweep_override() for o in parser.parse_overrides(overrides)
    }
    for number, job in enumerate(jobs):
        parsed = parser.parse_overrides(job)
        swept = [j for j, o in zip(job, parsed, strict=True) if is_swept[o.get_key_element()]]
        which = f"Sweep job {number} of {len(jobs)} ({' '.join(swept) or ' '.join(job)})"
        structural, plain = [], []
        for raw, o in zip(job, parsed, strict=True):
            key = o.key_or_group
            if (
                key in (*GROUPS, "tuned")
                or key.startswith("hydra")
                or o.is_delete()
                or o.is_add()
                or o.is_force_add()
            ):
                structural.append(raw)
            else:
                plain.append(o)
        try:
            base = composed.get(tuple(structural))
            if base is None:
                base = composed[tuple(structural)] = _compose(structural)
            cfg = base.copy()
            for o in plain:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
            # Seeds aside, a job checked before needs no second check (resolved: a value may
            # interpolate ${seed}).
            resolved = OmegaConf.to_container(cfg, resolve=True)
            assert isinstance(resolved, dict)
            fingerprint = repr({k: v for k, v in resolved.items() if k != "seed"})
            if fingerprint in checked:
                continue
            checked.add(fingerprint)
            preflight(cfg)
        except DrlError as exc:
            raise DrlError(f"{which} cannot run, so no job was started: {exc}") from exc
        except Exception as exc:  # type errors, bad interpolations: as a single run reports them
            hint = ""
            if "not in struct" in str(exc):
                hint = " To add a key the config does not have, write +key=value."
            raise DrlError(
                f"{which} cannot run, so no job was started: invalid override: "
                f"{_exception_text(exc)}{hint}"
            ) from exc


# --- train ------------------------------------------------------------------------------------
def launcher_parallel_jobs(launcher: Any, num_jobs: int | None = None) -> int | None:
    """How many sweep jobs a Hydra launcher runs at once on this machine, so that each job's
    automatic torch thread count takes only its share of the cores (torch threads spin: four
    jobs of two threads on two cores ran 50x slower than one job). None: jobs run one by one
    or on machines of their own (SLURM gives each job its cores through CPU affinity)."""
    from drlcli.hardware import available_cores

    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    cores = available_cores()
    if "JoblibLauncher" in target:
        n = int(launcher.get("n_jobs") or -1)
        return cores if n == -1 else (max(cores + 1 + n, 1) if n < 0 else n)
    if "RayLauncher" in target:
        remote = (launcher.get("ray") or {}).get("remote") or {}
        return max(cores // max(int(remote.get("num_cpus") or 1), 1), 1)
    if "submitit_launcher.LocalLauncher" in target:
        cpus = launcher.get("cpus_per_task")
        return max(cores // int(cpus), 1) if cpus else max(num_jobs or cores, 1)
    return None


def _task(cfg: Any) -> float:
    """The Hydra task: typed config in, objective (final mean eval return) out."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from drlcli.config import to_train_config
    from drlcli.runner import RunHooks, train
    from drlcli.sweep import write_failure

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    command = "drl train " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if multirun:
        command = "drl train " + " ".join(shlex.quote(o) for o in hc.overrides.task)
        jobs = launcher_parallel_jobs(hc.launcher)
        if jobs and "DRL_PARALLEL_JOBS" not in os.environ:
            os.environ["DRL_PARALLEL_JOBS"] = str(jobs)
    try:
        tc = to_train_config(cfg)
        choices = hc.runtime.choices
        hooks = RunHooks(
            algo_label=choices.get("algo"),
            env_label=choices.get("env"),
            notes=tuned_notes(choices.get("algo"), choices.get("env"), choices.get("tuned"), cfg),
        )
        result = train(tc, run_dir, command, hooks)
    except Exception as exc:
        msg = str(exc) if isinstance(exc, DrlError) else f"{type(exc).__name__}: {exc}"
        write_failure(run_dir, msg)
        if not multirun:
            if isinstance(exc, DrlError):
                print(f"drl: error: {msg}", file=sys.stderr)
                raise SystemExit(2) from None
            raise
        print(f"drl: job {hc.job.num} failed: {msg}", file=sys.stderr)
        if cfg.get("on_error", "continue") == "stop":
            raise SystemExit(2) from None
        return float("nan")  # Optuna records a NaN objective as a failed trial
    if result.status == "interrupted":
        # Shell convention 128 + signal number, so schedulers see the job did not finish.
        raise SystemExit(130 if result.interrupted_by == "SIGINT" else 143)
    return result.eval_mean_return


def sweep_name_overrides(overrides: list[str]) -> list[str]:
    """For `drl train -m`: keep the keys every job shares out of job directory names, so a
    name (and a TensorBoard run name) is ``<job>_<algo>_<env>_<swept values in full>`` rather
    than the swept values buried among constants. Returns the Hydra override that extends
    conf/config.yaml's ``override_dirname.exclude_keys`` with the non-swept keys (none when the
    command line sets exclude_keys itself)."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if any(o.key_or_group.startswith("hydra.job.config.override_dirname") for o in parsed):
        return []
    base = yaml.safe_load((config_dir() / "config.yaml").read_text())
    keys = list(base["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"])
    for o in parsed:
        key = o.key_or_group
        if not key.startswith("hydra") and not o.is_sweep_override() and key not in keys:
            keys.append(key)
    if not all(re.fullmatch(r"[\w./@-]+", k) for k in keys):
        return []  # a key Hydra's list syntax would need quoting for: keep the full names
    return [f"hydra.job.config.override_dirname.exclude_keys=[{','.join(keys)}]"]


def tuned_notes(algo: str | None, env: str | None, tuned: str | None, cfg: Any) -> list[str]:
    """The start line's note on the tuned set: which file was applied and each value it changed
    from the algo/env defaults (and where the command line then set another value). ``tuned``
    is Hydra's choice for the group: None when no tuned set applies (the pair has none, or the
    command line said ``~tuned``; the note then said a set was applied), so no note."""
    import yaml
    from omegaconf import OmegaConf

    from drlcli.logger import flatten
    from drlcli.tuned import shared_tuned_sets

    name = tuned
    if not name or not algo or not env:
        return []
    # A pair may use a family's file (ppo x pong -> ppo_atari.yaml): name the file itself.
    if not (config_dir() / "tuned" / f"{name}.yaml").is_file():
        name = shared_tuned_sets(config_dir()).get(name, "")
    path = config_dir() / "tuned" / f"{name}.yaml"
    if not name or not path.is_file():
        return []
    try:
        # What the set changes, its own defaults list included (ddpg_pendulum is td3_pendulum's
        # values): the pair composed with and without it.
        pair = [f"algo={algo}", f"env={env}"]
        base = flatten(OmegaConf.to_container(_compose([*pair, "~tuned"])))
        with_set = flatten(OmegaConf.to_container(_compose([*pair, f"tuned={name}"])))
        values = {k: v for k, v in with_set.items() if k not in base or base[k] != v}
    except Exception:  # a tuned set that cannot be removed alone: report its values only
        base = {}
        values = flatten(yaml.safe_load(path.read_text()) or {})
    final = flatten(OmegaConf.to_container(cfg))
    changes = []
    for key, value in values.items():
        if key in base and base[key] == value:
            continue
        change = f"{key} {base[key]} -> {value}" if key in base else f"{key}={value}"
        if key in final and final[key] != value:
            change += f" (command line: {final[key]})"
        changes.append(change)
    if not changes:
        return [f"drl: tuned set conf/tuned/{name}.yaml applied (it changes no default)"]
    return [f"drl: tuned set conf/tuned/{name}.yaml applied: " + ", ".join(changes)]


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_run_dir(overrides: list[str]) -> str | None:
    """The RUN_DIR of a ``resume=RUN_DIR`` override (the last one, as Hydra applies them), or
    None when there is none or it is ``auto`` / ``null``."""
    values = [o.split("=", 1)[1].strip("'\"") for o in overrides if _override_key(o) == "resume"]
    if not values or values[-1] in ("auto", "null", ""):
        return None
    return values[-1]


def resume_overrides(overrides: list[str]) -> list[str]:
    """For `resume=RUN_DIR`: the run's original overrides, then the new ones, writing into the
    same directory. Fails (before anything is written) when RUN_DIR is not a run directory;
    preflight then loads its checkpoint once, to check it loads and fits the config."""
    import yaml

    value = resume_run_dir(overrides)
    if value is None:
        return overrides
    run_dir = Path(value).expanduser().resolve()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not run_dir.is_dir() or not saved.is_file():
        raise DrlError(
            f"resume={value}: '{run_dir}' is not a drl run directory (no .hydra/overrides.yaml). "
            "Pass the directory of a run, e.g. outputs/runs/<date>/<time>_ppo_cartpole_s1."
        )
    merged: dict[str, str] = {}
    for o in [*(yaml.safe_load(saved.read_text()) or []), *overrides]:
        key = _override_key(o)
        if key != "resume" and not key.startswith("hydra"):
            merged[key] = o
    quoted = str(run_dir).replace("'", "\\'")
    return [*merged.values(), f"hydra.run.dir='{quoted}'", f"resume='{quoted}'"]


def refuse_swept_resume(overrides: list[str]) -> None:
    """Raises DrlError for ``drl train -m resume=RUN_DIR ...``: resuming a run directory writes
    into that directory, while every job of a sweep writes into its own, so each job would start
    a fresh run that then fails (found by hand: the sweep directory was created and every job
    failed). ``resume=auto`` (a requeued cluster job resumes what its own directory holds) and
    ``resume=null`` stay valid in sweeps."""
    value = resume_run_dir(overrides)
    if value is not None:
        raise DrlError(
            f"resume={value}: resume=RUN_DIR continues one run in its own directory and cannot "
            "be part of a sweep (-m), whose jobs each write into a new directory. Resume each "
            "run on its own, e.g. `for d in outputs/multirun/<date>/<time>/*/; do drl train "
            "resume=$d total_timesteps=N; done`, or use resume=auto in a sweep whose jobs are "
            "requeued into their own directories (SLURM)."
        )


def cmd_train(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        groups = "\n".join(f"  {g:<9} {', '.join(group_options(g))}" for g in GROUPS)
        print(TRAIN_HELP.format(groups=groups))
        return 0
    overrides, flags = split_train_args(argv)
    if any(f in ("-sc", "--shell-completion") for f in flags) or any(
        o.split("=", 1)[0] in ("install", "uninstall") for o in overrides
    ):
        return hydra_shell_completion(overrides)
    multirun = "-m" in flags or "--multirun" in flags
    if multirun:
        refuse_swept_resume(overrides)
    if any(_override_key(o) == "resume" for o in overrides) and not multirun:
        overrides = resume_overrides(overrides)
        argv = [*flags, *overrides]
    informational = any(f in flags for f in ("--cfg", "-c", "--info", "-i", "--hydra-help"))
    # -cd/-cn/-cp put the user's own primary config in charge, which the checks below (composed
    # from drlcli's config.yaml) would not see: the job itself still validates what it runs.
    own_config = any(f in flags for f in _OWN_CONFIG_FLAGS)
    if informational and not own_config:
        # --cfg / --info print the composed config: the overrides still get their one-paragraph
        # errors (tuned=null gave Hydra's traceback), not the run's semantic checks.
        check_overrides(overrides, multirun)
    if not informational:
        composed = check_overrides(overrides, multirun)
        if own_config:
            composed = None  # checked by the job itself
        elif composed is not None:
            from omegaconf.errors import OmegaConfBaseException

            try:
                preflight(composed)
            except OmegaConfBaseException as exc:  # a bad interpolation, read only when typed
                raise DrlError(f"Invalid override: {_exception_text(exc)}") from exc
        elif multirun:
            preflight_sweep(overrides)
        else:
            raise DrlError(
                f"{' '.join(o for o in overrides if _is_sweep(o))}: several values for one "
                "setting. To run one job per value, add -m (drl train -m ...); for a list value "
                "write key=[a,b]; for a string with a comma, quote it: key='a,b'."
            )
    if multirun:
        argv = [*argv, *sweep_name_overrides(overrides)]

    import hydra

    from drlcli.config import register_configs

    register_configs()
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")(_task)
    from drlcli import sweep

    sweep.LAST_SUMMARY.clear()
    old_argv = sys.argv
    sys.argv = ["drl train", *argv]  # Hydra's help names the command after argv[0]
    try:
        app()
    finally:
        sys.argv = old_argv
    done = ("finished", "solved", "pruned")
    failed = [r for r in sweep.LAST_SUMMARY if r.get("status") not in done]
    if failed:
        print(
            f"drl: {len(failed)} of {len(sweep.LAST_SUMMARY)} jobs did not finish.", file=sys.stderr
        )
        return 1
    return 0


def hydra_shell_completion(overrides: list[str]) -> int:
    """`drl train -sc install=bash` (what Hydra's --hydra-help suggests) prints drl's own
    completion script, which completes every subcommand; uninstall=bash removes it."""
    from drlcli.completion import SHELLS, script

    for o in overrides:
        action, _, shell = o.partition("=")
        if action == "install" and shell in SHELLS:
            sys.stdout.write(script(shell))
            return 0
        if action == "uninstall" and shell in SHELLS:
            print("complete -r drl 2>/dev/null" if shell == "bash" else "compdef -d drl")
            return 0
    raise DrlError(
        "Shell completion: use `drl completion bash` or `drl completion zsh` (add --install to "
        "write it for your user), or `drl train -sc install=bash|zsh`. Valid shells: "
        + ", ".join(SHELLS)
        + "."
    )


def version_text() -> str:
    """`drl --version`: drlcli's installed version, with Python's, torch's and gymnasium's."""
    import platform
    from importlib import metadata

    def v(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"drl (drlcli) {v('drlcli')} — Python {platform.python_version()}, torch {v('torch')}, "
        f"gymnasium {v('gymnasium')}, hydra-core {v('hydra-core')}"
    )


def cmd_eval(argv: list[str]) -> int:
    import argparse

    from drlcli.evaluation import run_eval
    from drlcli.logger import make_console

    parser = argparse.ArgumentParser(
        prog="drl eval",
        description="Load a run's latest checkpoint and saved config, run evaluation episodes "
        "(deterministic by default, the same seeds as the run's own evaluations) and print the "
        "mean and std return. Writes eval_step<N>.json (and videos/) into the run directory.",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (outputs/runs/...)")
    parser.add_argument(
        "--episodes", type=int, default=None, help="default: the run's eval.episodes"
    )
    parser.add_argument("--stochastic", action="store_true", help="sample actions")
    parser.add_argument("--seed", type=int, default=None, help="default: the run's eval seed")
    parser.add_argument("--video", action="store_true", help="record one episode as a GIF")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a specific .pt file")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    args = parser.parse_args(argv)
    if args.episodes is not None and args.episodes < 1:  # before loading anything
        raise DrlError(f"--episodes must be at least 1, got {args.episodes}.")
    report = run_eval(
        args.run_dir,
        args.episodes,
        not args.stochastic,
        args.seed,
        args.video,
        args.checkpoint,
        args.device,
    )
    console = make_console()
    console.print(
        f"[bold]{report.checkpoint}[/bold] (step {report.step}): mean return "
        f"{report.mean_return:.2f} +- {report.std_return:.2f} over {report.episodes} "
        f"{'deterministic' if report.deterministic else 'stochastic'} episodes (seed {report.seed})"
    )
    if report.video:
        console.print(f"video: {report.video}")
    if report.video_error:
        # The evaluation above is printed and saved all the same.
        print(f"drl: error: no video: {report.video_error}", file=sys.stderr)
        return 2
    return 0


def cmd_compare(argv: list[str]) -> int:
    import argparse

    from rich.markdown import Markdown

    from drlcli.compare import (
        MIN_SEEDS,
        compare,
        markdown_table,
        skipped_note,
        small_group_warnings,
    )
    from drlcli.logger import make_console

    parser = argparse.ArgumentParser(
        prog="drl compare",
        description="Read the TensorBoard events of runs (run or multirun directories), group "
        "runs that differ only in the seed, and write compare.png (mean curve with a 95%% "
        "bootstrap band), compare.md and compare.csv (final return: mean, IQM, 95%% CI).",
    )
    parser.add_argument("paths", type=Path, nargs="+", help="run or multirun directories")
    parser.add_argument("--metric", default="eval/mean_return", help="scalar tag to compare")
    parser.add_argument("--out", type=Path, default=None, help="default: <first path>/compare")
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="draw a horizontal target line at this return (e.g. 475 for CartPole-v1)",
    )
    parser.add_argument(
        "--unfinished",
        action="store_true",
        help="also use failed, interrupted, pruned and still-running runs (their last point "
        "counts as final); by default only runs whose result.json says finished or solved",
    )
    args = parser.parse_args(argv)
    rows, files, skipped = compare(
        args.paths, args.metric, args.out, target=args.target, unfinished=args.unfinished
    )
    console = make_console()
    console.print(Markdown(markdown_table(rows, args.metric)))
    if skipped:
        print(f"drl: note: {skipped_note(skipped, args.unfinished)}", file=sys.stderr)
    for warning in small_group_warnings(rows, MIN_SEEDS):
        print(f"drl: warning: {warning}", file=sys.stderr)
    console.print(f"wrote {files['png']}, {files['md']}, {files['csv']}")
    return 0


def _stop_cleanly_outside_training() -> None:
    """SIGINT / SIGTERM before the training loop starts (imports, config, env construction) or
    after it ends: exit 130 / 143 with one line, not a traceback or a bare death by signal
    (issue #16: preempted jobs must exit like preempted jobs). Inside the loop the runner's own
    handler checkpoints first."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        print(
            f"drl: stopped by {name} outside the training loop; nothing new to save (the "
            "latest checkpoint, if any, is kept).",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "-V", "version"):
        print(version_text())
        return 0
    from drlcli.completion import cmd_complete, cmd_completion
    from drlcli.tune import cmd_tune

    command, rest = argv[0], argv[1:]
    commands = {
        "train": cmd_train,
        "tune": cmd_tune,
        "list": cmd_list,
        "eval": cmd_eval,
        "compare": cmd_compare,
        "completion": cmd_completion,
    }
    if command == "__complete":  # called by the completion scripts
        return cmd_complete(rest)
    if command not in commands:
        print(
            f"drl: error: unknown command '{command}'.{did_you_mean(command, commands)} "
            f"Valid commands: {', '.join(commands)}.\n\n{USAGE}",
            file=sys.stderr,
        )
        return 2
    if command == "train":
        _stop_cleanly_outside_training()
    try:
        return commands[command](rest)
    except DrlError as exc:
        print(f"drl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a third Ctrl-C in training (runner._Interrupt), or outside it
        print(
            "drl: stopped at once by Ctrl-C; no new checkpoint was written (the latest, if any, "
            "is kept).",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
