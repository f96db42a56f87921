# Quick start:  make demo   (collector on SQLite + demo traffic)     make test   (every test)
# The interpreter the venv is built on (`make install PYTHON=...` to choose): tools/pick-python
# prefers a CPython built for speed, such as Debian's /usr/bin/python3, to pyenv's default build,
# which ran the collector about 10% slower end to end (docs/performance.md).
PYTHON ?= $(shell sh tools/pick-python)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck unit install bench clean system-deps

$(STAMP): pyproject.toml constraints.txt setup.py src/agent_otel/collector/pipeline/_spanscan.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

## Run the collector on the embedded SQLite default and send it demo traffic.
demo: $(STAMP)
	$(BIN)/agent-otel serve --demo 300

## Debian's prometheus (prometheus + promtool) for the observability tests; installed when missing and root.
system-deps:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's prometheus (promtool and the server) for the tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "note: install Debian's prometheus package (apt-get install prometheus) for the Prometheus tests"; fi; }

## The whole test suite: lint, types, then every test (PostgreSQL and Prometheus ones included).
test: $(STAMP) system-deps
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools && $(BIN)/ruff format --check src tests bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) agent-otel.db agent-otel.db-wal agent-otel.db-shm
