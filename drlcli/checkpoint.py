"""Atomic checkpoint save / load.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then renamed
over its final name, so a crash mid-write leaves the previous checkpoint intact. Everything saved
is tensors, numbers, strings, lists and dicts, so loading uses ``weights_only=True`` (no
arbitrary pickled code runs from a checkpoint file).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from drlcli.errors import DrlError

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save ``obj`` to ``path`` through a temporary file and a rename, so a crash or
    SIGKILL mid-write never leaves a half-written checkpoint under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            _test_delay()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_writes = 0


def _test_delay() -> None:
    """Tests set DRLCLI_TEST_CKPT_WRITE_DELAY=SECONDS[:SKIP] to hold the (SKIP+1)-th checkpoint
    write open before its rename, so that they can kill the process mid-write."""
    global _writes
    _writes += 1
    spec = os.environ.get("DRLCLI_TEST_CKPT_WRITE_DELAY")
    if spec:
        seconds, _, skip = spec.partition(":")
        if _writes > int(skip or 0):
            import time

            time.sleep(float(seconds))


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only`` torch.load).

    Returns the payload dict (``config``, ``algo``, ``env``, ``rng``, ``schedule``, ``step``, ...).
    Raises DrlError when the file is missing, truncated/corrupt, or not a drlcli checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise DrlError(f"Checkpoint '{path}' does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise DrlError(
            f"Checkpoint '{path}' could not be read: it is truncated, corrupt or not a drlcli "
            f"checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != "drlcli":
        raise DrlError(f"'{path}' is not a drlcli checkpoint (no drlcli format marker).")
    return state


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    """``ckpt_dir/step_<10-digit step>.pt``: names sort by env step."""
    return ckpt_dir / f"step_{step:010d}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in ``ckpt_dir``, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def env_snapshot_path(path: Path) -> Path:
    """Where the (pickled, optional) env snapshot of checkpoint ``path`` lives."""
    return path.with_suffix(".envs.pkl")


def save_checkpoint(
    ckpt_dir: Path,
    step: int,
    payload: dict[str, Any],
    keep_last: int,
    env_snapshot: bytes | None = None,
) -> Path:
    """Write ``step_<N>.pt`` (and its env snapshot) atomically, then prune old ones. The snapshot
    is written first, so a complete checkpoint always has its snapshot beside it."""
    payload = {"format": "drlcli", "format_version": FORMAT_VERSION, "step": step, **payload}
    path = checkpoint_path(ckpt_dir, step)
    if env_snapshot is not None:
        atomic_write_bytes(env_snapshot, env_snapshot_path(path))
    atomic_save(payload, path)
    if keep_last > 0:
        for _, old in list_checkpoints(ckpt_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
            env_snapshot_path(old).unlink(missing_ok=True)
    return path


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename), as :func:`atomic_save`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(ckpt_dir: Path) -> list[Path]:
    """Delete temp files left by a process killed mid-write; returns what was removed."""
    if not ckpt_dir.is_dir():
        return []
    stale = [p for p in ckpt_dir.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]
    # An env snapshot whose checkpoint never made it to disk.
    stale += [
        p
        for p in ckpt_dir.glob("step_*.envs.pkl")
        if not p.with_name(p.name.replace(".envs.pkl", ".pt")).exists()
    ]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def latest_loadable(ckpt_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The newest checkpoint that loads; skips (and reports) unreadable ones."""
    errors = []
    for _, path in reversed(list_checkpoints(ckpt_dir)):
        try:
            state = load(path, map_location)
            state["_path"] = str(path)
            return state
        except DrlError as exc:
            errors.append(str(exc))
    detail = (" Tried: " + " ".join(errors)) if errors else ""
    raise DrlError(f"No loadable checkpoint in '{ckpt_dir}'.{detail}")


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU and CUDA) generator states, for an exact resume."""
    import random

    import numpy as np

    np_state: Any = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype("int64")),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states saved by :func:`rng_state`."""
    import random

    import numpy as np

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype("uint32"),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
