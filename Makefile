# Likeness: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

PACKAGES := libs/likeness/likeness libs/likeness_ml/likeness_ml services/gateway/gateway services/ingest/ingest \
	services/trainer/trainer services/renderer/renderer services/retention/retention cli/likeness_cli

.PHONY: venv proto lint typecheck test demo up down clean

venv: $(STAMP)

# torch goes in first, pinned: asked for indirectly, pip would pull a multi-GB CUDA build.
$(STAMP): requirements/dev.txt requirements/constraints.txt $(wildcard */*/pyproject.toml) cli/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements/dev.txt
	touch $@

proto: venv
	$(BIN)/python scripts/gen_proto.py
	$(BIN)/buf lint

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/buf lint

test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

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
