"""Write tests/data/tuned_frozen.json: what each tuned set changes, for every algo x env pair.

For each pair, the config composed with its tuned set against the same pair composed without
one (``~tuned``); the keys whose values differ (dotted paths) and their tuned values. Generated
once from the tuned sets as they were before issue #18 reorganised them, and committed: the
test in tests/test_config.py composes every pair again and compares.

    PYTHONPATH=. python tests/data/freeze_tuned.py
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from drlcli import cli

OUT = Path(__file__).with_name("tuned_frozen.json")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted.key: leaf value}; lists are leaves."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def resolved(overrides: list[str]) -> dict[str, Any]:
    cfg = OmegaConf.to_container(cli._compose(overrides), resolve=True)
    return flatten(cfg)


def tuned_changes(algo: str, env: str) -> dict[str, Any]:
    """{key: value} the tuned set of (algo, env) changes; empty when none applies."""
    pair = [f"algo={algo}", f"env={env}"]
    with_set, without = resolved(pair), resolved([*pair, "~tuned"])
    assert with_set.keys() == without.keys(), (algo, env)
    return {k: v for k, v in with_set.items() if v != without[k]}


def freeze() -> dict[str, dict[str, Any]]:
    out = {}
    for algo, env in itertools.product(cli.group_options("algo"), cli.group_options("env")):
        changes = tuned_changes(algo, env)
        if changes:
            out[f"{algo} {env}"] = changes
    return out


if __name__ == "__main__":
    OUT.write_text(json.dumps(freeze(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
