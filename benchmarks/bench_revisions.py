"""Training speed of this checkout against another revision, whole `drl train` runs (issue #18).

A refactor must not cost speed: this runs the same `drl train` commands with the code of two
directories (e.g. a worktree of the previous revision and this checkout), alternating A/B, one
torch thread each, and reports each run's training SPS (result.json) and the median ratio B/A.

    git worktree add --detach /tmp/drl-old <rev>
    python benchmarks/bench_revisions.py /tmp/drl-old . [--repeats 3] [--cases ppo a2c sac dqn]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# (name, overrides): the fast tiers' settings, budgets of a few seconds to a minute.
CASES = {
    "ppo": ["algo=ppo", "env=cartpole", "total_timesteps=40000"],
    "a2c": ["algo=a2c", "env=cartpole", "total_timesteps=40000"],
    "dqn": ["algo=dqn", "env=cartpole", "total_timesteps=15000"],
    "sac": ["algo=sac", "env=pendulum", "total_timesteps=3000"],
}


def run(code_dir: Path, overrides: list[str]) -> float:
    """Training SPS of one `drl train` run with ``code_dir``'s drlcli (via PYTHONPATH)."""
    drl = Path(sys.executable).with_name("drl")
    env = dict(os.environ, PYTHONPATH=str(code_dir.resolve()))
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [
                str(drl),
                "train",
                *overrides,
                "hardware.torch_threads=1",
                "eval.every=0",
                "checkpoint.every=0",
                "log.progress=none",
                f"hydra.run.dir={out}",
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=out,
        )
        return float(json.loads((Path(out) / "result.json").read_text())["sps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="baseline checkout (e.g. the previous revision)")
    parser.add_argument("b", type=Path, help="checkout under test (e.g. .)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    print(f"| case | SPS {args.a} (median) | SPS {args.b} (median) | ratio b/a |")
    print("|---|---|---|---|")
    for name in args.cases:
        sps: dict[str, list[float]] = {"a": [], "b": []}
        for i in range(args.repeats):
            order = ("a", "b") if i % 2 == 0 else ("b", "a")
            for which in order:
                sps[which].append(run(getattr(args, which), CASES[name]))
        a, b = statistics.median(sps["a"]), statistics.median(sps["b"])
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
