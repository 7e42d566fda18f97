# vitaltwin — every target creates and uses .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo examples browser test test-fast bench lint security docs lock verify clean

# Exact versions from requirements.lock (reproducible), then vitaltwin itself without resolving.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## The live demo ward: the service and its dashboard with 24 virtual patients; prints the URL.
demo: $(STAMP)
	$(BIN)/vitaltwin demo

## The example scenarios (both fidelities) and the verification table; prints where the plots are.
examples: $(STAMP)
	$(BIN)/vitaltwin examples --out out/examples

## Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser:
	test -x /usr/bin/chromium || apt-get install -y chromium

## Run the whole test suite (fails on any failure, and when no test ran).
test: $(STAMP) browser
	$(BIN)/python -m pytest

## The quick check: everything not marked slow (a few minutes).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## Benchmarks: each figure printed with its in-run baseline. Every CPU core is exposed to JAX as
## a device so the batch is split across cores (see the docs, "Performance").
bench: $(STAMP)
	XLA_FLAGS="--xla_force_host_platform_device_count=$$(nproc)" $(BIN)/python bench/bench_beat_model.py
	XLA_FLAGS="--xla_force_host_platform_device_count=$$(nproc)" $(BIN)/python bench/bench_ward_model.py
	XLA_FLAGS="--xla_force_host_platform_device_count=$$(nproc)" $(BIN)/python bench/bench_twin.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_dashboard.py

## ruff (lint + format check), mypy (strict), the layer contracts and the private-module rule.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools examples docs/hooks
	$(BIN)/ruff format --check src tests bench tools examples docs/hooks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/check_private_imports.py

## Security checks (CI runs them): bandit over the library; a CycloneDX SBOM of the installed
## environment (out/sbom.cdx.json); pip-audit of the locked dependencies against PyPI's advisories
## (where the network cannot reach PyPI's JSON API it lists each package it could not audit).
security: $(STAMP)
	$(BIN)/bandit -q -c pyproject.toml -r src
	mkdir -p out
	$(BIN)/cyclonedx-py environment --pyproject pyproject.toml --of JSON --output-reproducible -o out/sbom.cdx.json $(BIN)/python
	$(BIN)/pip-audit -r requirements.lock --no-deps --progress-spinner off -o out/pip-audit.txt; rc=$$?; cat out/pip-audit.txt; \
	  echo "pip-audit: $$(grep -c 'could not be audited' out/pip-audit.txt || true) of $$(grep -c '==' requirements.lock) locked packages could not be looked up from here"; exit $$rc

## The documentation site (MkDocs, strict: a broken link or reference fails).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir out/site

## Regenerate requirements.lock from pyproject.toml's ranges in a fresh environment.
lock:
	rm -rf out/lock-venv
	$(PYTHON) -m venv out/lock-venv
	out/lock-venv/bin/python -m pip install --quiet --upgrade pip
	out/lock-venv/bin/python -m pip install --quiet '.[dev,docs]'
	out/lock-venv/bin/python -m pip freeze --exclude vitaltwin > requirements.lock
	rm -rf out/lock-venv

verify: $(STAMP)
	$(BIN)/vitaltwin verify --json out/verification.json

clean:
	rm -rf $(VENV) out build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
