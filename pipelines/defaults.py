"""Defaults the command line shares with the functions it calls, each written once.

Kept free of TensorFlow so that ``odlite --help`` (arguments.py) reads them without loading it.
"""

from __future__ import annotations

# convert
VAL_FRACTION = 0.2  # share of images sent to val when the dataset has no split of its own
SPLIT_SEED = 0
# inspect
INSPECT_SAMPLES = 4
# train
CHECKPOINT_EVERY = 100
KEEP_CHECKPOINTS = 5
BEST_METRIC = "AP"  # mAP@0.5:0.95
# eval
MIN_SCORE = 0.5  # for pictures, the confusion matrix, detect's output and the tag service
EVAL_SAMPLES = 6
WATCH_TIMEOUT_S = 3600.0
# export
CALIBRATION_IMAGES = 300
# detect and serve
MAX_BOXES = 100
# serve and browse
HOST = "127.0.0.1"
SERVE_PORT = 8000
BROWSE_PORT = 8080
INTERPRETERS = 2  # requests inferring at once
INTERPRETER_THREADS = 1
MAX_UPLOAD_MB = 10.0
# sweep
SWEEP_SEED = 1  # the same seed for every point, so points differ by settings only
