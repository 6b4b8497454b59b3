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
CONFIG    ?= configs/ssd_mobilenet_v2_fpnlite_320x320.config
MODEL_DIR ?= models/tooth
DEMO_STEPS ?= 400
EXPORT_DIR ?= exported/$(notdir $(MODEL_DIR))
TOOLS     ?= .venv-tools
IMAGES    ?= $(SAMPLE)/img_val
DETECT_OUT ?= detections/$(notdir $(MODEL_DIR))
PORT      ?= 8000
BROWSE_PORT ?= 8080
CHROMIUM  ?= /usr/bin/chromium
SWEEP     ?= configs/sweeps/tooth_grid.yaml
SWEEP_OUT ?= models/sweep-$(basename $(notdir $(SWEEP)))
SET       ?=
FRCNN_CONFIG ?= configs/faster_rcnn_resnet50_fpn_640.config
FRCNN_DIR ?= models/tooth-frcnn
FRCNN_DEMO_STEPS ?= 200
FRCNN_DEMO_SIZE ?= 192
MAX_MEGAPIXELS ?=
ALLOW_ORIGIN ?=
PIXELS     = $(if $(MAX_MEGAPIXELS),--max-megapixels $(MAX_MEGAPIXELS))

.PHONY: help setup tools browser sample data inspect config train eval export-tflite export package detect serve \
	browse sweep demo demo-frcnn sweep-backbones test test-fast lint format bench clean

help:
	@echo "make demo    - the whole pipeline on the embedded sample dataset"
	@echo "make test    - lint + the test suite (installs Debian's chromium for the page tests: make browser)"
	@echo "make test-fast - the tests that neither train nor export, for the inner loop"
	@echo "make setup   - create $(VENV) and install odlite (quick when already done)"
	@echo "make sample  - generate the sample dataset in $(SAMPLE)"
	@echo "make data    - convert SRC=$(SRC) to TFRecords in DATA_DIR=$(DATA_DIR)"
	@echo "make inspect - class counts and sample pictures of DATA_DIR"
	@echo "make config  - write CONFIG patched with SET='batch_size=16 iou_threshold=0.5' to NEW_CONFIG"
	@echo "make train   - train CONFIG into MODEL_DIR=$(MODEL_DIR) (resumes; STEPS=N to stop early;"
	@echo "               EVAL_EVERY=N keeps the best checkpoint in MODEL_DIR/best, PATIENCE=K stops early)"
	@echo "make eval    - COCO metrics and report of the latest checkpoint in MODEL_DIR"
	@echo "make export-tflite - SavedModel + TFLite fp32/fp16/int8 of MODEL_DIR in EXPORT_DIR, checked by MediaPipe"
	@echo "make export  - the SavedModel (and for an SSD the TFLite models, unchecked) of MODEL_DIR in EXPORT_DIR"
	@echo "make package - EXPORT_DIR.tar.gz with the models, labels, report and ANDROID.md"
	@echo "make tools   - the MediaPipe venv ($(TOOLS)) that checks exported models"
	@echo "make detect  - run MODEL (default EXPORT_DIR/model_int8.tflite) on IMAGES=$(IMAGES) into DETECT_OUT"
	@echo "make serve   - the POST /tag service for MODEL (default: the newest export) on PORT=$(PORT);"
	@echo "               ALLOW_ORIGIN='https://a.example https://b.example' lets those web pages call it"
	@echo "make browse  - look through MODEL (default MODEL_DIR) on the validation images at http://127.0.0.1:$(BROWSE_PORT);"
	@echo "               COMPARE=another model puts the two side by side"
	@echo "make sweep   - train and evaluate each point of SWEEP=$(SWEEP) into SWEEP_OUT"
	@echo "make demo-frcnn - Faster R-CNN ResNet-50 FPN on the sample: train, eval, SavedModel, detect"
	@echo "make sweep-backbones - ResNet-50 vs ResNet-101 and two input sizes, one factor at a time"
	@echo "make bench   - benchmarks, written to $(BENCH_OUT)"
	@echo "MAX_MEGAPIXELS=N - data, inspect, eval, detect and serve refuse images larger than N megapixels (default 50)"

# Re-installs only when pyproject.toml changes. tflite-support (the TFLite metadata writer) goes in
# without its dependencies: its last release pins protobuf < 4, which TensorFlow cannot share (docs/dependencies.md).
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps tflite-support==0.4.4
	@touch $@

# MediaPipe pins absl-py 2.x, TensorFlow's stack 1.x: it gets a venv of its own, used to check exports.
tools: $(TOOLS)/.installed
$(TOOLS)/.installed: requirements-tools.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r requirements-tools.txt
	@touch $@

sample: setup $(SAMPLE)/.complete
$(SAMPLE)/.complete:
	$(BIN)/python -m pipelines.data.sample_data $(SAMPLE) --seed $(SEED)
	@touch $@

data: setup $(if $(filter $(SAMPLE),$(SRC)),sample)
	$(ODLITE) convert $(SRC) --out $(DATA_DIR) --label-map $(LABEL_MAP) --seed $(SEED) --overwrite $(PIXELS)

inspect: setup
	$(ODLITE) inspect $(DATA_DIR) $(PIXELS)

