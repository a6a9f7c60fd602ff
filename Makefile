# Two commands on a fresh machine: `make run` (demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[trio]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_TEST)
	$(BIN)/mypy

# The dashboard's browser test drives Debian's headless Chromium. As root (CI), install it when
# missing; as anyone else the test is skipped and says what to install.
browser:
	@if [ "$$(id -u)" = 0 ] && ! [ -x /usr/bin/chromium -a -x /usr/bin/chromedriver ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi

pytest: $(STAMP_TEST) browser
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered

test: lint typecheck pytest

bench: $(STAMP_RUN)
	$(BIN)/jobq bench --spool /tmp/jobq-bench-spool

clean:
	rm -rf $(VENV) jobq-spool .pytest_cache .mypy_cache .ruff_cache
