"""Training at scale: steps per call, several workers (TF_CONFIG), evaluation while training, the best
checkpoint and early stopping."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from pipelines.errors import OdliteError
from pipelines.train import _next_stop, train
from pipelines.training.best_checkpoint import BEST_DIR, BestKeeper, check_metric, chosen_checkpoint
from pipelines.training.distribute import read_cluster


def _weights(checkpoint: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(checkpoint)
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith(("model/", "optimizer/"))]
    return {n: reader.get_tensor(n) for n in names if "OBJECT_CONFIG" not in n}


@pytest.mark.slow
def test_several_steps_per_call_train_exactly_as_one(tiny_config, tmp_path):
    one = train(tiny_config, tmp_path / "one", num_steps=6, steps_per_loop=1, seed=0, progress=False)
    four = train(tiny_config, tmp_path / "four", num_steps=6, steps_per_loop=4, summary_every=3, seed=0, progress=False)
    assert one.step == four.step == 6
    assert one.losses == pytest.approx(four.losses, rel=1e-5)
    a, b = _weights(one.checkpoint), _weights(four.checkpoint)
    assert a.keys() == b.keys() and len(a) > 100
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_loop_calls_stop_at_every_summary_checkpoint_and_evaluation_step():
    assert _next_stop(0, 1000, 50, 10, 100, 0) == 10
    assert _next_stop(10, 1000, 50, 100, 100, 30) == 30
    assert _next_stop(95, 97, 50, 100, 100, 0) == 97
    assert _next_stop(7, 1000, 1, 10, 100, 0) == 8


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_together_and_the_chief_alone_writes(tiny_config, tmp_path):
    model_dir = tmp_path / "m"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = [sys.executable, "-m", "pipelines.cli", "train", "--config", str(tiny_config), "--model-dir",
                   str(model_dir), "--num-steps", "3", "--checkpoint-every", "2", "--seed", "0", "--quiet"]  # fmt: skip
        env = {**os.environ, "TF_CONFIG": tf_config}
        workers.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = []
    for worker in workers:
        out, _ = worker.communicate(timeout=600)
        outputs.append(out.decode())
        assert worker.returncode == 0, out.decode()[-3000:]
    assert "workers: 2 (this is worker 0); replicas: 2" in outputs[0]
    assert "this is worker 1" in outputs[1]
    # Both saw the same losses (one model), and only the chief's files are left.
    assert outputs[0].split("step 3:")[1].splitlines()[0] == outputs[1].split("step 3:")[1].splitlines()[0]
    checkpoints = [f"ckpt-{step}.{part}" for step in (2, 3) for part in ("index", "data-00000-of-00001")]
    expected = ["checkpoint", "pipeline.config", "train", *checkpoints]
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(expected)
    assert len(list((model_dir / "train").iterdir())) == 1  # one event file: the chief's
    resumed = train(tiny_config, model_dir, num_steps=4, progress=False)
    assert resumed.step == 4 and resumed.checkpoint.endswith("ckpt-4")


@pytest.mark.parametrize(
    ("tf_config", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"cluster": {"ps": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}', "ps"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "not in the cluster"),
    ],
)
def test_a_bad_tf_config_is_refused_with_the_reason(tf_config, words):
    with pytest.raises(OdliteError, match=words):
        read_cluster({"TF_CONFIG": tf_config})


def test_tf_config_names_the_chief():
    two = '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": %d}}'
    assert read_cluster({}).workers == 1 and read_cluster({}).is_chief
    assert read_cluster({"TF_CONFIG": two % 0}).is_chief and not read_cluster({"TF_CONFIG": two % 1}).is_chief
    with_chief = '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'
    assert read_cluster({"TF_CONFIG": with_chief}).workers == 2 and not read_cluster({"TF_CONFIG": with_chief}).is_chief


def test_best_metric_names_are_checked():
    assert check_metric("AP50", ["normal", "caries"]) == "AP50"
    assert check_metric("AP/caries", ["normal", "caries"]) == "AP/caries"
    with pytest.raises(OdliteError, match="AP50/caries"):
        check_metric("AP/molar", ["normal", "caries"])


def test_early_stopping_needs_evaluations(tiny_config, tmp_path):
    with pytest.raises(OdliteError, match="--eval-every"):
        train(tiny_config, tmp_path / "m", early_stop_patience=2, progress=False)
    with pytest.raises(OdliteError, match="not a metric"):
        train(tiny_config, tmp_path / "m", eval_every=2, best_metric="mAP", progress=False)


@pytest.mark.slow
def test_the_best_checkpoint_is_kept_through_rotation_and_patience_stops(tiny_config, tmp_path, monkeypatch):
    """Real evaluations of the sample, with the mAP they report replaced by a script, so which one is best
    does not hang on what a few steps from scratch happen to learn."""
    import pipelines.evaluate as evaluation

    real = evaluation.evaluate
    scripted = iter([0.10, 0.30, 0.20, 0.25, 0.28])
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: {**real(*a, **k), "AP": next(scripted)})
    model_dir = tmp_path / "m"
    options = dict(eval_every=1, early_stop_patience=2, keep_checkpoints=1, seed=0, progress=False)
    result = train(tiny_config, model_dir, num_steps=10, **options)
    assert result.stopped_early and not result.interrupted
    assert (result.step, result.best_step, result.best_value) == (4, 2, 0.30)
    assert not (model_dir / "ckpt-2.index").exists()  # rotated away ...
    assert (model_dir / BEST_DIR / "ckpt-2.index").exists()  # ... but kept as the best
    kept = json.loads((model_dir / BEST_DIR / "metrics.json").read_text())
    assert kept["step"] == 2 and kept["AP"] == 0.30 and kept["best_metric"] == "AP"
    for step in (1, 2, 3, 4):  # the same reports odlite eval writes
        assert json.loads((model_dir / "eval" / f"step-{step}" / "metrics.json").read_text())["step"] == step
    # A resumed run goes on from the best kept before and from the patience already used: with the same
    # patience it stops where it is; with one more it trains to the next evaluation (0.28 < 0.30) and stops.
    again = train(tiny_config, model_dir, num_steps=10, **options)
    assert again.stopped_early and (again.step, again.best_step) == (4, 2)
    again = train(tiny_config, model_dir, num_steps=10, **{**options, "early_stop_patience": 3})
    assert again.stopped_early and (again.step, again.best_step, again.best_value) == (5, 2, 0.30)

    said = []
    assert chosen_checkpoint(model_dir, say=said.append).endswith(f"{BEST_DIR}/ckpt-2")
    assert said == [f"using the best checkpoint: step 2, AP 0.300 ({model_dir / BEST_DIR / 'ckpt-2'})"]
    assert chosen_checkpoint(model_dir, str(model_dir / "ckpt-5"), say=said.append).endswith("ckpt-5")

    from pipelines.detect import detect

    image = _one_val_image(tiny_config, tmp_path / "val.jpg")
    found = detect(model_dir, [image], tmp_path / "found", progress=False)
    summary = json.loads((found.out / "detections.json").read_text())
    assert summary["step"] == 2 and summary["checkpoint"].endswith(f"{BEST_DIR}/ckpt-2")


def _one_val_image(config, path) -> str:
    from pipelines.config.experiment import load_train_spec
    from pipelines.data.tfrecord import read_examples

    spec = load_train_spec(config)
    path.write_bytes(next(read_examples(tf.io.gfile.glob(spec.eval_paths[0])))["image/encoded"])
    return str(path)


def test_keeper_prefers_the_earlier_of_equal_scores(tmp_path):
    model_dir = tmp_path / "m"
    checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
    paths = [checkpoint.write(str(model_dir / f"ckpt-{step}")) for step in (1, 2)]
    (model_dir / "pipeline.config").write_text("")
    keeper = BestKeeper(model_dir, "AP50/caries")
    metrics = {"AP": 0.1, "per_class": {"caries": {"AP": 0.2, "AP50": 0.5}}}
    assert keeper.offer(paths[0], {**metrics, "step": 1})
    assert not keeper.offer(paths[1], {**metrics, "step": 2})
    assert keeper.best_step == 1 and keeper.since_improved == 1
    for step in (1, 2):  # the evaluation reports a resumed keeper counts from
        (model_dir / "eval" / f"step-{step}").mkdir(parents=True)
        (model_dir / "eval" / f"step-{step}" / "metrics.json").write_text("{}")
    assert BestKeeper(model_dir, "AP50/caries").since_improved == 1
    assert BestKeeper(model_dir, "AP").since_improved == 0  # another metric starts afresh
