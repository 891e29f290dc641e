"""Where a run executes: device, torch threads, determinism. Returns what it resolved to."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from drlcli.config import VECTORIZATIONS, HardwareConfig
from drlcli.errors import DrlError


@dataclass
class Resolved:
    """What a run's hardware settings resolved to on this machine (saved in run_info.json)."""

    device: str
    torch_threads: int
    vectorization: str
    deterministic: bool
    num_workers: int = 0  # env worker processes (0: the envs run in the training process)
    envs_per_worker: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. an auto fallback, said at start


def available_cores() -> int:
    """Cores this process may run on (CPU affinity: SLURM's share, taskset), else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """``hardware.device`` (cpu, cuda, cuda:N, auto) -> torch.device. Raises DrlError naming
    the valid choices for an unknown name, or when CUDA is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DrlError(
                f"hardware.device={name} but CUDA is not available on this machine (torch "
                f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA). "
                "Use hardware=cpu, or hardware.device=auto to fall back to the CPU."
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DrlError(
                f"hardware.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
        return dev
    raise DrlError(f"Unknown hardware.device '{name}'. Valid choices: cpu, cuda, cuda:N, auto.")


def resolve_workers(cfg: HardwareConfig, num_envs: int) -> tuple[int, int]:
    """(num_workers, envs_per_worker) for the workers profile; (EnvPool threads, 0) for envpool;
    (0, 0) otherwise. Raises DrlError for an unknown vectorization or workers that cannot split
    ``num_envs``."""
    if cfg.vectorization not in VECTORIZATIONS:
        raise DrlError(
            f"Unknown hardware.vectorization '{cfg.vectorization}'. Valid choices: "
            f"{', '.join(VECTORIZATIONS)} (or pick a profile: hardware=cpu, workers, cuda, auto)."
        )
    if cfg.num_workers < 0 or cfg.envs_per_worker < 0:
        raise DrlError("hardware.num_workers and hardware.envs_per_worker must be >= 0 (0 = auto).")
    if cfg.vectorization == "envpool":  # EnvPool's thread pool: num_workers threads
        return cfg.num_workers or min(available_cores(), num_envs), 0
    if cfg.vectorization != "workers":
        return 0, 0
    workers = cfg.num_workers or (
        num_envs // cfg.envs_per_worker if cfg.envs_per_worker else min(available_cores(), num_envs)
    )
    if workers > num_envs:
        raise DrlError(
            f"hardware.num_workers={workers} is more than env.num_envs={num_envs}: each worker "
            f"needs at least one env. Use env.num_envs={workers} or fewer workers."
        )
    per = cfg.envs_per_worker or -(-num_envs // max(workers, 1))
    if cfg.envs_per_worker and workers * cfg.envs_per_worker != num_envs:
        raise DrlError(
            f"hardware.num_workers={workers} x hardware.envs_per_worker={cfg.envs_per_worker} = "
            f"{workers * cfg.envs_per_worker} envs, but env.num_envs={num_envs}. Set "
            f"env.num_envs={workers * cfg.envs_per_worker}, or leave envs_per_worker=0 to split "
            "env.num_envs evenly."
        )
    return workers, per


def setup(cfg: HardwareConfig, seed: int, num_envs: int = 1) -> tuple[torch.device, Resolved]:
    """Resolve ``cfg`` for a run of ``num_envs`` envs: the device, env worker processes, seeds
    and determinism flags; the thread count is set later by :func:`choose_threads` (it depends
    on the network). Returns (device, what was chosen, with notes to print at start). Raises
    DrlError for settings that cannot work here (no CUDA, workers that do not divide num_envs).
    """
    notes = []
    device = resolve_device(cfg.device)
    if cfg.device == "auto":
        notes.append(
            f"hardware.device=auto: using {device}"
            + ("" if device.type == "cuda" else " (no CUDA device found)")
        )
    workers, per_worker = resolve_workers(cfg, num_envs)
    check_threads(cfg)
    seed_everything(seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    resolved = Resolved(
        str(device), 0, cfg.vectorization, cfg.deterministic, workers, per_worker, notes
    )
    return device, resolved


def check_threads(cfg: HardwareConfig) -> None:
    """Raises DrlError for a negative ``hardware.torch_threads``."""
    if cfg.torch_threads < 0:
        raise DrlError(f"hardware.torch_threads must be >= 0 (0 = auto), got {cfg.torch_threads}.")


def choose_threads(cfg: HardwareConfig, resolved: Resolved, image_obs: bool) -> int:
    """Set torch's intra-op thread count for this process and record it in ``resolved``.

    ``hardware.torch_threads=N`` is taken as given. Automatic (0): one thread for vector
    observations (MLP policies), whose ops are far too small to split across threads - two
    threads were no faster than one here, while two runs sharing two cores with two OpenMP
    threads each ran 4x slower (150x on a busy machine), since idle OpenMP threads spin (issue
    #15; ``benchmarks/bench_threads.py`` measures both). Image observations (a CNN torso) get the
    cores left per parallel job after env workers (``DRL_PARALLEL_JOBS``, set by the parallel
    sweep launchers), where the same benchmark shows convolutions gain from them.

    Returns the thread count; the reason is appended to ``resolved.notes`` for the start line.
    """
    threads = cfg.torch_threads
    if threads == 0:
        if image_obs:
            jobs = max(int(os.environ.get("DRL_PARALLEL_JOBS", "1")), 1)
            threads = max(available_cores() // jobs - resolved.num_workers, 1)
            why = "image observations: the CNN uses the cores left per job after env workers"
        else:
            threads = 1
            why = "vector observations: small MLPs run as fast on one thread, and runs "
            why += "sharing the machine do not slow each other down"
        resolved.notes.append(
            f"torch threads: {threads} (auto; {why}; set hardware.torch_threads=N to override)"
        )
    torch.set_num_threads(threads)
    resolved.torch_threads = threads
    return threads


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
