# drlcli developer entry points. Everything installs into a local virtualenv ($(VENV)).
# The CPU build of torch is pinned and installed first: an unpinned torch would pull a
# multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= dev,sweep,bench,box2d,atari,mujoco,joblib,submitit,ray
STAMP := $(VENV)/.drlcli-installed
# The benchmarks' JAX peer (SBX) is large: only `make bench` installs it, not `make test`.
BENCH_EXTRAS ?= bench-jax
BENCH_STAMP := $(VENV)/.drlcli-bench-installed
# Exact versions of everything but torch, last known green (see constraints.txt; `make lock`).
CONSTRAINTS ?= constraints.txt

.PHONY: install run test test-slow lint format bench lock clean help

help:
	@echo "make run        install, then train PPO on CartPole (drl train algo=ppo env=cartpole)"
	@echo "make test       install, then run the test suite (fast tiers)"
	@echo "make test-slow  the slow learning tests"
	@echo "make lint       ruff (lint + format check) and mypy"
	@echo "make lock       refresh constraints.txt (the pinned versions make install uses)"
	@echo "make bench      drlcli vs Stable-Baselines3 (PPO, A2C, TRPO, DQN, SAC, TD3) and SBX (CrossQ), scaling tables"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c $(CONSTRAINTS) "$(TORCH_PIN)"
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e ".[$(EXTRAS),$(BENCH_EXTRAS)]"
	touch $(BENCH_STAMP)

run: install
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

# Re-resolve every dependency to the newest versions pyproject.toml allows, in a throwaway venv,
# and write them to constraints.txt. Then `make clean test` and commit constraints.txt if green.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q "$(TORCH_PIN)"
	.venv-lock/bin/python -m pip install -q ".[$(EXTRAS),$(BENCH_EXTRAS)]"
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-lock/bin/python -m pip freeze --exclude-editable \
	  | grep -v -i -E '^(torch|pip|setuptools|drlcli)(==| @)'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
