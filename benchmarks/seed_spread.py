"""Measure the seed spread of the learning tests' configurations (issue #22).

Runs each named case of ``tests/learning_cases.py`` for seeds 1..N (two processes at a time by
default, each with one torch thread unless ``--threads`` says otherwise) and prints min / median /
max of the final eval return, the step the run stopped at and its wall time, so the thresholds and
the docstrings of the learning tests can be set from a measured distribution, not one lucky seed.

    python benchmarks/seed_spread.py --seeds 10                 # every case
    python benchmarks/seed_spread.py --seeds 10 dqn_cartpole    # one case
    python benchmarks/seed_spread.py --seeds 3 --threads 2      # the suite's seeds, two threads

Results also go to ``--out`` (JSON lines, one per run) so a long measurement can be resumed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from learning_cases import CASES, run_case


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", help=f"cases to run (default all): {', '.join(CASES)}")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("outputs/seed_spread.jsonl"))
    args = p.parse_args()
    names = args.cases or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; valid: {', '.join(CASES)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            d = json.loads(line)
            done.add((d["case"], d["seed"], d["threads"]))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    todo = [(n, s) for n in names for s in seeds if (n, s, args.threads) not in done]
    with ProcessPoolExecutor(args.jobs) as pool, args.out.open("a") as f:
        futures = [pool.submit(run_case, n, s, args.threads) for n, s in todo]
        for fut in futures:
            d = fut.result()
            f.write(json.dumps(d) + "\n")
            f.flush()
            print(json.dumps(d), flush=True)
    rows = [json.loads(line) for line in args.out.read_text().splitlines()]
    for n in names:
        sel = [r for r in rows if r["case"] == n and r["threads"] == args.threads]
        if not sel:
            continue
        ev = sorted(r["eval"] for r in sel)
        st = sorted(r["step"] for r in sel)
        wall = statistics.median(r["wall_s"] for r in sel)
        print(
            f"{n:32s} n={len(sel):2d} eval min/median/max {ev[0]:8.1f} "
            f"{statistics.median(ev):8.1f} {ev[-1]:8.1f}  step median {statistics.median(st):8.0f} "
            f"max {st[-1]:7d}  wall median {wall:6.1f}s"
        )


if __name__ == "__main__":
    main()
