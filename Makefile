# Set-up uses venv + pip: torch==2.13.0 first (a CPU build that pip finds locally here;
# GPU machines may pre-install their own build, the project only asks for a range).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench bench-smoke lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[dev,dask]"
	# The DALL-E package is only a test reference; its metadata pulls torchvision, which we do not need.
	$(BIN)/pip install -q --no-deps "DALL-E==0.1"
	@$(BIN)/python -c "import torch, decord, prefect; print('installed: torch', torch.__version__, '| prefect', prefect.__version__)"

# Every test, the slow integration ones included (this is what CI runs).
test:
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop while developing: skips tests marked slow.
test-fast:
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo:
	$(BIN)/vimpac demo --out demo_out

bench:
	$(BIN)/python -m bench.run_all

bench-smoke:
	$(BIN)/python -m bench.run_all --smoke

lint:
	$(BIN)/ruff check vimpac_core tasks flows tests bench

clean:
	rm -rf demo_out bench/out .pytest_cache
