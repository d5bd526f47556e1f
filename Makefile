# Set-up uses venv + pip: torch==2.13.0 first (a CPU build that pip finds locally here;
# GPU machines may pre-install their own build, the project only asks for a range).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench bench-smoke lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The environment is (re)built when missing or older than pyproject.toml or this Makefile, so
# `make test` and `make demo` on a fresh clone set everything up themselves.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev,dask]"
	# The DALL-E package is only a test reference; its metadata pulls torchvision, which we do not need.
	$(BIN)/pip install -q --no-deps "DALL-E==0.1"
	@$(BIN)/python -c "import torch, decord, prefect; print('installed: torch', torch.__version__, '| prefect', prefect.__version__)"
	@touch $@

# `make install` alone; `make -B install` (or deleting .venv) forces a rebuild.
install: $(STAMP)

# Every test, the slow integration ones included (this is what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop while developing: skips tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/vimpac demo --out demo_out

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run_all --smoke

lint: $(STAMP)
	$(BIN)/ruff check vimpac_core vimpac_cli vimpac_tasks vimpac_flows tests bench

clean:
	rm -rf demo_out bench/out .pytest_cache
