# odlite: one target per stage. Every target installs what it needs (make setup) first.
# Override any variable on the command line, e.g. `make data SRC=~/teeth DATA_DIR=data/teeth`.

PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
ODLITE    := $(BIN)/odlite
SAMPLE    ?= data/sample
SRC       ?= $(SAMPLE)
DATA_DIR  ?= data/tooth
LABEL_MAP ?= label_maps/tooth_label_map.pbtxt
SEED      ?= 0
BENCH_OUT ?= bench/results.json
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help setup sample data inspect demo test lint format bench clean

help:
	@echo "make demo    - the whole pipeline on the embedded sample dataset"
	@echo "make test    - lint + the test suite"
	@echo "make setup   - create $(VENV) and install odlite (quick when already done)"
	@echo "make sample  - generate the sample dataset in $(SAMPLE)"
	@echo "make data    - convert SRC=$(SRC) to TFRecords in DATA_DIR=$(DATA_DIR)"
	@echo "make inspect - class counts and sample pictures of DATA_DIR"
	@echo "make bench   - benchmarks, written to $(BENCH_OUT)"

# Re-installs only when pyproject.toml changes.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

sample: setup $(SAMPLE)/.complete
$(SAMPLE)/.complete:
	$(BIN)/python -m pipelines.sample_data $(SAMPLE) --seed $(SEED)
	@touch $@

data: setup $(if $(filter $(SAMPLE),$(SRC)),sample)
	$(ODLITE) convert $(SRC) --out $(DATA_DIR) --label-map $(LABEL_MAP) --seed $(SEED) --overwrite

inspect: setup
	$(ODLITE) inspect $(DATA_DIR)

demo: data inspect

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: lint
	$(BIN)/python -m pytest -q; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

bench: setup
	$(BIN)/python scripts/bench.py --out $(BENCH_OUT)

clean:
	rm -rf data bench build .pytest_cache .ruff_cache
