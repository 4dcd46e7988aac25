# One command to set up and run the pipeline, one to set up and run the tests.
# The environment is a virtualenv in .venv with every version pinned
# (pyproject.toml for direct dependencies, requirements/constraints.txt for all).

# The interpreter that creates the virtualenv, looked up before PATH changes below.
PYTHON ?= $(shell command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Everything make runs finds the virtualenv's tools first: `dvc`, and the
# `peru-sentiment` commands that DVC's stages call. Nothing needs activating.
export PATH := $(BIN):$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
# A profile (configs/profiles/<name>.yaml) to switch params.yaml to before `make repro`.
PROFILE ?=
# Debian packages the tests need: prometheus provides `prometheus` and `promtool`;
# chromium opens the HTML report headless; nginx is the reverse proxy of the deployment tests.
SYSTEM_PACKAGES := prometheus chromium nginx postgresql

.PHONY: setup system-deps repro test lint format serve lab clean

# A changed pin reinstalls into the existing virtualenv; it is created only once, so a
# `python3` other than the one that made it cannot half-rewrite it.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned dependencies

repro: setup  ## run the whole DVC pipeline (default, offline configuration); PROFILE=smoke switches first
	$(if $(PROFILE),peru-sentiment profile $(PROFILE))
	dvc repro

system-deps:  ## install the missing SYSTEM_PACKAGES with apt-get (as root, or through sudo)
	@missing="$$(for package in $(SYSTEM_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done)"; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null || { echo "warning: no apt-get; install $$missing yourself"; exit 0; }; \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: setup lint system-deps  ## lint and run the test suite
	pytest

lint: setup
	ruff check src tests serve benchmarks
	ruff format --check src tests serve benchmarks

format: setup
	ruff format src tests serve benchmarks
	ruff check --fix src tests serve benchmarks

serve: setup  ## serve the exported model (models/export/LATEST) on 127.0.0.1:8000
	SENTIMENT_MODEL_DIR=models/export gunicorn -c serve/gunicorn.conf.py

lab: setup  ## JupyterLab on the notebooks, reading this project's pipeline outputs
	jupyter lab notebooks/

clean:
	rm -rf $(VENV)
