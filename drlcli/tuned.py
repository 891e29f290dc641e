"""Which tuned set (``conf/tuned/<name>.yaml``) an (algo, env) pair gets (issue #18).

``conf/config.yaml`` selects ``optional tuned: ${algo}_${env}``. A pair without a file of its own
may share a family's set: a DQN variant uses DQN's (``double_dqn`` x ``cartpole`` ->
``dqn_cartpole``), an Atari game the generic Atari set (``ppo`` x ``pong`` -> ``ppo_atari``), a
MuJoCo task the MuJoCo set (``sac`` x ``hopper`` -> ``sac_mujoco``). Those names are registered in
Hydra's ConfigStore as one-line configs that include the shared file, so the choice works in
single runs and sweeps alike (``drl train -m algo=dqn,double_dqn``) and ``tuned=<pair>`` still
names it. The families are listed here, not derived from the algo configs' defaults lists: a
wider fallback would hand sets to pairs that had none (``ppo_kl`` x ``lunarlander`` would get
PPO's), and tests/test_config.py checks every pair's resolved config against a frozen copy.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from hydra.core.config_store import ConfigStore

# Variant -> the algorithm whose tuned sets it shares.
ALGO_FAMILY: dict[str, str] = {"double_dqn": "dqn", "dueling_dqn": "dqn", "rainbow_lite": "dqn"}
# Env -> the family name its tuned sets are filed under (conf/tuned/<algo>_<family>.yaml).
ENV_FAMILY: dict[str, str] = {
    "breakout": "atari",
    "pong": "atari",
    "ant": "mujoco",
    "halfcheetah": "mujoco",
    "hopper": "mujoco",
    "walker2d": "mujoco",
}


def tuned_set_name(algo: str, env: str, files: Collection[str]) -> str | None:
    """The tuned file (name without ``.yaml``) for ``algo`` x ``env``, given the names in
    ``conf/tuned``: the first that exists of ``<algo>_<env>``, ``<algo>_<env family>``,
    ``<algo family>_<env>``, ``<algo family>_<env family>``; None when none does. Raises
    nothing."""
    algos = [algo, ALGO_FAMILY.get(algo, algo)]
    envs = [env, ENV_FAMILY.get(env, env)]
    for a in dict.fromkeys(algos):
        for e in dict.fromkeys(envs):
            if f"{a}_{e}" in files:
                return f"{a}_{e}"
    return None


def shared_tuned_sets(conf_dir: Path) -> dict[str, str]:
    """{``<algo>_<env>``: shared file name} for every pair of ``conf/algo`` x ``conf/env``
    options with no tuned file of its own but a family's. Reads file names only."""
    files = {p.stem for p in (conf_dir / "tuned").glob("*.yaml")}
    algos = [p.stem for p in (conf_dir / "algo").glob("*.yaml")]
    envs = [p.stem for p in (conf_dir / "env").glob("*.yaml")]
    out = {}
    for algo in algos:
        for env in envs:
            name = tuned_set_name(algo, env, files)
            if name is not None and name != f"{algo}_{env}":
                out[f"{algo}_{env}"] = name
    return dict(sorted(out.items()))


def register_shared_tuned_sets(conf_dir: Path) -> None:
    """Store each shared pair as ``tuned/<algo>_<env>``: a config whose defaults list is the
    shared file, at the global package like the files. Idempotent."""
    cs = ConfigStore.instance()
    for name, shared in shared_tuned_sets(conf_dir).items():
        cs.store(
            group="tuned", name=name, node={"defaults": [shared, "_self_"]}, package="_global_"
        )
