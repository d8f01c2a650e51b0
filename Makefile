# Catalens — `make help` lists the targets.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install up test browser promtool test-unit test-integration lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with catalens, the local stack and the dev tools

# torch==2.13.0 first: it is the CPU build on these machines, and installing it before
# anything that depends on torch keeps pip from pulling a CUDA build (several GB).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[local,dev]"
	touch $(STAMP)

up: $(STAMP) ## run the whole pipeline locally with a sample catalog (Ctrl-C stops it)
	$(VENV)/bin/catalens up

test: $(STAMP) browser promtool ## run all tests (unit + integration against the real broker and Milvus)
	$(PY) -m pytest

# The browser test drives Debian's Chromium (Playwright's own browser download cannot
# work offline). Installed when missing and apt-get can run; otherwise that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

# The monitoring tests check the alert rules and every dashboard query with promtool,
# which ships with Prometheus (Debian: prometheus). Installed like Chromium; else skipped.
promtool:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	  || echo "promtool not installed: the promtool checks will be skipped"; }

test-unit: $(STAMP) ## run the fast unit tests (no integration, no slow ones; make test runs those)
	$(PY) -m pytest -m "not integration and not slow"

test-integration: $(STAMP) ## run the integration tests only
	$(PY) -m pytest -m integration

lint: $(STAMP) ## ruff (lint + format check), import-linter (the floors) and mypy (package, tests, benchmarks)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests
	$(VENV)/bin/mypy bench

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

bench: $(STAMP) ## embedding throughput and latency, query latency, freshness, bulk ingest and embedder memory benchmarks (minutes)
	$(PY) bench/embed_throughput.py
	$(PY) bench/embed_throughput.py --catalog products
	$(PY) bench/embed_latency.py
	$(PY) bench/query_latency.py
	$(PY) bench/freshness.py
	$(PY) bench/ingest.py --products 10000
	$(PY) bench/memory.py --compare MAX_IN_FLIGHT_BYTES=1099511627776

clean: ## remove .venv and local state
	rm -rf $(VENV) .catalens
