# Everything a fresh machine with Python >= 3.11 and make needs; each target builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: demo test lint bench build clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

## make demo: sync the shipped example twice; the second run must report 0 changes
demo: $(VENV)/.installed
	$(BIN)/python -m accoil_sync.demo

## make test: install with test extras and run the whole suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

## make lint: ruff (lint + format check) and mypy on the package
lint: $(STAMP)
	$(BIN)/ruff check accoil_sync tests bench
	$(BIN)/ruff format --check accoil_sync tests bench
	$(BIN)/mypy accoil_sync

## make bench: the benchmarks of BENCHMARKS.md at a size that runs in a minute (N=200000 for the full figure)
bench: $(STAMP)
	$(BIN)/python bench/plan_bench.py --users 100000

build: $(STAMP)
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) dist .accoil-sync .pytest_cache .mypy_cache .ruff_cache
