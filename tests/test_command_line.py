"""The command line's defaults are the functions' own: each is written once (pipelines/defaults.py)."""

from __future__ import annotations

import inspect

import pytest

from pipelines.browse import browse
from pipelines.cli import build_parser
from pipelines.data.convert import convert
from pipelines.data.inspect_data import inspect_records
from pipelines.detect import detect
from pipelines.evaluate import evaluate, evaluate_continuously
from pipelines.export.exporter import export
from pipelines.serve import DEFAULT_MAX_UPLOAD, create_app, serve
from pipelines.sweep import sweep
from pipelines.train import train

# (verb, the option's dest, the function it reaches, that function's parameter)
SHARED = [
    ("convert", "val_fraction", convert, "val_fraction"),
    ("convert", "seed", convert, "seed"),
    ("inspect", "samples", inspect_records, "samples"),
    ("train", "checkpoint_every", train, "checkpoint_every"),
    ("train", "keep_checkpoints", train, "keep_checkpoints"),
    ("train", "eval_every", train, "eval_every"),
    ("train", "best_metric", train, "best_metric"),
    ("train", "early_stop_patience", train, "early_stop_patience"),
    ("eval", "min_score", evaluate, "min_score"),
    ("eval", "samples", evaluate, "samples"),
    ("eval", "timeout", evaluate_continuously, "timeout"),
    ("export", "calibration_images", export, "calibration_images"),
    ("detect", "min_score", detect, "min_score"),
    ("detect", "max_boxes", detect, "max_boxes"),
    ("serve", "host", serve, "host"),
    ("serve", "port", serve, "port"),
    ("serve", "threads", create_app, "threads"),
    ("browse", "host", browse, "host"),
    ("browse", "port", browse, "port"),
    ("browse", "min_score", browse, "threshold"),
    ("sweep", "seed", sweep, "seed"),
    ("sweep", "eval_every", sweep, "eval_every"),
    ("sweep", "early_stop_patience", sweep, "early_stop_patience"),
]


def _defaults(verb: str) -> dict:
    subparsers = next(a for a in build_parser()._actions if a.dest == "verb")
    return {action.dest: action.default for action in subparsers.choices[verb]._actions}


@pytest.mark.parametrize(("verb", "dest", "function", "parameter"), SHARED, ids=[f"{v}--{d}" for v, d, *_ in SHARED])
def test_an_option_defaults_to_what_its_function_does(verb, dest, function, parameter):
    assert _defaults(verb)[dest] == inspect.signature(function).parameters[parameter].default


def test_the_upload_limit_in_megabytes_is_the_servers_in_bytes():
    assert round(_defaults("serve")["max_upload_mb"] * 2**20) == DEFAULT_MAX_UPLOAD
