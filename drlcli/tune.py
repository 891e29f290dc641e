"""`drl tune`: hyperparameter search with Optuna, called directly (RL Baselines3 Zoo style).

A search space is a YAML file in ``conf/search/`` (or any path): the training overrides every
trial starts from, study defaults (trials, sampler, pruner, seeds) and one distribution per
swept config key. Each trial trains in-process through :func:`drlcli.runner.train`; every
periodic evaluation is reported to the trial, so a pruner (median, successive halving,
Hyperband) can stop a trial whose evaluations trail the others'. The objective is the final
mean evaluation return (``result.json``'s ``eval_mean_return``), averaged over ``seeds`` runs,
maximized. A trial that raises or ends with a NaN return is recorded as failed (Optuna's FAIL
state) and the study goes on.

Studies live in a storage that several processes can share: by default an Optuna journal file
in the study directory (``outputs/tune/<study>/journal.log``), or any RDB URL
(``sqlite:///...``, ``postgresql://...``, ``mysql://...``) — so parallel workers on one machine
(``--jobs N``) or SLURM jobs running the same command add trials to one study. At the end the
best trial is written as a tuned-set YAML (the format of ``conf/tuned/``) and the
``optuna-dashboard`` command that opens the study is printed.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drlcli.errors import DrlError, did_you_mean

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "halving", "hyperband", "none")
PARAM_TYPES = ("float", "int", "categorical")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
STORAGE_FORMS = (
    "journal:PATH (an Optuna journal file; the default, journal:<study dir>/journal.log), "
    "sqlite:///PATH, or an RDB URL such as postgresql://user:password@host/db or "
    "mysql+pymysql://user:password@host/db"
)


@dataclass
class Param:
    """One swept config key and its distribution.

    ``kind``: float | int | categorical. float/int take ``low`` <= value <= ``high``, optionally
    ``log`` (log-uniform; needs low > 0) or ``step`` (a grid from low); categorical takes
    ``choices`` (numbers, strings or booleans)."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter's value from an Optuna trial."""
        if self.kind == "float":
            assert self.low is not None and self.high is not None
            return trial.suggest_float(
                self.name, float(self.low), float(self.high), log=self.log, step=self.step
            )
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return trial.suggest_categorical(self.name, self.choices)

    def example(self) -> Any:
        """A value inside the space, for checking the key and type before the study starts: the
        first choice, or the middle of the range (geometric for ``log``, on the ``step`` grid).
        Not ``low``: a range may start at a value the config refuses (``clip_coef`` from 0.0)
        and still be a valid space, its edge a trial that fails."""
        if self.kind == "categorical":
            return self.choices[0]
        assert self.low is not None and self.high is not None
        low, high = float(self.low), float(self.high)
        mid = math.sqrt(low * high) if self.log else (low + high) / 2
        if self.step:
            mid = low + round((mid - low) / float(self.step)) * float(self.step)
        mid = min(max(mid, low), high)
        return round(mid) if self.kind == "int" else float(mid)


@dataclass
class SearchSpace:
    """A parsed ``conf/search/*.yaml``: ``overrides`` (training overrides of every trial),
    ``study`` (defaults for n_trials, sampler, pruner, seeds, startup_trials) and ``params``."""

    name: str
    path: Path
    overrides: list[str]
    study: dict[str, Any]
    params: list[Param]


STUDY_KEYS = ("n_trials", "sampler", "pruner", "seeds", "startup_trials")


def search_dir() -> Path:
    from drlcli.cli import config_dir

    return config_dir() / "search"


def search_names() -> list[str]:
    return sorted(p.stem for p in search_dir().glob("*.yaml"))


