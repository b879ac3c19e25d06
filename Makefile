# Two commands do everything from a fresh clone: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SEED ?= 42

.PHONY: run test install install-test browser lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## make run: install, migrate, load the demo store when the database is empty, serve.
run: install
	$(BIN)/regulars db upgrade
	$(BIN)/regulars demo --seed $(SEED) --if-empty
	@echo "Dashboard: http://$(HOST):$(PORT)/ - sign in as owner@demo.regulars.dev, password regulars-demo"
	@echo "  (one demo user per role: owner@, admin@, marketer@, agent@, analyst@demo.regulars.dev)"
	$(BIN)/regulars serve --host $(HOST) --port $(PORT)

## make test: install the test tools, lint, type-check, run every test.
test: install-test browser lint typecheck pytest

## Debian's Chromium for the dashboard's browser tests (Playwright drives /usr/bin/chromium).
browser:
	@test -x /usr/bin/chromium || (command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))) || \
	  (echo "install Debian's chromium package (apt-get install chromium)" && exit 1)

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -n 2 --dist loadfile

bench: install-test
	$(BIN)/python -m bench.ingest --quick
	$(BIN)/python -m bench.import_events --quick
	$(BIN)/python -m bench.segments --quick
	$(BIN)/python -m bench.messages --quick
	$(BIN)/python -m bench.journeys --quick
	$(BIN)/python -m bench.dashboard --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
