# Everything a newcomer needs: `make run` and `make test` set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test lint schema clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "usage-events needs Python 3.11 or newer (PYTHON=$(PYTHON))."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(INSTALLED)

install: $(INSTALLED)

## Migrate the database, make sure a demo business and key exist, and serve GraphQL.
run: $(INSTALLED)
	$(BIN)/usage-events demo --host $(HOST) --port $(PORT)
	exec $(BIN)/usage-events serve --host $(HOST) --port $(PORT)

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