def load_search(name: str) -> SearchSpace:
    """A search space by name (``conf/search/<name>.yaml``) or by path to a YAML file. Raises
    DrlError naming the problem (unknown name, bad YAML, unknown keys or distribution types,
    empty or inverted ranges) and the valid choices."""
    import yaml

    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        names = search_names()
        if name not in names:
            raise DrlError(
                f"Unknown search space '{name}'.{did_you_mean(name, names)} Valid choices: "
                f"{', '.join(names)} (conf/search/<name>.yaml), or the path to a YAML file "
                "of the same form."
            )
        path = search_dir() / f"{name}.yaml"
    where = f"search space {path}"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DrlError(f"The {where} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise DrlError(f"The {where} must be a mapping with overrides, study and params.")
    unknown = sorted(set(data) - {"overrides", "study", "params"})
    if unknown:
        raise DrlError(
            f"The {where} has unknown top-level key(s) {', '.join(unknown)}. Valid keys: "
            "overrides (a list of training overrides), study (n_trials, sampler, pruner, "
            "seeds, startup_trials), params (config key -> distribution)."
        )
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise DrlError(f"In the {where}, overrides must be a list of key=value strings.")
    study = data.get("study") or {}
    if not isinstance(study, dict) or set(study) - set(STUDY_KEYS):
        bad = sorted(set(study) - set(STUDY_KEYS)) if isinstance(study, dict) else study
        raise DrlError(
            f"In the {where}, study has unknown setting(s) {bad}. Valid settings: "
            f"{', '.join(STUDY_KEYS)}."
        )
    raw = data.get("params") or {}
    if not isinstance(raw, dict) or not raw:
        raise DrlError(
            f"The {where} sweeps nothing: params must map config keys to distributions, e.g. "
            "algo.learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}."
        )
    params = [_parse_param(str(k), v, where) for k, v in raw.items()]
    return SearchSpace(path.stem, path, list(overrides), dict(study), params)


def _parse_param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise DrlError(
            f"In the {where}, {name} must be a mapping such as {{type: float, low: 0.8, "
            f"high: 0.99}}, got {spec!r}."
        )
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise DrlError(
            f"In the {where}, {name} has type {kind!r}.{did_you_mean(str(kind), PARAM_TYPES)} "
            f"Valid types: {', '.join(PARAM_TYPES)}."
        )
    allowed = (
        {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
    )
    extra = sorted(set(spec) - allowed)
    if extra:
        raise DrlError(
            f"In the {where}, {name} ({kind}) has unknown setting(s) {', '.join(extra)}. "
            f"Valid settings: {', '.join(sorted(allowed))}."
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise DrlError(f"In the {where}, {name} (categorical) needs a non-empty choices list.")
        if not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
            raise DrlError(
                f"In the {where}, {name}'s choices must be numbers, strings, booleans or null "
                "(what Optuna's categorical takes); write a list value as a string, e.g. "
                "choices: ['[64, 64]', '[256, 256]'] for algo.hidden_sizes."
            )
        return Param(name, kind, choices=choices)
    low, high = spec.get("low"), spec.get("high")
    numeric = (int,) if kind == "int" else (int, float)
    if not all(isinstance(v, numeric) and not isinstance(v, bool) for v in (low, high)):
        raise DrlError(
            f"In the {where}, {name} ({kind}) needs numeric low and high"
            f"{' (integers)' if kind == 'int' else ''}, got low={low!r}, high={high!r}."
        )
    assert low is not None and high is not None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise DrlError(
            f"In the {where}, {name} ({kind}) needs finite low and high, got low={low!r}, "
            f"high={high!r}."
        )
    if low > high:
        raise DrlError(f"In the {where}, {name} has low={low} > high={high}: an empty range.")
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if log and low <= 0:
        raise DrlError(f"In the {where}, {name} is log-uniform but low={low}: log needs low > 0.")
    if log and step is not None:
        raise DrlError(f"In the {where}, {name} sets both log and step; Optuna takes one.")
    if step is not None and (not isinstance(step, numeric) or step <= 0):
        raise DrlError(f"In the {where}, {name}'s step must be a positive number, got {step!r}.")
    return Param(name, kind, float(low), float(high), log, step)


def check_space(overrides: list[str], params: list[Param], tries: int = 6) -> Any:
    """The composed, pre-checked config of one point of the search space (what ``drl train``
    checks before a run), or DrlError when no point tried can run. The first point is every
    key's :meth:`Param.example`; when that one is refused, up to ``tries`` more points take
    each categorical's other choices and the ranges' edges in turn, since a space is valid
    when some of its points are (a categorical whose first choice is refused with the others'
    settings once refused the whole study). The trials drawing the refused points fail and
    are recorded as failed."""
    from drlcli.cli import check_overrides, preflight

    def alternatives(p: Param) -> list[Any]:
        if p.kind == "categorical":
            return list(p.choices)
        assert p.low is not None and p.high is not None
        edges = [p.low, p.high]
        return [p.example(), *(round(v) if p.kind == "int" else v for v in edges)]

    check_overrides(overrides, multirun=False)  # the space's own overrides: their plain error
    options = [alternatives(p) for p in params]
    first_error: DrlError | None = None
    tried: set[tuple[str, ...]] = set()
    for k in range(tries + 1):
        point = [
            f"{p.name}={format_value(opts[k % len(opts)])}"
            for p, opts in zip(params, options, strict=True)
        ]
        if tuple(point) in tried:  # a single choice, or low == high
            continue
        tried.add(tuple(point))
        try:
            composed = check_overrides([*overrides, *point], multirun=False)
            preflight(composed)
            return composed
        except DrlError as exc:
            if first_error is None:
                first_error, shown = exc, " ".join(point)
    assert first_error is not None
    raise DrlError(
        f"No point of the search space tried can run. With {shown}: {first_error}"
    ) from first_error


# --- storage --------------------------------------------------------------------------------
def check_storage(url: str) -> None:
    """Raise DrlError unless ``url`` is a storage form :func:`open_storage` takes."""
    if url.startswith("journal:"):
        if not url[len("journal:") :].strip():
            raise DrlError(f"Storage '{url}' names no file. Valid forms: {STORAGE_FORMS}.")
        return
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+", 1)[0] in RDB_SCHEMES and url.split("://", 1)[1]:
        return
    raise DrlError(f"Unknown storage '{url}'. Valid forms: {STORAGE_FORMS}.")


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url`` (see :data:`STORAGE_FORMS`): a JournalStorage over a file
    (created with its folder) or an RDBStorage. Raises DrlError when it cannot be opened."""
    import optuna

    check_storage(url)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:") :]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(url)
    except Exception as exc:
        raise DrlError(
            f"Could not open the Optuna storage '{url}': {type(exc).__name__}: {exc}. "
            f"Valid forms: {STORAGE_FORMS}; RDB URLs need their database driver installed."
        ) from exc


def dashboard_command(url: str) -> str:
    """The shell command that opens this storage in optuna-dashboard."""
    target = url[len("journal:") :] if url.startswith("journal:") else url
    return f"optuna-dashboard {shlex.quote(target)}"


# --- samplers and pruners ---------------------------------------------------------------------
def make_sampler(name: str, seed: int | None, startup_trials: int) -> Any:
    """TPE (Bergstra et al. 2011; random for the first ``startup_trials``), random, or CMA-ES
    (Hansen 2016; needs the ``cmaes`` package; categorical keys are sampled at random)."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=startup_trials, warn_independent_sampling=False
        )
    raise DrlError(
        f"Unknown sampler '{name}'.{did_you_mean(name, SAMPLERS)} Valid choices: "
        f"{', '.join(SAMPLERS)}."
    )


def make_pruner(name: str, startup_trials: int, first_step: int, last_step: int) -> Any:
    """An Optuna pruner over the report steps of :func:`report_step`.

    median: stop a trial whose best evaluation so far is below the median of earlier trials'
    at the same step, once ``startup_trials`` trials have finished. halving: asynchronous
    successive halving (Li et al. 2020), rungs at ``first_step`` x 3^k, a trial goes on only
    while in the top third of its rung. hyperband: Hyperband (Li et al. 2018) brackets of
    successive halving between ``first_step`` and ``last_step``. none: never prune."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first_step, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=first_step, max_resource=max(last_step, first_step), reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise DrlError(
        f"Unknown pruner '{name}'.{did_you_mean(name, PRUNERS)} Valid choices: "
        f"{', '.join(PRUNERS)}."
    )


def report_step(seed_index: int, eval_index: int, total_timesteps: int, every: int) -> int:
    """The step an evaluation is reported at: its place on the nominal schedule (the k-th
    evaluation of a seed at k x eval.every), seed after seed. Nominal, not the env step it ran
    at, so trials whose rollout sizes differ still compare at the same keys."""
    per_seed = (total_timesteps // every + 1) * every
    return seed_index * per_seed + eval_index * every


# --- the study ----------------------------------------------------------------------------------
@dataclass
class TuneSpec:
    """Everything a worker process needs to run trials (picklable)."""

    search: str
    overrides: list[str]  # search overrides, then the command line's
    params: list[Param]
    study_name: str
    storage: str
    study_dir: str
    sampler: str
    pruner: str
    seeds: int
    startup_trials: int
    sampler_seed: int  # --sampler-seed, or drawn at random and printed
    total_timesteps: int
    eval_every: int
    base_seed: int
    algo_env: str  # "<algo>_<env>" of the trials' config choices, for the tuned-set file name
    earlier_trials: int = 0  # trials the study held when this command started
    base_tuned: dict[str, Any] = field(default_factory=dict)  # flat, see write_best


def worker_sampler_seed(spec: TuneSpec, worker: int) -> int:
    """The seed of worker ``worker``'s sampler: ``--sampler-seed`` itself for the first worker
    of a new study (so a study is reproducible from its seed), otherwise a seed derived from
    (sampler seed, trials already in the study, worker) with numpy's SeedSequence. Parallel
    workers, and a command run again to add trials, would otherwise draw the same startup
    points as before: the same seed gives a random or TPE sampler the same sequence."""
    if spec.earlier_trials == 0 and worker == 0:
        return spec.sampler_seed
    import numpy as np

    entropy = [spec.sampler_seed, spec.earlier_trials, worker]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def format_value(value: Any) -> str:
    """A parameter value as a Hydra override and in run names: floats in full (repr)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def trial_dir_name(number: int, params: dict[str, Any]) -> str:
    """``trial_0007_algo.learning_rate=0.00123,algo.gae_lambda=0.91``: the swept values in full."""
    parts = ",".join(f"{k}={format_value(v)}" for k, v in params.items())
    name = f"trial_{number:04d}_{parts}"
    return re.sub(r"[/\\]", "_", name)


# Printed when a signal stops a trial's run (instead of `drl train resume=...`, which a trial
# directory cannot take: it holds no Hydra config).
TRIAL_INTERRUPTED = (
    "The trial is recorded as failed; the same drl tune command adds new trials to the study "
    "(a trial is not resumed)."
)


class TrialFailedError(Exception):
    """A trial whose training raised or whose objective is not finite (Optuna: FAIL)."""


def _objective(trial: Any, spec: TuneSpec) -> float:
    import optuna

    from drlcli.cli import _compose
    from drlcli.config import to_train_config
    from drlcli.runner import RunHooks, train
    from drlcli.sweep import write_failure

    params = {p.name: p.suggest(trial) for p in spec.params}
    trial_dir = Path(spec.study_dir) / trial_dir_name(trial.number, params)
    trial.set_user_attr("run_dir", str(trial_dir))
    trial.set_user_attr("worker_pid", os.getpid())
    finals: list[float] = []
    for k in range(spec.seeds):
        seed = spec.base_seed + k
        run_dir = trial_dir / f"s{seed}" if spec.seeds > 1 else trial_dir
        overrides = [
            *spec.overrides,
            *(f"{key}={format_value(v)}" for key, v in params.items()),
            f"seed={seed}",
        ]
        command = "drl train " + " ".join(shlex.quote(o) for o in overrides)
        evals = 0

        def on_eval(step: int, mean: float, k: int = k) -> str | None:
            nonlocal evals
            evals += 1
            at = report_step(k, evals, spec.total_timesteps, spec.eval_every)
            trial.report(mean, at)
            trial.set_user_attr("last_step", step)
            if trial.should_prune():
                return f"{spec.pruner} pruner, eval return {mean:.2f} (report step {at})"
            return None

        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            cfg = to_train_config(_compose(overrides))
            # The run's own output (start line, evaluations, summary) goes to its train.log.
            with (
                (run_dir / "train.log").open("w") as log,
                contextlib.redirect_stdout(log),
            ):
                hooks = RunHooks(on_eval=on_eval, after_interrupt=TRIAL_INTERRUPTED)
                result = train(cfg, run_dir, command, hooks)
        except Exception as exc:
            msg = str(exc) if isinstance(exc, DrlError) else f"{type(exc).__name__}: {exc}"
            write_failure(run_dir, msg)
            trial.set_user_attr("error", msg)
            raise TrialFailedError(msg) from exc
        if result.status == "interrupted":
            raise KeyboardInterrupt
        if result.status == "pruned":
            raise optuna.TrialPruned(f"pruned at env step {result.global_step}")
        if not math.isfinite(result.eval_mean_return):
            msg = f"seed {seed}: the final mean eval return is {result.eval_mean_return}"
            trial.set_user_attr("error", msg)
            raise TrialFailedError(msg)
        finals.append(result.eval_mean_return)
    trial.set_user_attr("seed_returns", finals)
    return float(sum(finals) / len(finals))


def _print_trial(study: Any, trial: Any) -> None:
    state = trial.state.name.lower()
    params = " ".join(f"{k}={format_value(v)}" for k, v in trial.params.items())
    dur = trial.duration.total_seconds() if trial.duration is not None else float("nan")
    if state == "complete":
        what = f"value {trial.value:.2f}"
    elif state == "pruned":
        what = f"pruned at env step {trial.user_attrs.get('last_step', '?')}"
    else:
        what = f"{state}: {trial.user_attrs.get('error', '')}"
    print(f"drl tune: trial {trial.number} {what} ({dur:.1f} s) {params}", flush=True)


def run_worker(spec: TuneSpec, n_trials: int, worker: int) -> None:
    """Run ``n_trials`` trials of the study in this process (one of ``--jobs`` workers)."""
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.ERROR)  # we print each trial ourselves
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=open_storage(spec.storage),
        sampler=make_sampler(spec.sampler, worker_sampler_seed(spec, worker), spec.startup_trials),
        pruner=make_pruner(
            spec.pruner,
            spec.startup_trials,
            spec.eval_every,
            report_step(
                spec.seeds - 1,
                spec.total_timesteps // spec.eval_every + 1,
                spec.total_timesteps,
                spec.eval_every,
            ),
        ),
    )
    study.optimize(
        lambda t: _objective(t, spec),
        n_trials=n_trials,
        catch=(TrialFailedError,),
        callbacks=[_print_trial],
    )


