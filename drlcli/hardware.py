"""Where a run executes: device, torch threads, determinism. Returns what it resolved to."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
import torch

from drlcli import networks
from drlcli.config import COMPILE_MODES, CPU_LINEARS, VECTORIZATIONS, HardwareConfig
from drlcli.errors import DrlError


@dataclass
class Resolved:
    """What a run's hardware settings resolved to on this machine (saved in run_info.json)."""

    device: str
    torch_threads: int  # the most torch threads the run may use (adaptive: it starts on 1)
    vectorization: str
    deterministic: bool
    num_workers: int = 0  # env worker processes (0: the envs run in the training process)
    envs_per_worker: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. an auto fallback, said at start
    adaptive_threads: bool = False  # a ThreadGovernor moves the count with the other load
    cpu_linear: str = "aten"  # what hardware.cpu_linear resolved to: onednn | aten


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
    resolved.cpu_linear = resolve_cpu_linear(cfg, device)
    networks.set_onednn_linear(resolved.cpu_linear == "onednn")
    if cfg.cpu_linear == "auto" and resolved.cpu_linear == "onednn":
        notes.append(
            "hardware.cpu_linear=auto: large linear layers run on oneDNN (MKL has only its "
            "AVX2 kernels on this CPU; hardware.cpu_linear=aten for torch's default)"
        )
    elif resolved.cpu_linear == "onednn" and cfg.compile != "none":
        notes.append(
            "hardware.cpu_linear=onednn with hardware.compile: the compiled loss functions use "
            "inductor's kernels; oneDNN runs the eager rest (acting, evaluation)"
        )
    return device, resolved


def cpu_flags() -> tuple[str, set[str]]:
    """(vendor id, feature flags) of this machine's CPU from /proc/cpuinfo; ("", set()) where
    it cannot be read (not Linux)."""
    vendor, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return vendor, flags


def check_cpu_linear(cfg: HardwareConfig) -> None:
    """Raises DrlError naming the valid choices for an unknown ``hardware.cpu_linear``."""
    if cfg.cpu_linear not in CPU_LINEARS:
        raise DrlError(
            f"Unknown hardware.cpu_linear '{cfg.cpu_linear}'. Valid choices: "
            f"{', '.join(CPU_LINEARS)} (the matmul library for large linear layers on the CPU)."
        )


def resolve_cpu_linear(cfg: HardwareConfig, device: torch.device) -> str:
    """``hardware.cpu_linear`` -> "onednn" or "aten" for this run (networks.linear). auto picks
    oneDNN for eager CPU runs on x86 CPUs with AVX-512 that are not Intel's: MKL dispatches its
    AVX-512 sgemm kernels on Intel CPUs only, and on the AMD EPYC development machine oneDNN's
    were ~2x faster per large layer, a SAC Pendulum run 1.4x (benchmarks/bench_tricks.py,
    README "Benchmark: off-policy"). Intel CPUs, ARM and GPU runs keep torch's default (a GPU
    run resolves to aten even when onednn is asked for). Raises DrlError for an unknown value,
    or for onednn on a torch build without oneDNN."""
    check_cpu_linear(cfg)
    if device.type != "cpu":
        return "aten"  # the layers run on the device: nothing to choose on the CPU
    if cfg.cpu_linear == "onednn":
        if not networks.onednn_linear_available():
            raise DrlError(
                "hardware.cpu_linear=onednn, but this torch build has no oneDNN linear op "
                f"(torch {torch.__version__}). Use hardware.cpu_linear=auto or aten."
            )
        return "onednn"
    if cfg.cpu_linear == "aten" or cfg.compile != "none":
        return "aten"
    vendor, flags = cpu_flags()
    if vendor and vendor != "GenuineIntel" and "avx512f" in flags:
        return "onednn" if networks.onednn_linear_available() else "aten"
    return "aten"


