# drlcli developer entry points. Everything installs into a local virtualenv ($(VENV)).
# The CPU build of torch is pinned and installed first: an unpinned torch would pull a
# multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= dev,sweep,bench,box2d,atari,mujoco,joblib,submitit,ray
STAMP := $(VENV)/.drlcli-installed

.PHONY: install run test test-slow lint format bench clean help

help:
	@echo "make run        install, then train PPO on CartPole (drl train algo=ppo env=cartpole)"
	@echo "make test       install, then run the test suite (fast tiers)"
	@echo "make test-slow  the slow learning tests"
	@echo "make lint       ruff (lint + format check) and mypy"
	@echo "make bench      drlcli vs Stable-Baselines3 (PPO, A2C, TRPO, DQN, SAC, TD3) and scaling tables"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH_PIN)"
	$(BIN)/python -m pip install -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

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

bench: install
	$(BIN)/python benchmarks/bench_ppo.py
	$(BIN)/python benchmarks/bench_offpolicy.py
	$(BIN)/python benchmarks/bench_onpolicy.py
	$(BIN)/python benchmarks/bench_scaling.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