def _worker_main(spec: TuneSpec, n_trials: int, worker: int) -> None:
    try:
        run_worker(spec, n_trials, worker)
    except KeyboardInterrupt:
        sys.exit(130)


# --- results ------------------------------------------------------------------------------------
def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'algo.learning_rate': x} -> {'algo': {'learning_rate': x}}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b': value}, values kept as they are (lists, None)."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_leaves(value, f"{prefix}{key}."))
    return out


def trial_hyperparameters(composed: Any, algo: str, env: str) -> dict[str, Any]:
    """{'algo.x': value, 'env.y': value} for every ``algo.*`` / ``env.*`` setting in which the
    trials' config (``composed``: tuned set, search overrides and command line applied) differs
    from the pair's defaults without a tuned set. With the swept values on top, this is the
    tuned set that trains as the best trial did: the swept keys alone would drop the rest of
    the tuned set the trials started from (PPO CartPole's 8 envs, batch, gamma, ...)."""
    from omegaconf import OmegaConf

    from drlcli.cli import _compose

    base = _leaves(OmegaConf.to_container(_compose([f"algo={algo}", f"env={env}", "~tuned"])))
    trial = _leaves(OmegaConf.to_container(composed, resolve=True))
    return {
        key: value
        for key, value in trial.items()
        if key.split(".", 1)[0] in ("algo", "env") and (key not in base or base[key] != value)
    }


