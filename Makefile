# headstart: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-text demo-audio test test-fast lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/headstart fit examples/fashion-mnist-mini --backbone efficientnet_lite0 --out runs/demo --force

demo-text: setup
	$(BIN)/headstart fit examples/wordnet-supersenses --backbone minilm --out runs/demo-text --force

demo-audio: setup
	$(BIN)/headstart fit examples/fsdd-mini --out runs/demo-audio --force

lint: setup
	$(BIN)/ruff check src tests benchmarks examples

test: lint
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not e2e"

bench: setup
	$(BIN)/python benchmarks/feature_extraction.py
	$(BIN)/python benchmarks/training.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
