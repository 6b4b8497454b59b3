"""Training: schedule, losses, warm start, checkpoints, resume, interruption, mirroring, learning."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import LEARNING_STEPS, copy_model, patched_config

from pipelines.config.experiment import LearningRate, load_train_spec
from pipelines.errors import OdliteError
from pipelines.train import CosineDecayWithWarmup, train


def test_learning_rate_follows_the_od_api_schedule():
    spec = LearningRate("cosine", base=0.08, total_steps=1000, warmup_learning_rate=0.02, warmup_steps=100)
    schedule = CosineDecayWithWarmup(spec)
    assert float(schedule(0)) == pytest.approx(0.02)
    assert float(schedule(50)) == pytest.approx(0.05)
    assert float(schedule(100)) == pytest.approx(0.08)
    assert float(schedule(550)) == pytest.approx(0.04, rel=1e-4)
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-7)
    held = CosineDecayWithWarmup(LearningRate("cosine", 0.1, 1000, 0.0, 100, hold_base_rate_steps=200))
    assert float(held(250)) == pytest.approx(0.1)
    assert float(held(300 + 350)) == pytest.approx(0.05, rel=1e-4)
    assert float(CosineDecayWithWarmup(LearningRate("constant", 0.01))(123)) == pytest.approx(0.01)


def test_every_zoo_setting_reaches_the_model(tiny_config):
    spec = load_train_spec("tests/data/ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config")
    m = spec.model
    assert (m.num_classes, m.input_size, m.min_level, m.max_level) == (90, 320, 3, 7)
    assert (m.fpn_depth, m.head_depth, m.head_layers, m.share_prediction_tower) == (128, 128, 4, True)
    assert (m.anchor_scale, m.aspect_ratios, m.scales_per_octave) == (4.0, [1.0, 2.0, 0.5], 2)
    for params in (m.extractor, m.predictor):
        assert (params.batch_norm_decay, params.batch_norm_epsilon, params.l2_weight) == (0.997, 0.001, 4e-5)
        assert (params.activation, params.batch_norm_scale, params.batch_norm_center) == ("relu6", True, True)
        assert params.initializer == ("random_normal", {"mean": 0.0, "stddev": 0.01})
    assert (m.min_depth, m.depth_multiplier, m.override_backbone_hyperparams, m.fpn_separable) == (16, 1.0, True, True)
    assert m.box_coder_weights == [10.0, 10.0, 5.0, 5.0] and m.iou_threshold == 0.6
    assert (spec.focal_alpha, spec.focal_gamma, spec.batch_size, spec.num_steps) == (0.25, 2.0, 128, 50000)
    assert [name for name, _ in spec.augmentations] == ["random_horizontal_flip", "random_crop_image"]


def test_classification_and_localization_weights_scale_the_losses(tiny_config, tmp_path):
    from pipelines.data.train_input import train_dataset
    from pipelines.models.ssd import build_model, normalize_pixels
    from pipelines.models.ssd_training import detection_losses

    spec = load_train_spec(tiny_config)
    images, labels = next(iter(train_dataset(spec, 2, seed=0)))
    model = build_model(spec.model)
    outputs = model(normalize_pixels(images), training=True)
    base = detection_losses(spec, outputs, labels, [])
    spec.classification_weight, spec.localization_weight = 2.0, 0.5
    weighted = detection_losses(spec, outputs, labels, [])
    assert float(weighted["classification_loss"]) == pytest.approx(2 * float(base["classification_loss"]), rel=1e-5)
    assert float(weighted["localization_loss"]) == pytest.approx(0.5 * float(base["localization_loss"]), rel=1e-5)
    assert float(base["localization_loss"]) > 0


def test_anchor_labeller_drops_crowd_empty_and_surplus_boxes(tiny_config):
    from pipelines.models.ssd_training import anchor_labeller

    spec = load_train_spec(tiny_config)
    data = {
        "image": tf.fill([60, 80, 3], tf.constant(200, tf.uint8)),
        "groundtruth_boxes": tf.constant([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9], [0.2, 0.6, 0.2, 0.8]]),
        "groundtruth_classes": tf.constant([1, 2, 1], tf.int64),
        "groundtruth_is_crowd": tf.constant([False, False, False]),
    }

    def matched_classes(example):
        image, targets = anchor_labeller(spec)(example)
        assert image.dtype == tf.uint8 and image.shape == (128, 128, 3) and int(tf.reduce_min(image)) == 200
        return {int(c) for t in targets["cls_targets"].values() for c in np.unique(t.numpy()) if c > 0}

    assert matched_classes(data) == {1, 2}  # the third box is empty
    assert matched_classes({**data, "groundtruth_is_crowd": tf.constant([True, False, False])}) == {2}
    spec.max_boxes = 1  # train_config.max_number_of_boxes
    assert matched_classes(data) == {1}


def test_shared_tower_model_has_one_tower():
    from pipelines.models.ssd import ModelSpec, build_model

    shared = build_model(ModelSpec(num_classes=2, input_size=128))
    separate = build_model(ModelSpec(num_classes=2, input_size=128, share_prediction_tower=False))
    assert shared.head.class_tower == [] and len(separate.head.class_tower) == 4
    assert separate.count_params() > shared.count_params()
    assert np.allclose(shared.head.class_predictor.bias.numpy(), -4.6)


def test_depth_multiplier_and_min_depth_shape_the_backbone_as_the_od_api_does():
    from pipelines.models.ssd import ModelSpec, build_backbone

    def filters(**settings):
        backbone = build_backbone(ModelSpec(num_classes=2, input_size=128, **settings))
        return {name: backbone.get_layer(name).filters for name in ("Conv1", "block_1_project", "Conv_1")}

    assert filters() == {"Conv1": 32, "block_1_project": 24, "Conv_1": 1280}
    # Keras keeps Conv_1 at 1280 below alpha 1; the OD API shrinks it, and lifts small layers to min_depth.
    assert filters(depth_multiplier=0.35, min_depth=16) == {"Conv1": 16, "block_1_project": 16, "Conv_1": 448}
    assert filters(depth_multiplier=0.35, min_depth=1) == {"Conv1": 16, "block_1_project": 8, "Conv_1": 448}


def test_freeze_batchnorm_keeps_every_batch_norm_in_inference_mode(tiny_config, tmp_path):
    from pipelines.models.ssd import FreezableBatchNorm, build_model

    config = patched_config(tmp_path / "frozen.config", Path("unused"), **{"model.ssd.freeze_batchnorm": "true"})
    assert load_train_spec(config).model.freeze_batchnorm and not load_train_spec(tiny_config).model.freeze_batchnorm
    x = tf.random.uniform([2, 128, 128, 3], -1, 1)
    for frozen in (True, False):
        spec = load_train_spec(config if frozen else tiny_config).model
        spec.input_size = 128
        model = build_model(spec)
        norms = [layer for layer in model.submodules if isinstance(layer, tf_keras.layers.BatchNormalization)]
        assert len(norms) == 52 + 4 + 20 and all(isinstance(n, FreezableBatchNorm) for n in norms)
        before = [n.moving_mean.numpy().copy() for n in norms]
        training = model(x, training=True)["cls_outputs"]["3"]
        moved = sum(not np.array_equal(b, n.moving_mean.numpy()) for b, n in zip(before, norms))
        if frozen:  # no statistic moved, and training computes what inference computes
            inference = model.head(model.decoder(model.backbone(x, training=False), training=False), training=False)
            assert moved == 0
            np.testing.assert_allclose(training.numpy(), inference[0]["3"].numpy(), atol=1e-5)
        else:
            assert moved == len(norms)


def test_imagenet_weights_map_onto_the_backbone(tiny_config, tmp_path):
    from pipelines.models.meta_architecture import keras_mobilenet_v2
    from pipelines.models.ssd import build_model, normalize_pixels
    from pipelines.models.warm_start import warm_start

    keras = keras_mobilenet_v2(None, 1.0)
    weights = tmp_path / "mobilenet_v2_no_top.h5"
    keras.save_weights(weights)
    spec = load_train_spec(tiny_config)
    spec.fine_tune_checkpoint, spec.fine_tune_checkpoint_type = str(weights), "classification"
    model = build_model(spec.model)
    assert "260 tensors" in warm_start(model, spec, from_scratch=False)
    x = normalize_pixels(tf.random.uniform([1, 128, 128, 3], 0, 255))
    ours = model.backbone(x, training=False)["5"]  # out_relu, FPNLite's top tap
    theirs = keras(x, training=False)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4)


def test_missing_weights_fail_clearly_unless_from_scratch(tiny_config):
    from pipelines.models.ssd import build_model
    from pipelines.models.warm_start import warm_start

    spec = load_train_spec(tiny_config)
    spec.fine_tune_checkpoint = "/nowhere/mobilenet_v2.h5"
    model = build_model(spec.model)
    with pytest.raises(
        OdliteError, match=r"train_config.fine_tune_checkpoint: '/nowhere/mobilenet_v2.h5' not found.*--from-scratch"
    ):
        warm_start(model, spec, from_scratch=False)
    assert "training from scratch (--from-scratch)" in warm_start(model, spec, from_scratch=True)
    spec.fine_tune_checkpoint = ""
    assert "training from scratch: fine_tune_checkpoint is empty" in warm_start(model, spec, from_scratch=False)


def test_checkpoints_resume_and_warm_start_from_odlite(tiny_config, tiny_model, tmp_path, capsys):
    model_dir = copy_model(tiny_model, tmp_path / "model")  # trained 2 steps, checkpoint_every=1, keep 2
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-2")
    assert (model_dir / "pipeline.config").read_text() == load_train_spec(tiny_config).config.to_text()
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index")) == ["ckpt-1.index", "ckpt-2.index"]
    events_before = set(model_dir.joinpath("train").iterdir())
    second = train(tiny_config, model_dir, num_steps=3, checkpoint_every=10, progress=False)
    assert "resuming from" in capsys.readouterr().out and second.step == 3
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-3")
    (events,) = set(model_dir.joinpath("train").iterdir()) - events_before  # the resumed run's scalars
    steps = {e.step for e in tf.compat.v1.train.summary_iterator(str(events)) for v in e.summary.value
             if v.tag == "loss/total_loss"}  # fmt: skip
    assert steps == {3}

    from pipelines.config.pipeline_config import patch_config

    patch_config(
        tiny_config,
        tmp_path / "warm.config",
        [
            f"fine_tune_checkpoint={model_dir}",
            "model.ssd.num_classes=2",
            "train_config.fine_tune_checkpoint_type=detection",
        ],
    )
    result = train(tmp_path / "warm.config", tmp_path / "warm", num_steps=1, progress=False)
    assert result.step == 1
    assert "initialised backbone, FPN from" in capsys.readouterr().out


def test_diverged_weights_are_never_saved(tiny_config, tmp_path, monkeypatch):
    """A learning rate that blows the weights up on the first step: no checkpoint of them is written."""
    import pipelines.train as train_module

    monkeypatch.setattr(
        train_module, "make_optimizer", lambda spec: tf_keras.optimizers.SGD(float("inf"), momentum=spec.momentum)
    )
    model_dir = tmp_path / "m"
    with pytest.raises(OdliteError) as caught:
        train(tiny_config, model_dir, num_steps=2, checkpoint_every=1, progress=False)
    message = str(caught.value)
    assert message.startswith(f"{model_dir}: at step 1, ") and "hold NaN or infinity; no checkpoint written" in message
    assert "Likely cause: the weights diverged: lower the learning rate" in message
    assert not list(model_dir.glob("ckpt-*")) and not (model_dir / "checkpoint").exists()


def test_batch_norm_statistics_alone_point_at_the_batch_norm_settings():
    from pipelines.training.finite_weights import likely_cause, nonfinite_variables

    weights = tf.Variable([1.0, 2.0], name="conv/kernel")
    mean = tf.Variable([0.0, np.nan], name="bn/moving_mean", trainable=False)
    variance = tf.Variable([np.inf, 1.0], name="bn/moving_variance", trainable=False)
    steps = tf.Variable(3, dtype=tf.int64, name="iteration")
    assert nonfinite_variables([weights, mean, variance, steps]) == [mean, variance]
    assert "check batch_norm decay and epsilon" in likely_cause([mean, variance])
    weights.assign([np.nan, 0.0])
    assert "lower the learning rate" in likely_cause(nonfinite_variables([weights, mean]))


def test_resuming_from_a_checkpoint_holding_nan_is_refused(tiny_config, tiny_model, tmp_path, capsys):
    from pipelines.config.experiment import build_network
    from pipelines.train import make_optimizer

    model_dir = copy_model(tiny_model, tmp_path / "m")  # checkpoints 1 and 2
    spec = load_train_spec(tiny_config)
    model = build_network(spec.model)
    optimizer = make_optimizer(spec)
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    checkpoint.restore(str(model_dir / "ckpt-2")).assert_existing_objects_matched()
    kernel = model.trainable_variables[0]
    kernel.assign(tf.fill(kernel.shape, np.nan))
    checkpoint.write(str(model_dir / "ckpt-2"))

    with pytest.raises(OdliteError) as caught:
        train(tiny_config, model_dir, num_steps=3, progress=False)
    message = str(caught.value)
    assert message.startswith(f"{model_dir / 'ckpt-2'}: 1 of ") and "hold NaN or infinity: cannot resume" in message
    assert "Delete ckpt-2.index and ckpt-2.data-* to resume from ckpt-1" in message
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-2")  # nothing changed

    for part in model_dir.glob("ckpt-2.*"):  # as the message says
        part.unlink()
    capsys.readouterr()
    resumed = train(tiny_config, model_dir, num_steps=3, progress=False)
    assert f"resuming from {model_dir / 'ckpt-1'} (step 1)" in capsys.readouterr().out
    assert resumed.step == 3 and tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-3")


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_a_rerun_resumes(tiny_config, tmp_path):
    def interrupt(step, losses):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    result = train(tiny_config, tmp_path / "m", num_steps=4, checkpoint_every=100, progress=False, on_step=interrupt)
    assert result.interrupted and result.step == 2 and result.checkpoint.endswith("ckpt-2")
    again = train(tiny_config, tmp_path / "m", num_steps=4, checkpoint_every=100, progress=False)
    assert not again.interrupted and again.step == 4


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(tiny_config, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "train", "--config", str(tiny_config), "--model-dir",
         str(tmp_path / "m"), "--num-steps", "2", "--cpu-replicas", "2", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 2:" in done.stdout and "total_loss" in done.stdout
    assert "replicas: 2" in done.stdout


def test_unresolved_paths_and_missing_data_fail_clearly(tmp_path):
    with pytest.raises(OdliteError, match="PATH_TO_BE_CONFIGURED"):
        train("tests/data/ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config", tmp_path / "m", progress=False)
    config = patched_config(tmp_path / "c.config", tmp_path / "nodata")
    with pytest.raises(OdliteError, match="matches no files"):
        train(config, tmp_path / "m2", progress=False)


def test_training_from_scratch_learns_the_sample(trained_model, tmp_path):
    """The whole loop: from scratch on the CPU, the project's own eval must reach mAP@0.5 >= 0.5."""
    from pipelines.evaluate import evaluate

    metrics = evaluate(None, trained_model, out=tmp_path / "eval", progress=False)  # the shared model unchanged
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_class"}, indent=1))
    assert metrics["step"] == LEARNING_STEPS
    assert metrics["AP50"] >= 0.5, metrics
    assert math.isfinite(metrics["AP"]) and metrics["per_class"]["caries"]["AP50"] > 0.3