def write_best(study: Any, spec: TuneSpec, path: Path) -> None:
    """The best trial as a tuned set (``conf/tuned/<algo>_<env>.yaml`` format): its swept values
    over every other hyperparameter its run was given (``spec.base_tuned``)."""
    import yaml

    best = study.best_trial
    header = [
        "# @package _global_",
        f"# Best trial {best.number} of Optuna study '{spec.study_name}' ({spec.search} search, "
        f"{spec.sampler} sampler, {spec.pruner} pruner): final mean eval return "
        f"{best.value:.2f}, {time.strftime('%Y-%m-%d')}.",
        f"# Swept: {', '.join(best.params)}. The other keys are the trials' own settings (the "
        "tuned set, the search's and the command line's algo/env overrides).",
        f"# Apply it by default: cp {path} conf/tuned/{spec.algo_env}.yaml",
    ]
    values = {**spec.base_tuned, **best.params}
    body = yaml.safe_dump(nest(values), sort_keys=False)
    path.write_text("\n".join(header) + "\n" + body)


def render_study(study: Any, spec: TuneSpec, title: str) -> None:
    """One row per trial of the study: number, state, value, parameters, duration."""
    from rich.markup import escape
    from rich.table import Table

    from drlcli.logger import make_console

    table = Table(title=title)
    for col in ("#", "state", "value", "last step", "wall (s)", *[p.name for p in spec.params]):
        table.add_column(col, justify="left" if col == "state" else "right", overflow="fold")
    for t in study.trials:
        done = t.value is not None and t.state.name == "COMPLETE"
        value = f"{t.value:.2f}" if done else "-"
        dur = f"{t.duration.total_seconds():.1f}" if t.duration is not None else "-"
        state = t.state.name.lower()
        if t.user_attrs.get("error"):
            state += ": " + escape(str(t.user_attrs["error"])[:120])
        table.add_row(
            str(t.number),
            state,
            value,
            str(t.user_attrs.get("last_step", "-")),
            dur,
            *[format_value(t.params[p.name]) if p.name in t.params else "-" for p in spec.params],
        )
    make_console().print(table)


