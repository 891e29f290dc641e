"""The GPU path end to end (issue #15): drlcli eager vs compiled vs SB3 (and SBX) on one GPU.

Tasks, each with the settings drlcli applies by itself (conf/tuned/) and the peer given the same:
  sac-halfcheetah  SAC on HalfCheetah-v5, the RL Zoo's MuJoCo set (10k random steps, lr 3e-4,
                   batch 256, 256x256, automatic entropy, 1 env); 13k steps.
  td3-halfcheetah  TD3 on HalfCheetah-v5, the Zoo's MuJoCo set (10k random steps, lr 1e-3,
                   batch 256, 400x300, Gaussian noise 0.1); 13k steps.
  ppo-pong         PPO on ALE/Pong-v5 with the standard Atari preprocessing, the PPO paper's
                   set (8 envs x 128 steps, 4 epochs of 4 minibatches, Nature CNN); 20480 steps.
Implementations: ``drlcli`` (``hardware=cuda``, eager), ``drlcli-default`` and ``drlcli-ro``
(``hardware.compile=default`` / ``reduce-overhead``, the latter with CUDA graphs), ``sb3``
(Stable-Baselines3 on ``device="cuda"``) and ``sbx`` (SBX, JAX on the GPU; SAC and TD3 only).

drlcli runs go through the real command (``python -m drlcli train ... hardware=cuda``) in a
process of their own. Two speeds are reported: whole-process seconds (start-up, compilation and
the random-action phase included) and the steady SPS over a window that starts after the
compilation / jit warm-up (SAC/TD3: env steps 11k -> 13k; PPO: 4096 -> 20480), read from the
wall times of drlcli's TensorBoard ``charts/SPS`` points and from an SB3 callback for the peers.
Every run is seed 1 with the library's default torch thread count; runs go one at a time, and a
run that fails is reported with its error while the others go on.

    python benchmarks/bench_gpu.py [--tasks sac-halfcheetah ppo-pong]
        [--impls drlcli drlcli-default drlcli-ro sb3 sbx] [--budget-s 540] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# task -> (drlcli overrides, total steps, steady window start)
TASKS: dict[str, tuple[list[str], int, int]] = {
    "sac-halfcheetah": (["algo=sac", "env=halfcheetah"], 13_000, 11_000),
    "td3-halfcheetah": (["algo=td3", "env=halfcheetah"], 13_000, 11_000),
    "ppo-pong": (["algo=ppo", "env=pong"], 20_480, 4_096),
}
# --quick (a plumbing check on any machine): (total steps, window start) per task.
QUICK = {
    "sac-halfcheetah": (10_600, 10_200),
    "td3-halfcheetah": (10_600, 10_200),
    "ppo-pong": (4_096, 2_048),
}
DEVICE = os.environ.get("BENCH_GPU_DEVICE", "cuda")
COMPILE = {"drlcli": "none", "drlcli-default": "default", "drlcli-ro": "reduce-overhead"}
IMPLS = [*COMPILE, "sb3", "sbx"]


def steady_from_events(run_dir: Path, start: int) -> dict[str, float]:
    """Steady SPS between the first ``charts/SPS`` point at or after ``start`` and the last one,
    from the event wall times (each point is written right after an update)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: list[tuple[int, float]] = []
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "charts/SPS" in acc.Tags().get("scalars", []):
            points += [(e.step, e.wall_time) for e in acc.Scalars("charts/SPS")]
    points.sort()
    window = [p for p in points if p[0] >= start]
    if len(window) < 2:
        raise RuntimeError(f"too few charts/SPS points after step {start}: {points}")
    (s0, t0), (s1, t1) = window[0], window[-1]
    return {"steady_sps": (s1 - s0) / (t1 - t0), "window": [s0, s1]}


def budget(task: str) -> tuple[int, int]:
    """(total steps, steady window start) for ``task``, shortened by --quick."""
    _, steps, start = TASKS[task]
    return QUICK[task] if os.environ.get("BENCH_GPU_QUICK") else (steps, start)


def run_drlcli(task: str, impl: str) -> dict[str, Any]:
    overrides = TASKS[task][0]
    steps, start = budget(task)
    log_every = 100 if os.environ.get("BENCH_GPU_QUICK") else 1024 if "ppo" in task else 1000
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "drlcli",
            "train",
            *overrides,
            "hardware=cuda" if DEVICE.startswith("cuda") else "hardware=cpu",
            f"hardware.compile={COMPILE[impl]}",
            "seed=1",
            f"total_timesteps={steps}",
            f"log.every={log_every}",
            "eval.every=0",
            "eval.episodes=1",
            "checkpoint.every=0",
            "log.progress=none",
            f"hydra.run.dir={run_dir}",
        ]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"drl train failed ({out.returncode}):\n{out.stderr[-3000:]}")
        result = json.loads((run_dir / "result.json").read_text())
        r: dict[str, Any] = {"wall_s": wall, "steps": result.get("global_step", steps)}
        r.update(steady_from_events(run_dir, start))
        r["start_line"] = [ln for ln in out.stdout.splitlines() if "thread" in ln][:2]
    return r