def test_one_evaluation_network_serves_each_checkpoint_in_turn(tiny_model):
    """Training and --watch evaluate with one network re-read from each checkpoint: after checkpoint 2,
    checkpoint 1 gives it exactly the weights a network built for checkpoint 1 alone has."""
    from pipelines.config.experiment import restored_network
    from pipelines.detectors import CheckpointDetector

    spec = load_train_spec(tiny_model / "pipeline.config")
    alone = {step: restored_network(spec.model, str(tiny_model / f"ckpt-{step}")).get_weights() for step in (1, 2)}
    assert any(not np.array_equal(a, b) for a, b in zip(alone[1], alone[2]))
    detector = CheckpointDetector(spec)
    for step in (2, 1):
        detector.load(str(tiny_model / f"ckpt-{step}"))
        assert all(np.array_equal(a, b) for a, b in zip(detector.model.get_weights(), alone[step], strict=True))


def test_continuous_eval_follows_checkpoints_and_writes_the_report(tiny_model, sample_converted, tmp_path):
    from pipelines.evaluate import evaluate_continuously

    copy_model(tiny_model, tmp_path / "m")
    seen = list(evaluate_continuously(None, tmp_path / "m", timeout=1, progress=False, samples=2))
    assert [m["step"] for m in seen] == [2]
    report = tmp_path / "m" / "eval" / "step-2"
    metrics = json.loads((report / "metrics.json").read_text())
    from pipelines.evaluate import COCO_NAMES

    assert set(COCO_NAMES) <= set(metrics) and metrics["images"] == 6
    # Every validation box is counted, per class, as convert counted it.
    boxes = json.loads((sample_converted / "summary.json").read_text())["splits"]["val"]["boxes"]
    assert {name: v["ground_truth"] for name, v in metrics["per_class"].items()} == boxes
    assert {p.name for p in report.iterdir()} >= {"report.md", "pr_curves.png", "confusion_matrix.png", "samples"}
    assert len(list((report / "samples").glob("*.png"))) == 2
    assert "| caries" in (report / "report.md").read_text()
    assert any((tmp_path / "m" / "eval").glob("events.out.tfevents.*"))


