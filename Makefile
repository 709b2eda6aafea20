# jepa-jax developer commands. `make train` and `make test` are the README's two set-up commands:
# each creates .venv (Python >= 3.11) and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
CONFIG ?= configs/default.py
WORKDIR ?= workdirs/default
# Tests run on 8 simulated CPU devices so every sharding path is exercised without accelerators.
TEST_ENV := JAX_NUM_CPU_DEVICES=8 JAX_PLATFORMS=cpu TF_CPP_MIN_LOG_LEVEL=2
# Two workers: compilation is single-threaded, so two test processes use both cores.
PYTEST_ARGS ?= -n 2

.PHONY: install install-test train test lint bench clean

install: $(STAMP)
install-test: $(TEST_STAMP)

# The package alone (what `make train` needs).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e .
	touch $(STAMP)

# Plus the test extras: pytest, xdist, ruff, and libtpu for the ahead-of-time compile tests.
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $(TEST_STAMP)

train: $(STAMP)
	$(BIN)/jepa-jax train --config=$(CONFIG) --workdir=$(WORKDIR)

test: $(TEST_STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check jepa_jax tests configs benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) workdirs .pytest_cache
