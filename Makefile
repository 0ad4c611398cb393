# The two commands of the README. Each sets up .venv when it is missing or stale:
# `make demo` installs the runtime and the CDNOW data (the `demo` extra, no TensorFlow),
# `make test` everything (the `train` and `dev` extras).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --progress-bar on

.PHONY: demo test lint clean

$(VENV)/.demo-stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[demo]"
	touch $@

$(VENV)/.test-stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[train,dev]"
	touch $@

demo: $(VENV)/.demo-stamp
	$(BIN)/decay demo

lint: $(VENV)/.test-stamp
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	deploy/prometheus/install.sh
	deploy/ui/install-chromium.sh
	$(BIN)/python -m pytest

clean:
	rm -rf var build *.egg-info .mypy_cache .ruff_cache .pytest_cache
