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

# The dev targets run against the dev servers, as development, said explicitly: an unset LIKENESS_ENV means
# production, which refuses their plaintext endpoints and development secrets.
DEV_TARGETS := test test-unit test-integration test-vault-k8s test-chaos bench demo up down clean
$(DEV_TARGETS): export LIKENESS_ENV := development

.PHONY: venv tools lock lock-check lock-verify system-packages python-venv kube-apiserver proto lint typecheck test test-unit \
	test-integration test-vault-k8s test-chaos bench demo up down clean

venv: $(STAMP)

# Every third-party distribution from requirements/dev.lock.txt, each checked against its hashes (torch: the
# local CPU wheel, 2.13.0+cpu; pip and setuptools too), then the monorepo's packages editable, without
# dependencies, built with the locked setuptools; pip check fails if a pyproject declares what the lock lacks.
$(STAMP): requirements/dev.lock.txt requirements/dev.txt $(wildcard */*/pyproject.toml) cli/pyproject.toml devkit/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements/dev.lock.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation $$(grep '^-e ' requirements/dev.txt)
	$(BIN)/pip check
	touch $@

TOOLS := .venv-tools
# checkov pins its own dependencies (they clash with the dev venv's), so it gets a venv of its own.
tools: $(TOOLS)/.installed
$(TOOLS)/.installed: requirements/tools.lock.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --require-hashes -r requirements/tools.lock.txt
	touch $@

# Every lock from the pyproject files, requirements/{dev,tools}.txt and requirements/constraints.txt, with the
# uv of .venv-tools (scripts/lock.py): requirements/dev.lock.txt, tools.lock.txt and images/*.txt. Pins already
# in a lock are kept; LOCK_ARGS=--upgrade moves every unpinned dependency to its newest release.
lock: venv tools
	$(BIN)/python scripts/lock.py compile $(LOCK_ARGS)

# Offline, under a second: every entry pinned with hashes, every declared dependency locked, no input changed.
lock-check: venv
	$(BIN)/python scripts/lock.py check

# Recompiles every lock into a temporary directory and diffs them with the committed ones (needs PyPI).
lock-verify: venv tools
	$(BIN)/python scripts/lock.py verify

# System packages beyond Python (Debian's, or Homebrew's): installed when missing and permitted (root, or
# passwordless sudo); otherwise make stops here, naming what is missing and the command that installs it.
# INSTALL_SYSTEM_PACKAGES=no only checks. The tests need exiftool (ingest) and prometheus with promtool.
INSTALL_SYSTEM_PACKAGES ?= yes
SYSTEM_PACKAGES = PYTHON=$(PYTHON) scripts/install-system-packages.sh \
	$(if $(filter no,$(INSTALL_SYSTEM_PACKAGES)),--check) --for "make $(or $(MAKECMDGOALS),venv)"

system-packages:
	@$(SYSTEM_PACKAGES) python-venv exiftool prometheus promtool

# Debian's python3.11 makes venvs only with python3.11-venv: checked before a venv is made (a failed
# `python -m venv` leaves a venv without pip behind).
python-venv:
	@$(SYSTEM_PACKAGES) python-venv
$(STAMP) $(TOOLS)/.installed: | python-venv

# kube-apiserver 1.20.2 and etcd, for tests/k8s (Vault's Kubernetes login against a real API server). No
# registry offers the binary: scripts/build-kube-apiserver.sh builds it from Debian's kubernetes source package
# with Debian's Go, once, into a cache outside the repository (its --print-dir; ~/.cache/likeness/kube/1.20.2):
# about 6 to 9 minutes on 2 cores the first time, nothing after. The build's system packages (Go, dpkg-dev, a
# deb-src entry...) are installed only when a build is due; etcd is Debian's etcd-server.
kube-apiserver:
	@$(SYSTEM_PACKAGES) etcd
	@scripts/build-kube-apiserver.sh --check >/dev/null 2>&1 || { \
		$(SYSTEM_PACKAGES) go dpkg-source rsync reflect2-source kubernetes-source && scripts/build-kube-apiserver.sh; }

proto: venv
	$(BIN)/python scripts/gen_proto.py
	$(BIN)/buf lint

lint: venv typecheck lock-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/buf lint

typecheck: venv
	$(BIN)/mypy $(PACKAGES)

# Two tiers, chosen by fixture (likeness_dev.testing): a test that requests `infra` (or anything built on
# it) or `server_process` is an integration test; every other test is a unit test, and starting a server
# fails it. The unit tier also runs in a network namespace of its own where one can be made (Linux, as root
# or with unprivileged user namespaces): no server started there can be reached, nor anything outside.
UNIT_NETNS = $(shell if unshare --net true 2>/dev/null; then echo unshare --net; \
	elif unshare --user --map-current-user --net true 2>/dev/null; then echo unshare --user --map-current-user --net; fi)
# The unit tier is CPU-bound: one pytest-xdist worker per core (at most 4), a file's tests kept together
# (module fixtures load once), and one torch thread each, so that workers do not fight over the cores.
# UNIT_XDIST= runs it in one process (for --pdb, say).
UNIT_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 4 ? 4 : n )))
UNIT_XDIST = $(shell $(BIN)/python -c 'import xdist' 2>/dev/null && echo yes)
TEST_UNIT = $(UNIT_NETNS) env $(if $(UNIT_XDIST),OMP_NUM_THREADS=1) $(BIN)/pytest --tier unit \
	$(if $(UNIT_XDIST),--numprocesses=$(UNIT_WORKERS) --dist=loadfile) $(PYTEST_ARGS)
TEST_INTEGRATION = $(BIN)/pytest --tier integration $(PYTEST_ARGS)

# Every test: the unit tier, then the integration tier (both run, whatever the first gives).
test: system-packages venv tools kube-apiserver
	$(TEST_UNIT); unit=$$?; \
	$(TEST_INTEGRATION); integration=$$?; \
	if (( unit || integration )); then echo "make test: unit tier exit $$unit, integration tier exit $$integration"; fi; \
	exit $$(( unit ? unit : integration ))

# The tests that start no server (under 90 s on 2 cores).
test-unit: system-packages venv tools
	$(TEST_UNIT)

test-integration: system-packages venv tools kube-apiserver
	$(TEST_INTEGRATION)

# Vault's rights per identity against OpenBao, and its Kubernetes login against a real kube-apiserver (both
# also run in the integration tier; about 1 minute once kube-apiserver is built).
test-vault-k8s: venv kube-apiserver
	$(BIN)/pytest --tier integration tests/k8s tests/test_vault_policies_e2e.py $(PYTEST_ARGS)

# Every fault and load test (the bigger stack too: clustered NATS, a persistent OpenBao, two replicas of each
# service), then the leak scans (10 to 25 min on 2 cores). `make test` runs the chaos_ci subset.
test-chaos: venv
	$(BIN)/pytest -m chaos tests/chaos $(PYTEST_ARGS)

# Every benchmark; writes bench/results.json and bench/results.md. BENCH_ARGS="--only envelope" or "--quick".
bench: venv
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# Brings up the whole stack, runs the journey (photos in, headshots out, person erased), takes it down.
demo: python-venv venv
	$(BIN)/likeness dev up
	$(BIN)/likeness demo --out out; status=$$?; $(BIN)/likeness dev down; exit $$status

up: venv
	$(BIN)/likeness dev up

down: venv
	$(BIN)/likeness dev down

clean:
	-$(BIN)/likeness dev down 2>/dev/null
	rm -rf .likeness out .pytest_cache .mypy_cache .ruff_cache
