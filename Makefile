# drlcli developer entry points. Everything installs into a local virtualenv ($(VENV)).
# torch is pinned and installed first, from TORCH_INDEX when set: which build (CPU or CUDA)
# `pip install torch==X` resolves to depends on the package index, not on this file. On a
# standard Linux machine the default index serves the CUDA build (~19 NVIDIA packages, GBs);
# for the CPU build pass PyTorch's CPU wheel index, e.g. make run TORCH_INDEX=<url>/whl/cpu
# (the --index-url that PyTorch's install selector gives; .../whl/cu126 etc. for CUDA).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
TORCH_INDEX ?=
# What `make run` installs: training only. The test, lint and bench targets add EXTRAS.
EXTRAS ?= dev,tune,bench,box2d,atari,mujoco,envpool,joblib,submitit,ray
comma := ,
BASE_STAMP := $(VENV)/.drlcli-base
STAMP := $(VENV)/.drlcli-extras-$(subst $(comma),-,$(EXTRAS))
# The benchmarks' JAX peer (SBX) is large: only `make bench` installs it, not `make test`.
BENCH_EXTRAS ?= bench-jax
BENCH_STAMP := $(VENV)/.drlcli-bench-installed
# Exact versions of everything but torch, last known green (see constraints.txt; `make lock`).
CONSTRAINTS ?= constraints.txt

.PHONY: install install-base run test test-slow lint format bench bench-gpu lock clean help

help:
	@echo "make run        install the training deps, then train PPO on CartPole"
	@echo "make install    install with every extra (EXTRAS=$(EXTRAS))"
	@echo "make test       install with EXTRAS, then run the test suite (fast tiers)"
	@echo "make test-slow  the slow learning tests"
	@echo "make lint       ruff (lint + format check) and mypy"
	@echo "make lock       refresh constraints.txt (the pinned versions make install uses)"
	@echo "make bench      drlcli vs Stable-Baselines3 (PPO, A2C, TRPO, DQN, SAC, TD3), SBX (CrossQ), scaling tables and the networks.py speed tricks"
	@echo "make bench-gpu  on a CUDA machine: eager vs compiled vs SB3/SBX (SAC HalfCheetah, PPO Pong)"
	@echo "TORCH_INDEX=URL the package index torch is installed from (CPU or CUDA build; see top)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c $(CONSTRAINTS) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_PIN)"
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e .
	touch $(BASE_STAMP)

$(STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $(STAMP)

install-base: $(BASE_STAMP)

install: $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e ".[$(EXTRAS),$(BENCH_EXTRAS)]"
	touch $(BENCH_STAMP)

run: install-base
	$(BIN)/drl train algo=ppo env=cartpole

test: install
	$(BIN)/python -m pytest -q -m "not slow" tests

test-slow: install
	$(BIN)/python -m pytest -q -m slow tests

lint: install
	$(BIN)/ruff check drlcli tests benchmarks
	$(BIN)/ruff format --check drlcli tests benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix drlcli tests benchmarks
	$(BIN)/ruff format drlcli tests benchmarks

bench: install $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_ppo.py
	$(BIN)/python benchmarks/bench_offpolicy.py
	$(BIN)/python benchmarks/bench_onpolicy.py
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_compile.py
	$(BIN)/python benchmarks/bench_tricks.py

# On a machine with a CUDA GPU (and a CUDA build of torch: see TORCH_INDEX above): eager vs
# compiled drlcli vs SB3 / SBX on SAC HalfCheetah and PPO Pong (benchmarks/bench_gpu.py).
bench-gpu: install $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_gpu.py
	$(BIN)/python benchmarks/bench_compile.py --device cuda --modes default reduce-overhead

# Re-resolve every dependency to the newest versions pyproject.toml allows, in a throwaway venv,
# and write them to constraints.txt. Then `make clean test` and commit constraints.txt if green.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_PIN)"
	.venv-lock/bin/python -m pip install -q ".[$(EXTRAS),$(BENCH_EXTRAS)]"
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-lock/bin/python -m pip freeze --exclude-editable \
	  | grep -v -i -E '^(torch|pip|setuptools|drlcli)(==| @)'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
