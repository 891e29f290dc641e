"""Atomic checkpoints, safe loading, retention and RNG round trips."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from drlcli import checkpoint as ckpt
from drlcli.errors import DrlError


def test_save_load_round_trip_weights_only(tmp_path):
    payload = {"algo": {"w": torch.arange(3.0)}, "rng": ckpt.rng_state(), "meta": [1, "x", None]}
    path = ckpt.save_checkpoint(tmp_path, 100, payload, keep_last=3)
    state = ckpt.load(path)
    assert state["step"] == 100 and state["format"] == "drlcli"
    torch.testing.assert_close(state["algo"]["w"], torch.arange(3.0))


def test_keep_last_and_latest(tmp_path):
    for step in (10, 20, 30, 40):
        ckpt.save_checkpoint(tmp_path, step, {"x": step}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [30, 40]
    assert ckpt.latest_loadable(tmp_path)["x"] == 40


def test_corrupt_newest_falls_back_to_previous(tmp_path):
    ckpt.save_checkpoint(tmp_path, 10, {"x": 10}, keep_last=0)
    ckpt.checkpoint_path(tmp_path, 20).write_bytes(b"\x80garbage")
    with pytest.raises(DrlError, match="corrupt"):
        ckpt.load(ckpt.checkpoint_path(tmp_path, 20))
    assert ckpt.latest_loadable(tmp_path)["x"] == 10


def test_foreign_and_missing_files_are_clear(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")
    with pytest.raises(DrlError, match="not a drlcli checkpoint"):
        ckpt.load(tmp_path / "foreign.pt")
    with pytest.raises(DrlError, match="does not exist"):
        ckpt.load(tmp_path / "missing.pt")
    with pytest.raises(DrlError, match="No loadable checkpoint"):
        ckpt.latest_loadable(tmp_path / "nothing")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "drlcli", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DrlError, match="could not be read"):
        ckpt.load(tmp_path / "evil.pt")


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 10, {"x": 10}, keep_last=0)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 20, {"x": 20}, keep_last=0)
    assert [p.name for p in tmp_path.iterdir()] == ["step_0000000010.pt"]  # no temp file left
    assert ckpt.latest_loadable(tmp_path)["x"] == 10


def test_rng_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    ckpt.save_checkpoint(tmp_path, 1, {"rng": ckpt.rng_state()}, keep_last=0)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(ckpt.latest_loadable(tmp_path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
