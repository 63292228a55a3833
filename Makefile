# The two commands of the README:  `make demo`  and  `make test`.
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(not (3,11) <= sys.version_info[:2] < (3,13))' 2>/dev/null && echo $$p && break; done)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo up test lint system-deps bench clean

$(BIN)/nudge: pyproject.toml
	@test -n "$(PYTHON)" || { echo "nudge needs Python 3.11 or 3.12 (Bytewax 0.21 wheels)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/nudge  ## the whole engine: embedded Redis, dataflow, API, REES46 sample replayed
	$(BIN)/nudge demo

up: $(BIN)/nudge
	$(BIN)/nudge up

lint: $(BIN)/nudge
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

system-deps:  ## redis-server, promtool and chromium from Debian, when missing and installable
	@.ci/system-deps

test: lint system-deps  ## ruff, mypy, then the whole pytest suite (unit, flow, integration on a real redis-server)
	$(BIN)/pytest

BENCHES := ingest dataflow identity decide products learning triggers trigger_lateness \
	scaling memory chaos freshness soak

bench: $(BIN)/nudge
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	for b in $(BENCHES); do $(BIN)/python -m bench.$$b || exit 1; done

clean:
	rm -rf $(VENV) .nudge .mypy_cache .ruff_cache .pytest_cache
