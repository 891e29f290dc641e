"""Guards on the architecture (docs/design.md): the algorithm contract of issue #18."""

from __future__ import annotations

import ast
from pathlib import Path

from drlcli import registry

ALGOS = Path(__file__).resolve().parents[1] / "drlcli" / "algos"
RUNNER_SIDE = ("drlcli.envs", "drlcli.runner", "drlcli.cli", "drlcli.collector")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_algorithms_get_data_not_envs():
    """No module under drlcli/algos imports the env, runner, CLI or collector side, at the top
    or inside a function: algorithms receive spaces and VectorSteps (issue #18)."""
    offenders = {
        path.name: sorted(n for n in _imports(path) if n.startswith(RUNNER_SIDE))
        for path in sorted(ALGOS.glob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_registered_algorithm_declares_a_complete_spec():
    for name, spec in registry.specs().items():
        assert spec.name == name
        assert spec.action_spaces and spec.observation_spaces, name
        assert spec.family in ("on-policy", "off-policy", "asynchronous"), name
        assert callable(spec.factory) and spec.validate is not None, name
        assert getattr(spec.config, "name", None) == name or name == "ddpg", name
