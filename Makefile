# The two commands of the README. Each sets up .venv when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/decay demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	deploy/prometheus/install.sh
	deploy/ui/install-chromium.sh
	$(BIN)/python -m pytest

clean:
	rm -rf var build *.egg-info .mypy_cache .ruff_cache .pytest_cache
