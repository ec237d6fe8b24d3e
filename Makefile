# liveresponse: `make demo` plays the investigation, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench load install lint typecheck check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test,flower]'
	touch $(STAMP)

# How to reach the installed commands, said after install and demo.
ON_PATH := echo "lr and lr-agent are in $(abspath $(BIN)): 'source $(BIN)/activate' puts them on PATH"

install: $(STAMP)
	@$(ON_PATH)

demo: $(STAMP)
	$(BIN)/lr demo
	@$(ON_PATH)

# The suite waits on real agents and servers most of the time: a few workers run it in parallel.
PYTEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/roundtrip.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/footprint.py
	$(BIN)/python bench/getfile.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/audit.py

# 50 sessions on 20 real agents for 60 s; shorten with LOAD_ARGS="--seconds 10 --sessions 5".
load: $(STAMP)
	$(BIN)/python bench/load.py $(LOAD_ARGS)

lint: $(STAMP)
	$(BIN)/python -m ruff check .

typecheck: $(STAMP)
	$(BIN)/python -m mypy

# What CI runs before the tests: lint and types must be clean.
check: lint typecheck

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
