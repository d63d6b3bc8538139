# Two entry points, each doing its whole set-up: `make demo` and `make test`.
# The virtual environment is built once and reused; it is rebuilt only when
# pyproject.toml changes (the stamp file records the last install).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench gpu-check gpu-pack clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/contrastkit compare

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

# Peers (lightly, kornia) are installed for benchmarking only. Passive OpenMP waiting keeps
# the figures stable on a machine shared with other jobs (benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[bench]"
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.losses
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.augment
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.train_step
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.large_batch
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m benchmarks.micro_batch

# Every GPU figure in one call of at most 8 minutes, written into docs/results.md
# (benchmarks/gpu_check.py). On the GPU machine it installs nothing: it runs with .venv if one
# is built, else python3, from the source tree (PYTHONPATH), reading the CIFAR-10 pack in
# carry/ (`make gpu-pack` writes it from ../shared/data). DRY_RUN=1 runs the same steps at toy
# sizes on the CPU in the project's environment, peers included; CI runs that.
GPU_PYTHON = $$(test -x $(BIN)/python && echo $(BIN)/python || echo python3)

gpu-check: $(if $(DRY_RUN),$(STAMP))
	$(if $(DRY_RUN),$(BIN)/pip install --quiet -e ".[bench]")
	PYTHONPATH=src:. $(GPU_PYTHON) -m benchmarks.gpu_check $(if $(DRY_RUN),--dry-run)

gpu-pack:
	PYTHONPATH=src:. $(GPU_PYTHON) -m benchmarks.gpu_check --pack-only

clean-venv:
	rm -rf $(VENV)