# --- the command ----------------------------------------------------------------------------
TUNE_DESCRIPTION = """\
Hyperparameter search with Optuna: each trial trains with values drawn from a search space
(conf/search/<name>.yaml), every periodic evaluation feeds the pruner, and the best trial is
written as a tuned set. Arguments that are not options are training overrides applied to every
trial (algo=ppo total_timesteps=30000 eval.every=5000 ...)."""


def cmd_tune(argv: list[str]) -> int:
    """`drl tune SEARCH [overrides...] [options]`; returns the exit status (0: at least one
    trial completed; 1: none did; 130: interrupted). Bad input raises DrlError before any
    study directory or storage exists."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:
            # parse_intermixed_args calls the optional overrides "required" with the search
            super().error(message.replace("search, overrides", "search"))

    parser = Parser(prog="drl tune", description=TUNE_DESCRIPTION)
    parser.add_argument(
        "search",
        help=f"search space: a name in conf/search ({', '.join(search_names())}) or a YAML path",
    )
    parser.add_argument("overrides", nargs="*", help="training overrides for every trial")
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="trials to add (default: the search space's study.n_trials, else 20)",
    )
    parser.add_argument(
        "--sampler",
        default=None,
        help=f"{' | '.join(SAMPLERS)} (default: the search space's, else tpe)",
    )
    parser.add_argument(
        "--pruner",
        default=None,
        help=f"{' | '.join(PRUNERS)} (default: the search space's, else median)",
    )
    parser.add_argument(
        "--startup-trials",
        type=int,
        default=None,
        help="trials before the sampler models and the median pruner prunes (default 5)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="training seeds per trial, seed, seed+1, ...; the objective is their mean (default 1)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="trials run in parallel, one process each (default 1)"
    )
    parser.add_argument("--study", default=None, help="study name (default: the search name)")
    parser.add_argument(
        "--storage",
        default=None,
        help=f"where the study lives: {STORAGE_FORMS}",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="study directory for runs and results (default outputs/tune/<study>)",
    )
    parser.add_argument(
        "--sampler-seed",
        type=int,
        default=None,
        help="sampler seed (default: drawn at random and printed; the same seed repeats a new "
        "study's draws)",
    )
    args = parser.parse_intermixed_args(argv)  # options before, between or after overrides
    return tune(args)


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise DrlError(f"{name} must be at least 1, got {value}.")
    return value


def tune(args: Any) -> int:
    """Validate everything, create or load the study, run the trials, report the best."""
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise DrlError(
            "drl tune needs Optuna, which is not installed: pip install 'drlcli[tune]' (from a "
            "checkout: make install EXTRAS=tune)."
        )

    space = load_search(args.search)
    st = space.study
    n_trials = _positive(
        "--trials", args.trials if args.trials is not None else int(st.get("n_trials", 20))
    )
    sampler = args.sampler or str(st.get("sampler", "tpe"))
    pruner = args.pruner or str(st.get("pruner", "median"))
    startup = (
        args.startup_trials if args.startup_trials is not None else st.get("startup_trials", 5)
    )
    seeds = _positive("--seeds", args.seeds if args.seeds is not None else int(st.get("seeds", 1)))
    jobs = _positive("--jobs", args.jobs)
    if int(startup) < 0:
        raise DrlError(f"--startup-trials must be >= 0, got {startup}.")
    for what, name, valid in (("sampler", sampler, SAMPLERS), ("pruner", pruner, PRUNERS)):
        if name not in valid:
            raise DrlError(
                f"Unknown {what} '{name}'.{did_you_mean(name, valid)} Valid choices: "
                f"{', '.join(valid)}."
            )
    if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        raise DrlError("--sampler cmaes needs the cmaes package: pip install 'drlcli[tune]'.")
    study_name = args.study or space.name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", study_name):
        raise DrlError(f"Study name '{study_name}': use letters, digits, '_', '.', '-' only.")
    study_dir = (args.dir or Path("outputs") / "tune" / study_name).resolve()
    storage = args.storage or f"journal:{study_dir / 'journal.log'}"
    check_storage(storage)

    swept = {p.name for p in space.params}
    fixed = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+~") in swept]
    if fixed:
        raise DrlError(
            f"{', '.join(fixed)}: the search space sweeps {', '.join(sorted(swept))}; fix a "
            "swept key by editing a copy of the search space instead."
        )
    if any(
        key in ("seed", "resume") or key == "hydra" or key.startswith(("hydra.", "hydra/"))
        for key in (o.split("=", 1)[0].lstrip("+~") for o in args.overrides)
    ):
        raise DrlError(
            "seed, resume and hydra.* are set per trial by drl tune: use --seeds N and "
            "--dir DIR instead."
        )
    overrides = [*space.overrides, *args.overrides]
    composed = check_space(overrides, space.params)
    every, total = int(composed.eval.every), int(composed.total_timesteps)
    if pruner != "none" and not 0 < every < total:
        raise DrlError(
            f"--pruner {pruner} needs periodic evaluations: eval.every={every} must be between "
            f"1 and total_timesteps={total} (or use --pruner none)."
        )
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = {
        o.key_or_group: o.get_value_element_as_str()
        for o in OverridesParser.create().parse_overrides(overrides)
        if o.key_or_group in ("algo", "env")
    }
    sampler_seed = args.sampler_seed
    drawn = sampler_seed is None
    if drawn:  # a fresh seed per command, as Optuna's default, but printed to be repeatable
        sampler_seed = int.from_bytes(os.urandom(4), "little") >> 1
    spec = TuneSpec(
        search=space.name,
        overrides=overrides,
        params=space.params,
        study_name=study_name,
        storage=storage,
        study_dir=str(study_dir),
        sampler=sampler,
        pruner=pruner,
        seeds=seeds,
        startup_trials=int(startup),
        sampler_seed=sampler_seed,
        total_timesteps=total,
        eval_every=max(every, 1),
        base_seed=int(composed.seed),
        algo_env=f"{choices.get('algo', 'ppo')}_{choices.get('env', 'cartpole')}",
        base_tuned=trial_hyperparameters(
            composed, choices.get("algo", "ppo"), choices.get("env", "cartpole")
        ),
    )

    # Everything checked: now the study directory and the storage come into being.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        direction="maximize",
        load_if_exists=True,
    )
    before = spec.earlier_trials = len(study.trials)
    if before:  # worker_sampler_seed: the seeds derive from it and the earlier trials
        seed_note = f"{', drawn' if drawn else ''}; this command's draws derive from it and the "
        seed_note += f"{before} earlier trials"
    else:
        seed_note = ", drawn: --sampler-seed repeats it" if drawn else ""
    print(
        f"drl tune: study '{study_name}' ({before} earlier trials) in {storage}: {n_trials} "
        f"trials of {space.name} ({len(space.params)} keys), sampler {sampler} (seed "
        f"{sampler_seed}{seed_note}), pruner "
        f"{pruner}, {seeds} seed(s) per trial, {jobs} parallel job(s) -> {study_dir}",
        flush=True,
    )
    t0 = time.perf_counter()
    interrupted = False
    try:
        if jobs == 1:
            run_worker(spec, n_trials, 0)
        else:
            interrupted = _run_parallel(spec, n_trials, jobs)
    except KeyboardInterrupt:
        interrupted = True
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return _report(study, spec, study_dir, storage, before, wall, interrupted)


def _run_parallel(spec: TuneSpec, n_trials: int, jobs: int) -> bool:
    """``jobs`` spawned worker processes share the trials; each takes its share of the cores
    (DRL_PARALLEL_JOBS sets the automatic torch thread count). True when interrupted."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    os.environ.setdefault("DRL_PARALLEL_JOBS", str(jobs))
    shares = [n_trials // jobs + (1 if i < n_trials % jobs else 0) for i in range(jobs)]
    procs = [
        ctx.Process(target=_worker_main, args=(spec, n, i), daemon=False)
        for i, n in enumerate(shares)
        if n > 0
    ]
    for p in procs:
        p.start()
    interrupted = False
    for p in procs:
        try:
            p.join()
        except KeyboardInterrupt:
            interrupted = True
            p.join()
        interrupted = interrupted or p.exitcode == 130
    return interrupted


def _report(
    study: Any,
    spec: TuneSpec,
    study_dir: Path,
    storage: str,
    before: int,
    wall: float,
    interrupted: bool,
) -> int:
    from optuna.trial import TrialState

    new = study.trials[before:]
    counts = {s: sum(t.state == s for t in new) for s in TrialState}
    render_study(study, spec, f"drl tune: study {spec.study_name}")
    print(
        f"drl tune: {len(new)} trials in {wall:.1f} s: {counts[TrialState.COMPLETE]} complete, "
        f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed"
        + (", interrupted" if interrupted else ""),
        flush=True,
    )
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if done:
        best = study.best_trial
        path = study_dir / "best_tuned.yaml"
        write_best(study, spec, path)
        params = " ".join(f"{k}={format_value(v)}" for k, v in best.params.items())
        print(f"drl tune: best trial {best.number}: value {best.value:.2f} with {params}")
        print(f"drl tune: tuned set written to {path}")
        merged: dict[str, str] = {}
        for o in [*spec.overrides, *(f"{k}={format_value(v)}" for k, v in best.params.items())]:
            merged[o.split("=", 1)[0]] = o  # a later override of a key wins, as in Hydra
        print(f"drl tune: train with it: drl train {' '.join(map(shlex.quote, merged.values()))}")
    print(f"drl tune: dashboard: {dashboard_command(storage)}")
    print(f"drl tune: curves and HPARAMS: tensorboard --logdir {shlex.quote(str(study_dir))}")
    if interrupted:
        return 130
    return 0 if done else 1