def test_mixed_precision_without_a_gpu_is_refused(tiny_config, tmp_path):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is present")
    with pytest.raises(OdliteError, match="--mixed-precision needs a GPU"):
        train(tiny_config, tmp_path / "m", mixed_precision=True, progress=False)


def test_mixed_precision_trains_and_resumes_either_way(tiny_config, tiny_model, tmp_path, monkeypatch, capsys):
    """float16 kernels exist on the CPU too (slow), so the GPU's mixed-precision path runs here."""
    import pipelines.train as train_module

    monkeypatch.setattr(train_module, "gpu_available", lambda: True)
    model_dir = copy_model(tiny_model, tmp_path / "m")  # trained in float32 to step 2
    mixed = train(tiny_config, model_dir, num_steps=3, mixed_precision=True, checkpoint_every=1, progress=False)
    assert "compute float16, weights float32" in capsys.readouterr().out
    assert mixed.step == 3 and all(math.isfinite(v) for v in mixed.losses.values())
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # not left behind for later models
    again = train(tiny_config, model_dir, num_steps=4, progress=False)
    assert again.step == 4 and all(math.isfinite(v) for v in again.losses.values())
    assert "compute float32" in capsys.readouterr().out


@pytest.mark.slow
def test_sigkill_loses_only_the_steps_since_the_last_checkpoint(tiny_config, tmp_path):
    import time

    model_dir = tmp_path / "m"
    command = [sys.executable, "-m", "pipelines.cli", "train", "--config", str(tiny_config), "--model-dir",
               str(model_dir), "--num-steps", "1000", "--checkpoint-every", "2", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300

    def saved_step():
        # The checkpoint state file is written after the ckpt files, so it is the commit point.
        latest = tf.train.latest_checkpoint(str(model_dir)) if (model_dir / "checkpoint").exists() else None
        return int(latest.rsplit("-", 1)[1]) if latest else 0

    while saved_step() < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.kill()
    process.wait()
    saved = saved_step()
    assert saved >= 4 and saved % 2 == 0
    resumed = train(tiny_config, model_dir, num_steps=saved + 1, progress=False)
    assert resumed.step == saved + 1 and not resumed.interrupted
