# make run   : the three scripts in order (DATA_DIR=dir for an offline copy of the data,
#              CONFIG=best for the recipe in configs/best.json, SEED=n for another seed)
# make test  : ruff + the test suite
# Both create .venv and install the requirements first if needed.
# make gpu-check DATA_DIR=dir : a GPU machine's check (bench/gpu_check.py) with PYTHON if
#              given (PYTHON=python3: the packages it has, no install), else the .venv's
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?=
CONFIG ?=
SEED ?=
ARGS ?=
PRUNE_ARGS ?=
SHARE_ARGS ?=
ENCODE_ARGS ?=
COMMON := $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(CONFIG),--config configs/$(CONFIG).json) $(ARGS)
# The two scripts that draw random numbers (huffman_encode.py draws none).
SEEDED := $(if $(SEED),--seed $(SEED))

# gpu-check: a PYTHON given on the command line or in the environment, else the .venv's.
GPU_CHECK_PYTHON := $(if $(filter command environment,$(firstword $(origin PYTHON))),$(PYTHON),$(if $(wildcard $(PY)),$(PY),$(PYTHON)))

.PHONY: run test bench gpu-check clean

$(VENV)/installed: requirements.txt requirements-dev.txt requirements-plot.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/installed
	$(PY) pruning.py $(COMMON) $(SEEDED) $(PRUNE_ARGS)
	$(PY) weight_share.py $(COMMON) $(SEEDED) $(SHARE_ARGS)
	$(PY) huffman_encode.py $(COMMON) $(ENCODE_ARGS)

test: $(VENV)/installed
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: $(VENV)/installed
	$(PY) bench/huffman.py $(COMMON)
	$(PY) bench/train.py $(COMMON)

gpu-check:
	$(GPU_CHECK_PYTHON) bench/gpu_check.py $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

clean:
	rm -rf saves encodings log.txt log.*.json