def marks_callback(start: int, on_policy: bool) -> Any:
    """An SB3 callback that notes the wall time of the window's start and of the last update
    (SB3 is imported only in the peers' processes)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class _Marks(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.t_start: float | None = None
            self.s_start = 0

        def _mark(self) -> None:
            if self.t_start is None and self.num_timesteps >= start:
                self._sync()
                self.t_start, self.s_start = time.perf_counter(), self.num_timesteps

        def _sync(self) -> None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def _on_rollout_start(self) -> None:  # after the previous update (on-policy)
            if on_policy:
                self._mark()

        def _on_step(self) -> bool:
            if not on_policy:
                self._mark()
            return True

        def _on_training_end(self) -> None:
            self._sync()
            self.t_end, self.s_end = time.perf_counter(), self.num_timesteps

    return _Marks()


def run_peer(task: str, impl: str) -> dict[str, Any]:
    import gymnasium as gym
    import numpy as np

    steps, start = budget(task)
    t0 = time.perf_counter()
    model: Any
    if task == "ppo-pong":
        import ale_py
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        env = VecFrameStack(
            make_atari_env("ALE/Pong-v5", n_envs=8, seed=1, env_kwargs={"frameskip": 1}), 4
        )
        model = PPO(
            "CnnPolicy",
            env,
            n_steps=128,
            batch_size=256,
            n_epochs=4,
            learning_rate=lambda p: 2.5e-4 * p,
            clip_range=0.1,
            ent_coef=0.01,
            vf_coef=0.5,
            max_grad_norm=0.5,
            seed=1,
            device=DEVICE,
        )
    else:
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.noise import NormalActionNoise

        lib: Any
        if impl == "sbx":
            import sbx as lib
        else:
            import stable_baselines3 as lib
        env = make_vec_env("HalfCheetah-v5", n_envs=1, seed=1)
        extra: dict[str, Any] = {} if impl == "sbx" else {"device": DEVICE}
        if task == "sac-halfcheetah":
            model = lib.SAC(
                "MlpPolicy", env, learning_starts=10_000, learning_rate=3e-4, seed=1, **extra
            )
        else:
            n = env.action_space.shape[0]
            model = lib.TD3(
                "MlpPolicy",
                env,
                learning_starts=10_000,
                learning_rate=1e-3,
                batch_size=256,
                action_noise=NormalActionNoise(np.zeros(n), 0.1 * np.ones(n)),
                policy_kwargs={"net_arch": [400, 300]},
                seed=1,
                **extra,
            )
    marks = marks_callback(start, on_policy=task == "ppo-pong")
    model.learn(total_timesteps=steps, callback=marks)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "steps": int(model.num_timesteps),
        "steady_sps": (marks.s_end - marks.s_start) / (marks.t_end - marks.t_start),
        "window": [marks.s_start, marks.s_end],
        "device": str(getattr(model, "device", "jax")),
    }


def child(task: str, impl: str) -> None:
    fn = run_drlcli if impl in COMPILE else run_peer
    print("RESULT " + json.dumps(fn(task, impl)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["sac-halfcheetah", "ppo-pong"], choices=TASKS)
    p.add_argument("--impls", nargs="+", default=IMPLS, choices=IMPLS)
    p.add_argument("--budget-s", type=float, default=540.0, help="start no run after this")
    p.add_argument("--out", type=Path, default=None, help="write results.json and logs here")
    p.add_argument("--device", default="cuda", help="cuda (the point), or cpu for --quick")
    p.add_argument("--quick", action="store_true", help="tiny budgets: check the plumbing")
    p.add_argument("--child", nargs=2, metavar=("TASK", "IMPL"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ["BENCH_GPU_DEVICE"] = args.device
    if args.quick:
        os.environ["BENCH_GPU_QUICK"] = "1"
    deadline = time.monotonic() + args.budget_s
    results: dict[str, dict[str, Any]] = {}
    # The eager runs and their peers of every task first, then the compiled ones: what matters
    # most comes back even if the budget runs out.
    order = [(t, i) for t in args.tasks for i in args.impls if i in ("drlcli", "sb3")]
    order += [(t, i) for t in args.tasks for i in args.impls if i not in ("drlcli", "sb3")]
    for task, impl in order:
        if impl == "sbx" and task == "ppo-pong":
            continue
        left = deadline - time.monotonic()
        key = f"{task} {impl}"
        if left < 20:
            results[key] = {"error": "skipped: out of time"}
            continue
        cmd = [sys.executable, __file__, "--child", task, impl]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=left, check=False)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode == 0 and line:
                results[key] = json.loads(line[-1][7:])
            else:
                results[key] = {"error": (out.stdout + out.stderr)[-3000:]}
        except subprocess.TimeoutExpired:
            results[key] = {"error": f"timed out after {left:.0f} s"}
        r = results[key]
        if "error" in r:
            print(f"{key}: FAILED\n{r['error']}", flush=True)
        else:
            print(
                f"{key}: whole process {r['wall_s']:.1f} s, steady {r['steady_sps']:.0f} SPS "
                f"over steps {r['window']}",
                flush=True,
            )
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench_gpu.json").write_text(json.dumps(results, indent=1))
    print("\n| task | impl | whole process s | steady SPS | vs drlcli eager |")
    print("| --- | --- | ---: | ---: | ---: |")
    for key, r in results.items():
        task, impl = key.split()
        base = results.get(f"{task} drlcli", {}).get("steady_sps")
        if "error" in r:
            print(f"| {task} | {impl} | failed | | |")
            continue
        ratio = f"{r['steady_sps'] / base:.2f}x" if base else ""
        print(f"| {task} | {impl} | {r['wall_s']:.1f} | {r['steady_sps']:.0f} | {ratio} |")
    ok = [r["steady_sps"] for r in results.values() if "steady_sps" in r]
    if ok:
        print(
            f"(median steady SPS over all runs: {statistics.median(ok):.0f}; {os.cpu_count()} CPUs)"
        )


if __name__ == "__main__":
    main()
