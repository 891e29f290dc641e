from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# In-process unit tests run torch on one thread, whatever the core count: their tensors are
# tiny, and OpenMP threads spinning against other processes (CI's other jobs, a second test
# run) made a 2 s test take 80 s. Runs through `drl` choose their own (hardware.choose_threads).
torch.set_num_threads(int(os.environ.get("DRL_TEST_TORCH_THREADS", "1")))


def drl_executable() -> str:
    """The installed console script, next to the interpreter running the tests."""
    exe = Path(sys.executable).with_name("drl")
    if exe.exists():
        return str(exe)
    found = shutil.which("drl")
    assert found, "the `drl` console script is not installed (run `make test`)"
    return found


@pytest.fixture
def drl() -> str:
    return drl_executable()


@pytest.fixture
def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("HYDRA_FULL_ERROR", None)
    return env


@pytest.fixture(autouse=True)
def _torch_linear_default():
    """In-process runs switch networks.linear to oneDNN on some CPUs (hardware.cpu_linear=auto);
    every test starts and ends with torch's default F.linear, so no test depends on the order."""
    from drlcli import networks

    networks.set_onednn_linear(False)
    yield
    networks.set_onednn_linear(False)
