# Two commands from a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
# This machine's pip config names local mirrors; pip warns once per missing package there.
QUIET_PIP := 2>&1 | { grep -v '^WARNING: Location' || true; }
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "oir needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	# torch first, from the CPU wheel on this machine's disk, before sentence-transformers asks for one.
	set -o pipefail; $(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0 $(QUIET_PIP)
	set -o pipefail; $(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock $(QUIET_PIP)
	set -o pipefail; $(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e . $(QUIET_PIP)
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/oir demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/env_speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