def check_threads(cfg: HardwareConfig) -> None:
    """Raises DrlError for a negative ``hardware.torch_threads``, an unknown
    ``hardware.compile`` mode or an unknown ``hardware.cpu_linear``."""
    if cfg.torch_threads < 0:
        raise DrlError(f"hardware.torch_threads must be >= 0 (0 = auto), got {cfg.torch_threads}.")
    check_cpu_linear(cfg)
    if cfg.compile not in COMPILE_MODES:
        raise DrlError(
            f"Unknown hardware.compile '{cfg.compile}'. Valid choices: {', '.join(COMPILE_MODES)} "
            "(torch.compile modes for the learner's loss functions; none = eager)."
        )


def check_compiler(cfg: HardwareConfig, device: torch.device) -> None:
    """Raises DrlError when ``hardware.compile`` is on for a CPU run and torch's inductor finds
    no working C++ compiler (it generates C++ for CPU kernels): said before the run starts,
    not as a traceback at the first update."""
    if cfg.compile == "none" or device.type != "cpu":
        return
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler, or an inductor without this helper
        if type(exc).__name__ != "InvalidCxxCompiler":
            return  # cannot tell here: the first compiled call will say
        raise DrlError(
            f"hardware.compile={cfg.compile} on CPU needs a C++ compiler (torch's inductor "
            "generates C++ kernels) and none works here (CXX, g++ or clang++); install one, "
            "or use hardware.compile=none."
        ) from None


_graph_modes_used = False  # set by compiled() for reduce-overhead / max-autotune


def compiled(fn: Callable[..., Any], mode: str) -> Callable[..., Any]:
    """``fn`` compiled with torch.compile in ``mode`` (hardware.compile): whole-graph
    (``fullgraph=True``: a function that cannot be captured whole raises at its first call
    instead of silently running partly eager) and static shapes (a learner's batches keep
    their size). Used on the functions an algorithm's update really calls (losses, targets,
    policy sampling), not on ``nn.Module.forward``, which those updates mostly bypass."""
    global _graph_modes_used
    cfn = torch.compile(fn, mode=None if mode == "default" else mode, fullgraph=True, dynamic=False)
    if mode == "default":
        return cfn
    _graph_modes_used = True

    def owned_outputs(*args: Any, **kwargs: Any) -> Any:
        # CUDA graphs (reduce-overhead, max-autotune) hand out views of a memory pool that the
        # next replay overwrites: SAC's sampled actions were overwritten before its actor loss
        # read them on an H200 (issue #15). A clone (differentiable) makes them the caller's.
        out = cfn(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.clone()
        if isinstance(out, tuple):
            return tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in out)
        return out

    return owned_outputs


def graph_step() -> None:
    """Mark the start of a gradient step (or minibatch) for CUDA graphs (``hardware.compile=
    reduce-overhead`` / ``max-autotune`` on a GPU), whose memory the step's replays may then
    reuse (issue #15: SAC on an H200). The outputs callers keep are already their own
    (:func:`compiled` copies them). Does nothing unless this process compiled a function in a
    graph mode: its first call imports torch._inductor.cudagraph_trees (0.7 s), which eager runs
    must not pay."""
    if _graph_modes_used:
        torch.compiler.cudagraph_mark_step_begin()


# Multiply-adds of one forward pass of the largest network over one learning batch from which
# a second torch thread pays for an MLP learner. benchmarks/bench_threads.py (2-vCPU machine,
# 2026-11-30; one gradient step, 1 vs 2 threads): SAC 64x64 batch 256 (2.3M) 0.90x, SAC 128x128
# (8.7M) 1.22x, SAC 256x256 batch 64 (8.6M) 1.14x, TD3 400x300 batch 100 (24M) 1.40x, SAC
# 256x256 batch 256 (34M) 1.6-1.9x; PPO's 64x64 on minibatches of 64 (0.6M) gains nothing.
PARALLEL_WORK = 8_000_000
# Beyond this many threads no benchmark here shows a gain for an MLP learner (2 cores measured).
MAX_MLP_THREADS = 4
CHECK_INTERVAL_S = 2.0  # how often an adaptive thread count looks at the other load


