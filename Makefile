# vitaltwin — every target creates and uses .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint verify clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the example scenarios and the verification table; print where the plots are.
demo: $(STAMP)
	$(BIN)/vitaltwin demo --out out/demo

## Run the whole test suite (fails on any failure, and when no test ran).
test: $(STAMP)
	$(BIN)/python -m pytest

## Benchmarks: each figure printed with its in-run baseline. Every CPU core is exposed to JAX as
## a device so the batch is split across cores (see README, "Performance").
bench: $(STAMP)
	XLA_FLAGS="--xla_force_host_platform_device_count=$$(nproc)" $(BIN)/python bench/bench_beat_model.py
	XLA_FLAGS="--xla_force_host_platform_device_count=$$(nproc)" $(BIN)/python bench/bench_ward_model.py
	XLA_FLAGS="--xla_force_host_platform_device_count=$$(nproc)" $(BIN)/python bench/bench_twin.py
	$(BIN)/python bench/bench_ingest.py

## ruff (lint + format check) and mypy (strict).
lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy

verify: $(STAMP)
	$(BIN)/vitaltwin verify --json out/verification.json

clean:
	rm -rf $(VENV) out build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
