# One command to set up and run the pipeline, one to set up and run the tests.
# The environment is a virtualenv in .venv with every version pinned
# (pyproject.toml for direct dependencies, requirements/constraints.txt for all).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps repro test lint format clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned dependencies

repro: setup  ## run the whole DVC pipeline (default, offline configuration)
	$(BIN)/dvc repro

system-deps:  ## Chromium for the report test (Debian/Ubuntu, as root); skipped when already installed
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

test: setup system-deps lint  ## lint and run the test suite
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: setup
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV)
