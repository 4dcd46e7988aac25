# One command to set up and run the pipeline, one to set up and run the tests.
# The environment is a virtualenv in .venv with every version pinned
# (pyproject.toml for direct dependencies, requirements/constraints.txt for all).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the tests need: prometheus provides `prometheus` and `promtool`;
# chromium opens the HTML report headless; nginx is the reverse proxy of the deployment tests.
SYSTEM_PACKAGES := prometheus chromium nginx

.PHONY: setup system-deps repro test lint format clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned dependencies

repro: setup  ## run the whole DVC pipeline (default, offline configuration)
	$(BIN)/dvc repro

system-deps:  ## install the missing SYSTEM_PACKAGES with apt-get (as root, or through sudo)
	@missing="$$(for package in $(SYSTEM_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done)"; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null || { echo "warning: no apt-get; install $$missing yourself"; exit 0; }; \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: setup lint system-deps  ## lint and run the test suite
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests serve benchmarks
	$(BIN)/ruff format --check src tests serve benchmarks

format: setup
	$(BIN)/ruff format src tests serve benchmarks
	$(BIN)/ruff check --fix src tests serve benchmarks

clean:
	rm -rf $(VENV)
