# soloops: `make run` to start, `make test` to check everything.
# Both create .venv and install on first use; later runs reuse it until
# pyproject.toml or constraints.txt change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run chat test lint typecheck pytest bench doctor install clean

run: $(STAMP)
	$(BIN)/soloops run

chat: $(STAMP)
	$(BIN)/soloops chat

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# `python -m bench --help` for options (--quick, --only GROUP). LangGraph, the peer of the
# approval row, goes into its own .venv-bench (langgraph==1.2.22,
# langgraph-checkpoint-sqlite==3.1.2; see bench/peers.py), never into .venv.
bench: $(STAMP)
	$(PIP) install -q -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python -m bench

doctor: $(STAMP)
	$(BIN)/soloops doctor

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "soloops needs Python 3.11 or newer: set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned to the CPU build: otherwise sentence-transformers pulls a CUDA build.
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
