# Two commands on a fresh machine: `make run` (demo) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint typecheck pytest bytecode browser gluster test-hosts bench clean

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

# The tests start hundreds of worker processes: give them jobq as bytecode, as an installed
# jobq is, even where PYTHONDONTWRITEBYTECODE would have each of them compile it anew.
bytecode: $(STAMP_TEST)
	$(BIN)/python -m compileall -q jobq tests examples

pytest: $(STAMP_TEST) browser bytecode
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered

test: lint typecheck pytest

# The multi-host suite (tests/hosts/) builds a GlusterFS volume and three client "hosts" in
# network namespaces. As root (CI), install GlusterFS (and iproute2) when missing; as anyone
# else the suite is skipped and says why. No coverage: the workers run in other processes.
gluster:
	@if [ "$$(id -u)" = 0 ] && ! { command -v glusterd && command -v glusterfs && \
			command -v gluster && command -v ip; } >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
			glusterfs-server glusterfs-client iproute2; \
	fi

test-hosts: $(STAMP_TEST) gluster bytecode
	$(BIN)/python -m pytest tests/hosts -p no:cacheprovider -v -rA

bench: $(STAMP_RUN)
	$(BIN)/jobq bench --spool /tmp/jobq-bench-spool

clean:
	rm -rf $(VENV) jobq-spool .pytest_cache .mypy_cache .ruff_cache
