# Likeness: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

PACKAGES := libs/likeness/likeness libs/likeness_ml/likeness_ml libs/likeness_marks/likeness_marks services/gateway/gateway services/ingest/ingest \
	services/trainer/trainer services/renderer/renderer services/retention/retention cli/likeness_cli \
	devkit/likeness_dev clients/python/likeness_client

.PHONY: venv tools proto lint typecheck test test-chaos bench demo up down clean

venv: $(STAMP)

# torch goes in first, pinned: asked for indirectly, pip would pull a multi-GB CUDA build.
$(STAMP): requirements/dev.txt requirements/constraints.txt $(wildcard */*/pyproject.toml) cli/pyproject.toml devkit/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements/dev.txt
	touch $@

TOOLS := .venv-tools
# checkov pins its own dependencies (they clash with the dev venv's), so it gets a venv of its own.
tools: $(TOOLS)/.installed
$(TOOLS)/.installed: requirements/tools.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --upgrade pip
	$(TOOLS)/bin/pip install -q -r requirements/tools.txt
	touch $@

proto: venv
	$(BIN)/python scripts/gen_proto.py
	$(BIN)/buf lint

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/buf lint

test: venv tools
	$(BIN)/pytest $(PYTEST_ARGS)

# Every fault and load test, then the leak scans (about 7 min on 2 cores). `make test` runs the chaos_ci subset.
test-chaos: venv
	$(BIN)/pytest -m chaos tests/chaos $(PYTEST_ARGS)

# Every benchmark; writes bench/results.json and bench/results.md. BENCH_ARGS="--only envelope" or "--quick".
bench: venv
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# Brings up the whole stack, runs the journey (photos in, headshots out, person erased), takes it down.
demo: venv
	$(BIN)/likeness dev up
	$(BIN)/likeness demo --out out; status=$$?; $(BIN)/likeness dev down; exit $$status

up: venv
	$(BIN)/likeness dev up

down: venv
	$(BIN)/likeness dev down

clean:
	-$(BIN)/likeness dev down 2>/dev/null
	rm -rf .likeness out .pytest_cache .mypy_cache .ruff_cache