def learner_work(modules: dict[str, torch.nn.Module], batch: int) -> int:
    """Multiply-adds of one forward pass of the algorithm's largest network over a learning
    batch of ``batch`` samples: an MLP's weight count is its multiply-adds per sample (to
    within the biases; twin critics stacked in one module count together, as they run in one
    batched call). A rough size of the learner's matmuls, used to decide whether a second
    torch thread pays (:data:`PARALLEL_WORK`)."""
    sizes = [sum(p.numel() for p in m.parameters()) for m in modules.values()]
    return max(sizes, default=0) * max(batch, 1)


def choose_threads(cfg: HardwareConfig, resolved: Resolved, image_obs: bool, work: int = 0) -> int:
    """Set torch's intra-op thread count for this process and record it in ``resolved``.

    ``hardware.torch_threads=N`` is taken as given. Automatic (0): the most threads the
    learner may use (``resolved.torch_threads``) is one for small MLPs, whose ops are far too
    small to split (two threads were no faster), and for MLP learners whose ``work``
    (:func:`learner_work`) reaches :data:`PARALLEL_WORK` and for CNN torsos (image
    observations) the cores per parallel job (``DRL_PARALLEL_JOBS``, set by the parallel sweep
    launchers) left after env workers (MLPs: at most :data:`MAX_MLP_THREADS`). Such a run
    starts on one thread and a :class:`ThreadGovernor` moves it between 1 and that maximum
    as the other load on its cores allows: two runs that both spun two OpenMP threads on two
    cores ran 4-25x slower (150x on a busy machine; issue #15), since idle OpenMP threads
    spin. Where the load cannot be read (not Linux), or with ``hardware.deterministic``, the
    count stays fixed: one for MLPs, the maximum for CNNs (as before the governor). With
    ``hardware.compile`` it stays at one: torch.compile guards on the thread count, so each
    change recompiled every compiled function (seen as a 5x slower SAC run). A learner on a GPU
    gets one: its CPU threads carry only small host-side ops.

    Returns the thread count set now; the reason goes to ``resolved.notes`` for the start line.
    """
    threads = cfg.torch_threads
    if threads == 0:
        jobs = max(int(os.environ.get("DRL_PARALLEL_JOBS", "1")), 1)
        per_job = max(available_cores() // jobs - resolved.num_workers, 1)
        if resolved.device != "cpu":
            most = 1
            why = (
                f"the learner runs on {resolved.device}: torch's CPU threads only carry small "
                "host-side ops there"
            )
        elif image_obs:
            most = per_job
            why = "image observations: the CNN may use the cores left per job after env workers"
        elif work >= PARALLEL_WORK and resolved.device == "cpu":
            most = min(per_job, MAX_MLP_THREADS)
            why = (
                f"the learner's batches are large ({work / 1e6:.0f}M multiply-adds per forward "
                "pass), so more threads pay"
            )
            if most == 1:
                why += ", but this job has one core to itself"
        else:
            most = 1
            why = "vector observations: small MLPs run as fast on one thread, and runs "
            why += "sharing the machine do not slow each other down"
        threads = most
        compiled = cfg.compile != "none"
        if most > 1 and not cfg.deterministic and not compiled and cpu_load_readable():
            resolved.adaptive_threads = True
            threads = 1
            why += (
                f"; starts on 1 and uses up to {most} while no other process keeps these cores "
                f"busy (checked every {CHECK_INTERVAL_S:.0f} s: runs sharing cores would spin "
                "against each other)"
            )
        elif most > 1 and compiled:
            threads = 1
            why += (
                f"; fixed at 1 with hardware.compile={cfg.compile}, since every change of the "
                "thread count recompiles the compiled functions"
            )
        elif not image_obs and most > 1:
            threads = 1
            if cfg.deterministic:
                why += "; fixed at 1 with hardware.deterministic=true"
            else:
                why += "; fixed at 1 since the other load cannot be watched here"
        resolved.notes.append(
            f"torch threads: {'1-' + str(most) if resolved.adaptive_threads else threads} "
            f"(auto; {why}; set hardware.torch_threads=N to override)"
        )
        resolved.torch_threads = most if resolved.adaptive_threads else threads
    else:
        resolved.torch_threads = threads
        cores = available_cores()
        if threads > cores:
            resolved.notes.append(
                f"hardware.torch_threads={threads} is more than the {cores} core(s) this process "
                "may use: the extra threads only spin against the others (0 = auto)"
            )
    torch.set_num_threads(threads)
    return threads


def cpu_load_readable() -> bool:
    """Whether per-CPU busy times can be read (Linux /proc/stat via psutil)."""
    try:
        return len(psutil.cpu_times(percpu=True)) > 0 and hasattr(os, "sched_getaffinity")
    except (OSError, NotImplementedError, AttributeError):
        return False


def busy_cpu_seconds(cpus: list[int]) -> float:
    """CPU seconds spent busy (anything but idle and I/O wait; steal counts as busy: another
    guest had the core) on the CPUs ``cpus`` since boot."""
    per_cpu = psutil.cpu_times(percpu=True)
    total = 0.0
    for i in cpus:
        if i < len(per_cpu):
            t = per_cpu[i]
            total += sum(t) - t.idle - getattr(t, "iowait", 0.0)
            # guest time is already part of user time on Linux
            total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total


def family_cpu_seconds() -> float:
    """CPU seconds used by this process (all its threads) and its live descendants (env worker
    processes, A3C learners)."""
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system
    try:
        children = me.children(recursive=True)
    except psutil.Error:
        children = []
    for child in children:
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:  # it exited meanwhile
            continue
    return total


class ThreadGovernor:
    """Moves torch's intra-op thread count between 1 and ``most`` with the load that other
    processes put on this process's cores (issue #15: a solo SAC run on 2 threads takes 5 ms
    per gradient step instead of 9.5 ms, but two runs on two cores with 2 spinning OpenMP
    threads each took 126 ms).

    Every ``interval_s`` of wall time :meth:`tick` measures, over the last interval, the busy
    CPU time of the cores in this process's affinity minus what this process and its
    descendants used: the other load, in cores. Free cores = cores - other load; the target
    is ``int(free - reserved + 0.25)`` clamped to [1, most] (``reserved``: cores this run's
    env workers need; the 0.25 tolerates a little background noise). A lower target applies
    at once; a higher one (after the first check) only when two checks in a row agree, so two
    runs settle on one thread each instead of taking turns. The count changes only the speed
    here: the same gradient steps gave bit-identical parameters on 1 and 2 threads
    (tests/test_hardware.py), though torch does not promise that for every op;
    ``hardware.torch_threads=N`` fixes the count.

    ``busy``, ``own`` and ``clock`` are injectable for tests (seconds-valued callables).
    """

    def __init__(
        self,
        most: int,
        reserved: int = 0,
        interval_s: float = CHECK_INTERVAL_S,
        cpus: list[int] | None = None,
        busy: Callable[[list[int]], float] = busy_cpu_seconds,
        own: Callable[[], float] = family_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.most, self.reserved, self.interval_s = most, reserved, interval_s
        self.cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        self._busy, self._own, self._clock = busy, own, clock
        self.threads = torch.get_num_threads()
        # The first check may rise at once (a run alone gets its threads after one interval);
        # after that a rise needs two checks in a row.
        self._rises = 1
        self.other_load = 0.0  # cores, as of the last check
        self._last = (self._clock(), self._busy(self.cpus), self._own())

    def tick(self) -> int | None:
        """Check the load if an interval has passed; returns the new thread count when it
        changed (already set with torch.set_num_threads), else None."""
        now = self._clock()
        t0, busy0, own0 = self._last
        if now - t0 < self.interval_s:
            return None
        busy, own = self._busy(self.cpus), self._own()
        self._last = (now, busy, own)
        self.other_load = max((busy - busy0) - (own - own0), 0.0) / (now - t0)
        free = len(self.cpus) - self.other_load
        target = min(max(int(free - self.reserved + 0.25), 1), self.most)
        if target > self.threads:
            self._rises += 1
            if self._rises < 2:
                return None
        self._rises = 0
        if target == self.threads:
            return None
        self.threads = target
        torch.set_num_threads(target)
        return target


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