NEW_CONFIG ?= $(MODEL_DIR).config
config: setup
	$(ODLITE) config $(CONFIG) --out $(NEW_CONFIG) --overwrite $(foreach s,$(SET),--set $(s))

TRAIN_OPTIONS = $(if $(EVAL_EVERY),--eval-every $(EVAL_EVERY)) $(if $(PATIENCE),--early-stop-patience $(PATIENCE))

train: setup
	$(ODLITE) train --config $(CONFIG) --model-dir $(MODEL_DIR) $(if $(STEPS),--num-steps $(STEPS)) $(TRAIN_OPTIONS)

eval: setup
	$(ODLITE) eval --model-dir $(MODEL_DIR) $(if $(filter $(origin CONFIG),command line),--config $(CONFIG)) $(PIXELS)

export-tflite: setup tools
	$(ODLITE) export --model-dir $(MODEL_DIR) --out $(EXPORT_DIR) --overwrite --mediapipe-python $(TOOLS)/bin/python

export: setup
	$(ODLITE) export --model-dir $(MODEL_DIR) --out $(EXPORT_DIR) --overwrite

package: setup
	$(ODLITE) package $(EXPORT_DIR)

detect: setup
	$(ODLITE) detect --model $(or $(MODEL),$(EXPORT_DIR)/model_int8.tflite) $(IMAGES) --out $(DETECT_OUT) $(if $(CLASSES),--classes $(CLASSES)) $(PIXELS)

serve: setup
	$(ODLITE) serve $(if $(MODEL),--model $(MODEL)) --port $(PORT) $(PIXELS) $(foreach o,$(ALLOW_ORIGIN),--allow-origin $(o))

browse: setup
	$(ODLITE) browse $(or $(MODEL),$(MODEL_DIR)) $(COMPARE) --port $(BROWSE_PORT)

# The page tests drive Debian's Chromium (headless, through Playwright); installed with apt when missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

sweep: setup
	$(ODLITE) sweep --config $(CONFIG) --grid $(SWEEP) --out $(SWEEP_OUT) $(TRAIN_OPTIONS)

# The whole pipeline on the sample data; training is shortened to DEMO_STEPS (about 6 minutes on 2 CPU cores).
demo: data inspect
	@mkdir -p $(dir $(MODEL_DIR))
	$(ODLITE) config $(CONFIG) --out $(MODEL_DIR)-demo.config --overwrite --set num_steps=$(DEMO_STEPS)
	$(ODLITE) train --config $(MODEL_DIR)-demo.config --model-dir $(MODEL_DIR)-demo --seed 1 --eval-every 100
	$(MAKE) --no-print-directory export-tflite package MODEL_DIR=$(MODEL_DIR)-demo
	$(MAKE) --no-print-directory detect MODEL_DIR=$(MODEL_DIR)-demo CLASSES=caries
	@echo "look through the validation images: make browse MODEL_DIR=$(MODEL_DIR)-demo COMPARE=$(EXPORT_DIR)-demo"

# The two-stage detector on the sample data, at FRCNN_DEMO_SIZE px for FRCNN_DEMO_STEPS steps of batch 2 with
# fewer proposals and sampled RoIs (a CPU's budget; the shipped config trains at 640), then served:
# make serve MODEL=exported/tooth-frcnn-demo
demo-frcnn: data
	@mkdir -p $(dir $(FRCNN_DIR))
	$(ODLITE) config $(FRCNN_CONFIG) --out $(FRCNN_DIR)-demo.config --overwrite --set num_steps=$(FRCNN_DEMO_STEPS) \
		--set batch_size=2 --set min_dimension=$(FRCNN_DEMO_SIZE) --set max_dimension=$(FRCNN_DEMO_SIZE) \
		--set learning_rate_base=0.02 --set warmup_steps=30 --set proposals=100 --set rois_per_image=32
	$(ODLITE) train --config $(FRCNN_DIR)-demo.config --model-dir $(FRCNN_DIR)-demo --seed 1
	$(ODLITE) eval --model-dir $(FRCNN_DIR)-demo
	$(MAKE) --no-print-directory export MODEL_DIR=$(FRCNN_DIR)-demo
	$(MAKE) --no-print-directory detect MODEL=exported/$(notdir $(FRCNN_DIR))-demo/saved_model \
		DETECT_OUT=detections/$(notdir $(FRCNN_DIR))-demo CLASSES=caries

sweep-backbones: setup
	$(ODLITE) sweep --config $(FRCNN_CONFIG) --grid configs/sweeps/backbones.yaml --out models/sweep-backbones

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Two pytest-xdist workers: much of the suite is Python-bound (building and tracing networks) and leaves
# a core idle when run in one process. Each worker takes whole modules in tests/conftest.py's order.
# pytest exits 5 when it collects no tests; that is not a failure of the suite.
PYTEST    := $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder
test: lint tools browser
	$(PYTEST); rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

# The inner loop: every test that neither trains, exports nor walks many networks (about a minute).
test-fast: setup tools browser
	$(PYTEST) -m "not slow"; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

bench: setup
	$(BIN)/python scripts/bench.py --out $(BENCH_OUT)

clean:
	rm -rf data bench build models detections .pytest_cache .ruff_cache exported/*/ exported/*.tar.gz
