# Everything a fresh machine with Python >= 3.11 and make needs; each target builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

CARDS := hubspot-app/src/app/cards
CARDS_STAMP := $(CARDS)/node_modules/.installed

.PHONY: demo test test-python test-card browser lint bench build clean

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

## make test: the Python suite (with a real headless browser) and the HubSpot app card's Vitest suite
test: test-python test-card

test-python: $(STAMP) browser
	ACCOIL_SYNC_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

## the details-page test drives Debian's chromium; install it when missing (root, or passwordless sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo "sudo -n" ); \
	  echo "installing Debian's chromium for the browser test"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

$(CARDS_STAMP): $(CARDS)/package.json $(CARDS)/package-lock.json
	# npm install, not npm ci: with npm's omit-lockfile-registry-resolved (set on some machines) ci refuses
	# the lock over other platforms' optional packages; --no-save installs what the lock pins, writes nothing
	cd $(CARDS) && npm install --no-audit --no-fund --no-save --loglevel=error
	touch $@

test-card: $(CARDS_STAMP)
	cd $(CARDS) && npx vitest run

## make lint: ruff (lint + format check) and mypy on the package
lint: $(STAMP)
	$(BIN)/ruff check accoil_sync tests bench
	$(BIN)/ruff format --check accoil_sync tests bench
	$(BIN)/mypy accoil_sync
	@if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint Dockerfile && echo "hadolint: Dockerfile clean"; \
	  else echo "hadolint has no wheel for this platform; Dockerfile not linted"; fi

## make bench: the benchmarks of BENCHMARKS.md at a size that runs in a minute (N=200000 for the full figure;
## bench/score_bench.py --users 63000 for the 10M-event scoring figure)
bench: $(STAMP)
	$(BIN)/python bench/plan_bench.py --users 100000
	$(BIN)/python bench/score_bench.py --users 6000 --days 90
	$(BIN)/python bench/score_floor.py --users 6000 --days 90

build: $(STAMP)
	$(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) $(CARDS)/node_modules dist .accoil-sync .pytest_cache .mypy_cache .ruff_cache
