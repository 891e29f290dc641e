"""Where a run executes: device, torch threads, determinism. Returns what it resolved to."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from drlcli.config import HardwareConfig
from drlcli.errors import DrlError


@dataclass
class Resolved:
    device: str
    torch_threads: int
    vectorization: str
    deterministic: bool


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
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


def setup(cfg: HardwareConfig, seed: int) -> tuple[torch.device, Resolved]:
    device = resolve_device(cfg.device)
    threads = cfg.torch_threads
    if threads < 0:
        raise DrlError(f"hardware.torch_threads must be >= 0 (0 = auto), got {threads}.")
    if threads == 0:
        # Parallel sweep jobs (joblib etc.) export DRL_PARALLEL_JOBS so they share the cores.
        jobs = max(int(os.environ.get("DRL_PARALLEL_JOBS", "1")), 1)
        threads = max(available_cores() // jobs, 1)
    torch.set_num_threads(threads)
    seed_everything(seed)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    return device, Resolved(str(device), threads, cfg.vectorization, cfg.deterministic)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
