# Everything a newcomer needs: `make run` and `make test` set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# Options of `make bench-peer`, e.g. PEER_ARGS=--quick or PEER_ARGS="--workers 2".
PEER_ARGS ?=
# Options of `make bench-workers`, e.g. WORKERS_ARGS=--quick or WORKERS_ARGS="--workers 4".
WORKERS_ARGS ?=
# Options of `make bench-instructions`, e.g. INSTRUCTIONS_ARGS="--served --requests 1000".
INSTRUCTIONS_ARGS ?=
BENCH_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export BENCH_POSTGRES_URL
UPGRADE_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/test
# What the benchmark needs beyond `make install`: wrk, from Debian's packages.
BENCH_WRK = command -v wrk >/dev/null 2>&1 || { \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }

# uv installs exactly what uv.lock says. It is itself pinned and kept in a folder of its
# own, so a fresh machine needs nothing but Python to start.
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# The Python given, never one uv would download; the environment is .venv.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install upgrade run test lint schema clean bench bench-quick bench-profile bench-memory
.PHONY: bench-peer bench-workers bench-instructions
.PHONY: graphiql-assets

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "usage-events needs Python 3.11 or newer (PYTHON=$(PYTHON))."; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# --locked: install the lock as it is, and fail if pyproject.toml asks for something else.
$(INSTALLED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --quiet --python $(PYTHON)
	@touch $(INSTALLED)

install: $(INSTALLED)

## Move every dependency to the newest release its pin allows, then run lint and every test,
## PostgreSQL included (USAGE_EVENTS_TEST_POSTGRES_URL, by default UPGRADE_POSTGRES_URL).
upgrade: $(UV)
	$(UV) lock --upgrade --python $(PYTHON)
	$(MAKE) lint
	USAGE_EVENTS_TEST_POSTGRES_URL="$${USAGE_EVENTS_TEST_POSTGRES_URL:-$(UPGRADE_POSTGRES_URL)}" \
	USAGE_EVENTS_TEST_REQUIRE_POSTGRES=1 $(MAKE) test

## Migrate the database, make the demo business once, print a fresh key for it (revoking
## older ones), and serve GraphQL on HOST:PORT: `make run PORT=8001 HOST=0.0.0.0`.
## A taken port is reported before anything is written.
run: $(INSTALLED)
	exec $(BIN)/usage-events demo --serve --host $(HOST) --port $(PORT)

## The whole test suite; PostgreSQL tests run when USAGE_EVENTS_TEST_POSTGRES_URL is set.
test: $(INSTALLED)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Write schema.graphql from the code.
schema: $(INSTALLED)
	$(BIN)/usage-events export-schema

## Refresh graph/graphiql_assets/ from the npm packages pinned in scripts/graphiql_assets.py
## (needs npm); the same version must come back with the same sha256s.
graphiql-assets: $(INSTALLED)
	$(BIN)/python scripts/graphiql_assets.py

## The benchmark of SPEC §13 (BENCHMARKS.md): 1 000 000 events on SQLite and on PostgreSQL.
## BENCH_POSTGRES_URL names a database to CREATE DATABASE from; without PostgreSQL it is skipped.
bench: $(INSTALLED)
	@$(BENCH_WRK)
	BENCH_COMMAND="make bench" $(BIN)/python -m bench run

## The same on 20 000 events, in under two minutes.
bench-quick: $(INSTALLED)
	@$(BENCH_WRK)
	BENCH_COMMAND="make bench-quick" $(BIN)/python -m bench run --quick

## The service beside PostGraphile 5 on the same PostgreSQL rows, one process each: req/s,
## p50/p99, server CPU per request, asyncpg floor (1 000 000 events; PEER_ARGS=--quick:
## 20 000). Installs PostGraphile and its Node.js into bench/peer/ from its lock (needs npm).
bench-peer: $(INSTALLED)
	@$(BENCH_WRK)
	BENCH_COMMAND="make bench-peer$(if $(PEER_ARGS), PEER_ARGS='$(PEER_ARGS)')" \
		$(BIN)/python -m bench peer $(PEER_ARGS)

## `serve --workers N` (default: one per core) against one worker, on PostgreSQL: req/s, and
## where the machine's CPU went (the service, PostgreSQL, the rest) beside its ceiling.
bench-workers: $(INSTALLED)
	@$(BENCH_WRK)
	BENCH_COMMAND="make bench-workers$(if $(WORKERS_ARGS), WORKERS_ARGS='$(WORKERS_ARGS)')" \
		$(BIN)/python -m bench workers $(WORKERS_ARGS)

## Peak memory of one server process under 10 maximum-size batches at once, on SQLite and
## PostgreSQL, with and without the bound on large bodies (USAGE_EVENTS_MAX_LARGE_REQUESTS).
bench-memory: $(INSTALLED)
	$(BIN)/python -m bench.large_batches --postgres-url $(BENCH_POSTGRES_URL)

## Where each scenario's time goes, by layer (pyinstrument, in process, quick data set).
bench-profile: $(INSTALLED)
	$(BIN)/python -m bench profile

## Instructions per request (valgrind's callgrind), in process or served (INSTRUCTIONS_ARGS=--served):
## steady where CPU seconds drift.
bench-instructions: $(INSTALLED)
	$(BIN)/python -m bench instructions $(INSTRUCTIONS_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache .hypothesis
