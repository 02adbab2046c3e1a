# make run   : the three scripts in order (DATA_DIR=dir for an offline ImageFolder copy,
#              CONFIG=best for the recipe in configs/best.json)
# make test  : ruff + the test suite
# Both create .venv and install the requirements first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?=
CONFIG ?=
ARGS ?=
PRUNE_ARGS ?=
SHARE_ARGS ?=
ENCODE_ARGS ?=
COMMON := $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(CONFIG),--config configs/$(CONFIG).json) $(ARGS)

.PHONY: run test bench clean

$(VENV)/installed: requirements.txt requirements-dev.txt requirements-plot.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/installed
	$(PY) pruning.py $(COMMON) $(PRUNE_ARGS)
	$(PY) weight_share.py $(COMMON) $(SHARE_ARGS)
	$(PY) huffman_encode.py $(COMMON) $(ENCODE_ARGS)

test: $(VENV)/installed
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: $(VENV)/installed
	$(PY) bench/huffman.py $(COMMON)
	$(PY) bench/train.py $(COMMON)

clean:
	rm -rf saves encodings log.txt log.*.json
