"""Starting from the OD API's own checkpoints: names, shapes and values of the zoo's SSD FPNLite.

The checkpoints here are written with exactly the names and shapes of the genuine zoo
index (tests/data/zoo_*/checkpoint/ckpt-0.index) and seeded random values, so every
value can be traced to the variable it must land in.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import LABEL_MAP, TOOTH_CONFIG

from pipelines.config.experiment import load_train_spec
from pipelines.config.pipeline_config import load_pipeline_config, patch_config
from pipelines.errors import OdliteError

ZOO_DIR = Path(__file__).resolve().parent / "data" / "zoo_ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"
ZOO_INDEX = ZOO_DIR / "checkpoint" / "ckpt-0"
VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
EPSILON = 1e-3


def zoo_variables() -> dict[str, tuple[list[int], tf.DType]]:
    """Name -> (shape, dtype) of every tensor in the genuine zoo index (read from the index alone)."""
    reader = tf.train.load_checkpoint(str(ZOO_INDEX))
    dtypes = reader.get_variable_to_dtype_map()
    return {n: (s, dtypes[n]) for n, s in reader.get_variable_to_shape_map().items() if n.endswith(VALUE)}


def seeded_value(name: str, shape: list[int], dtype: tf.DType, rng: np.random.Generator) -> np.ndarray:
    if not dtype.is_floating:
        return np.zeros(shape, dtype.as_numpy_dtype)
    if re.search(r"/(moving_variance|gamma)/", name):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if re.search(r"/(beta|moving_mean|bias)/", name):
        return rng.normal(0.0, 0.2, shape).astype(np.float32)
    fan_in = math.prod(shape[:-1]) if "depthwise" not in name else math.prod(shape[:2])
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)


def write_checkpoint(prefix: Path, tensors: dict[str, np.ndarray]) -> str:
    """A TF2 checkpoint bundle holding exactly ``tensors`` by name, without an object graph."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return str(prefix)


@pytest.fixture(scope="module")
def zoo_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {n: seeded_value(n, s, d, rng) for n, (s, d) in sorted(zoo_variables().items())}


@pytest.fixture(scope="module")
def zoo_checkpoint(zoo_tensors, tmp_path_factory) -> str:
    prefix = write_checkpoint(tmp_path_factory.mktemp("zoo") / "checkpoint" / "ckpt-0", zoo_tensors)
    (Path(prefix).parent / "checkpoint").write_text('model_checkpoint_path: "ckpt-0"\n')  # as the download has it
    return prefix


def config_for(tmp_path: Path, base: Path, checkpoint: str, kind: str) -> Path:
    name = f"{kind}-{len(list(tmp_path.glob('*.config')))}"
    out = tmp_path / f"{name}.config"
    text = base.read_text().replace("PATH_TO_BE_CONFIGURED", str(tmp_path / "unused"))
    source = tmp_path / f"{name}.base"
    source.write_text(text)
    patch_config(
        source,
        out,
        [
            f"fine_tune_checkpoint={checkpoint}",
            f"train_config.fine_tune_checkpoint_type={kind}",
            f"label_map_path={LABEL_MAP}",
        ],
    )
    return out


def restore(config: Path):
    from pipelines.models.ssd import build_model
    from pipelines.models.warm_start import warm_start

    spec = load_train_spec(config)
    model = build_model(spec.model)
    return spec, model, warm_start(model, spec, from_scratch=False)


def assert_bit_equal(wanted: dict, tensors: dict) -> None:
    assert len({id(v) for v in wanted.values()}) == len(wanted), "two names map to one variable"
    for name, variable in wanted.items():
        np.testing.assert_array_equal(variable.numpy(), tensors[name + VALUE], err_msg=name)


# --- the network is the zoo's -----------------------------------------------------------------


def test_zoo_download_config_loads_unchanged_apart_from_paths(tmp_path):
    text = (ZOO_DIR / "pipeline.config").read_text().replace("PATH_TO_BE_CONFIGURED", str(tmp_path / "x"))
    (tmp_path / "pipeline.config").write_text(text)
    spec = load_train_spec(tmp_path / "pipeline.config")  # use_static_shapes: false and every default spelled out
    assert (
        spec.model.num_classes == 90
        and spec.model.input_size == 320
        and spec.fine_tune_checkpoint_type == ("classification")
    )


def test_a_field_written_with_a_non_default_value_is_still_refused(tmp_path):
    text = (ZOO_DIR / "pipeline.config").read_text().replace("use_static_shapes: false", "use_static_shapes: true")
    (tmp_path / "pipeline.config").write_text(text)
    with pytest.raises(OdliteError, match=r"pipeline.config:109: .*use_static_shapes: not supported"):
        load_pipeline_config(tmp_path / "pipeline.config")


def test_every_zoo_tensor_has_a_variable_of_its_shape(tmp_path):
    """All 384 names of the genuine index: 260 backbone, 30 FPN and coarse, 94 box predictor."""
    from pipelines.models.ssd import build_model
    from pipelines.models.warm_start import box_predictor_names, feature_extractor_names

    text = (ZOO_DIR / "pipeline.config").read_text().replace("PATH_TO_BE_CONFIGURED", str(tmp_path / "x"))
    (tmp_path / "pipeline.config").write_text(text)
    model = build_model(load_train_spec(tmp_path / "pipeline.config").model)
    extractor, predictor = feature_extractor_names(model), box_predictor_names(model)
    zoo = {n.removesuffix(VALUE): s for n, (s, _) in zoo_variables().items() if n.startswith("model/")}
    assert len(zoo) == 384
    assert sum(n.startswith("model/_feature_extractor/classification_backbone/") for n in extractor) == 260
    assert len(extractor) == 290 and len(predictor) == 94
    ours = {n: v.shape.as_list() for n, v in {**extractor, **predictor}.items()}
    assert ours == zoo
    # ...and nothing of the model is left out of the mapping.
    assert {id(v) for v in model.variables} == {id(v) for v in {**extractor, **predictor}.values()}


# --- fine_tune_checkpoint_type ----------------------------------------------------------------


def test_detection_restores_the_feature_extractor_bit_for_bit(zoo_checkpoint, zoo_tensors, tmp_path):
    from pipelines.models.warm_start import box_predictor_names, feature_extractor_names

    config = config_for(tmp_path, TOOTH_CONFIG, str(Path(zoo_checkpoint).parent), "detection")  # a folder works
    spec, model, said = restore(config)
    assert "290 tensors" in said and "box predictor fresh" in said and zoo_checkpoint in said
    assert_bit_equal(feature_extractor_names(model), zoo_tensors)
    head = box_predictor_names(model)
    bias = head[
        "model/_box_predictor/_prediction_heads/class_predictions_with_background/_class_predictor_layers/0/bias"
    ]
    np.testing.assert_allclose(bias.numpy(), -4.6, rtol=1e-6)  # fresh: the class prior, 2 classes


def test_full_restores_every_tensor_once_with_the_same_classes(zoo_checkpoint, zoo_tensors, tmp_path):
    from pipelines.models.warm_start import box_predictor_names, feature_extractor_names

    config = config_for(tmp_path, ZOO_DIR / "pipeline.config", zoo_checkpoint, "full")
    spec, model, said = restore(config)
    assert "384 tensors" in said and "the whole network" in said
    wanted = {**feature_extractor_names(model), **box_predictor_names(model)}
    assert_bit_equal(wanted, zoo_tensors)
    used = {n + VALUE for n in wanted}
    assert used == {n for n in zoo_tensors if n.startswith("model/")}


def test_a_users_own_od_api_run_loads_despite_optimizer_slots_step_and_another_head(zoo_tensors, tmp_path):
    from pipelines.models.warm_start import feature_extractor_names

    tensors = dict(zoo_tensors)
    kernel = "model/_feature_extractor/_fpn_features_generator/top_layers/0/kernel"
    tensors[f"{kernel}/.OPTIMIZER_SLOT/optimizer/momentum{VALUE}"] = np.ones([1, 1, 1280, 128], np.float32)
    tensors[f"step{VALUE}"] = np.array(1234, np.int64)
    tensors[f"optimizer/iter{VALUE}"] = np.array(1234, np.int64)
    head = "model/_box_predictor/_prediction_heads/class_predictions_with_background/_class_predictor_layers/0"
    tensors[f"{head}/bias{VALUE}"] = np.zeros([6 * 4], np.float32)  # their 3 classes
    tensors[f"{head}/pointwise_kernel{VALUE}"] = np.zeros([1, 1, 128, 6 * 4], np.float32)
    checkpoint = write_checkpoint(tmp_path / "own" / "ckpt-12", tensors)

    spec, model, said = restore(config_for(tmp_path, TOOTH_CONFIG, checkpoint, "detection"))
    assert "290 tensors" in said
    assert_bit_equal(feature_extractor_names(model), tensors)
    with pytest.raises(OdliteError, match=r"needs the checkpoint's num_classes \(3, here 2\).*'detection'") as info:
        restore(config_for(tmp_path, TOOTH_CONFIG, checkpoint, "full"))
    assert f"shape: {head}/bias is [24] in the checkpoint, [18] in this model" in str(info.value)


def test_classification_takes_the_backbone_of_any_keras_mobilenet_checkpoint(zoo_tensors, tmp_path):
    """The zoo configs' mobilenet_v2.ckpt-1 holds a Keras MobileNetV2 under its own root name."""
    from pipelines.models.warm_start import backbone_names

    backbone = "model/_feature_extractor/classification_backbone/"
    tensors = {n.replace(backbone, "feature_extractor/"): v for n, v in zoo_tensors.items() if n.startswith(backbone)}
    tensors[f"feature_extractor/layer_with_weights-104/kernel{VALUE}"] = np.zeros([1280, 1001], np.float32)  # top
    checkpoint = write_checkpoint(tmp_path / "mobilenet_v2.ckpt-1", tensors)
    spec, model, said = restore(config_for(tmp_path, TOOTH_CONFIG, checkpoint, "classification"))
    assert "260 tensors" in said and "'feature_extractor/'" in said
    assert_bit_equal(backbone_names(model.backbone, "feature_extractor/"), tensors)


def test_a_missing_tensor_is_named_with_its_shape(zoo_tensors, tmp_path):
    gone = "model/_feature_extractor/_fpn_features_generator/conv_layers/1/0/pointwise_kernel"
    tensors = {n: v for n, v in zoo_tensors.items() if n != gone + VALUE}
    checkpoint = write_checkpoint(tmp_path / "broken" / "ckpt-0", tensors)
    with pytest.raises(OdliteError, match=r"\(1 of its tensors unmatched\)") as info:
        restore(config_for(tmp_path, TOOTH_CONFIG, checkpoint, "detection"))
    message = str(info.value)
    assert f"missing: {gone} [1, 1, 128, 128]" in message
    assert f"{tmp_path / 'detection-0.config'}:train_config.fine_tune_checkpoint:" in message


def test_the_genuine_index_fits_and_missing_values_fail_clearly(tmp_path):
    """The real zoo index passes the name and shape check; its values are not in this repository."""
    with pytest.raises(OdliteError, match=r"ckpt-0: cannot read model/_feature_extractor/.*data-00000-of-00001"):
        restore(config_for(tmp_path, TOOTH_CONFIG, str(ZOO_INDEX), "detection"))


def test_an_unreadable_checkpoint_fails_clearly(tmp_path):
    broken = tmp_path / "broken" / "ckpt-0"
    broken.parent.mkdir()
    broken.with_name("ckpt-0.index").write_bytes(b"not a checkpoint index")
    with pytest.raises(
        OdliteError, match=r"train_config.fine_tune_checkpoint: .*ckpt-0 is not a readable TF2 checkpoint"
    ):
        restore(config_for(tmp_path, TOOTH_CONFIG, str(broken), "detection"))


def test_a_checkpoint_of_another_architecture_is_refused_by_name_and_shape(zoo_tensors, tmp_path):
    # Model Garden's FPN, as odlite built it before: the top level read the 320-channel map.
    top = "model/_feature_extractor/_fpn_features_generator/top_layers/0/kernel"
    tensors = {**zoo_tensors, top + VALUE: np.zeros([1, 1, 320, 128], np.float32)}
    checkpoint = write_checkpoint(tmp_path / "other" / "ckpt-0", tensors)
    with pytest.raises(OdliteError, match=re.escape(f"shape: {top} is [1, 1, 320, 128] in the checkpoint")):
        restore(config_for(tmp_path, TOOTH_CONFIG, checkpoint, "detection"))
    # A two-stage detector's feature extractor shares no name with FPNLite's.
    resnet = {f"model/_feature_extractor/_resnet_v1_50/conv1/kernel{VALUE}": np.zeros([7, 7, 3, 64], np.float32)}
    checkpoint = write_checkpoint(tmp_path / "resnet" / "ckpt-0", resnet)
    with pytest.raises(OdliteError, match=r"\(290 of its tensors unmatched\).*\n  missing: model/_feature_extractor/"):
        restore(config_for(tmp_path, TOOTH_CONFIG, checkpoint, "detection"))


@pytest.mark.slow
def test_training_says_what_it_restored(zoo_checkpoint, tiny_config, tmp_path, capsys):
    from pipelines.train import train

    config = tmp_path / "pipeline.config"
    patch_config(
        tiny_config,
        config,
        [f"fine_tune_checkpoint={zoo_checkpoint}", "train_config.fine_tune_checkpoint_type=detection", "num_steps=1"],
    )
    train(config, tmp_path / "model", progress=False)
    assert f"from OD API checkpoint {zoo_checkpoint}: 290 tensors by name" in capsys.readouterr().out


# --- the same computation as the OD API's --------------------------------------------------------


def _bn(x, tensors, prefix):
    def get(name):
        return tensors[f"{prefix}/{name}{VALUE}"]

    scale = get("gamma") / np.sqrt(get("moving_variance") + EPSILON)
    return x * scale + (get("beta") - get("moving_mean") * scale)


def _conv(x, kernel, stride=1):
    return tf.nn.conv2d(x, kernel, [1, stride, stride, 1], "SAME")


def _depthwise(x, kernel, stride=1):
    return tf.nn.depthwise_conv2d(x, kernel, [1, stride, stride, 1], "SAME")


def reference_features(images: np.ndarray, tensors: dict) -> dict[str, np.ndarray]:
    """MobileNetV2 + FPNLite + coarse levels written from the OD API's definitions, weights read by name."""
    backbone = "model/_feature_extractor/classification_backbone/layer_with_weights-"

    def w(index, name="kernel"):
        return tensors[f"{backbone}{index}/{name}{VALUE}"]

    def bn(x, index):
        return _bn(x, tensors, f"{backbone}{index}")

    x = images / 127.5 - 1.0
    x = tf.nn.relu6(bn(_conv(x, w(0), 2), 1))
    x = tf.nn.relu6(bn(_depthwise(x, w(2, "depthwise_kernel")), 3))
    x = bn(_conv(x, w(4)), 5)
    # (expansion, output channels, stride) of blocks 1-16, MobileNetV2's table.
    blocks = [(6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1), (6, 64, 1)]
    blocks += [(6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1), (6, 320, 1)]
    taps = {}
    for number, (_, channels, stride) in enumerate(blocks, start=1):
        base = 6 + (number - 1) * 6
        y = tf.nn.relu6(bn(_conv(x, w(base)), base + 1))
        y = tf.nn.relu6(bn(_depthwise(y, w(base + 2, "depthwise_kernel"), stride), base + 3))
        y = bn(_conv(y, w(base + 4)), base + 5)
        x = x + y if stride == 1 and x.shape[-1] == channels else y
        taps[number] = x
    out_relu = tf.nn.relu6(bn(_conv(x, w(102)), 103))

    fpn = "model/_feature_extractor/_fpn_features_generator/"

    def project(x, name):
        return _conv(x, tensors[f"{fpn}{name}/kernel{VALUE}"]) + tensors[f"{fpn}{name}/bias{VALUE}"]

    def separable_block(x, prefix, stride):
        depthwise = tensors[f"{prefix}/0/depthwise_kernel{VALUE}"]
        pointwise = tensors[f"{prefix}/0/pointwise_kernel{VALUE}"]
        x = tf.nn.separable_conv2d(x, depthwise, pointwise, [1, stride, stride, 1], "SAME")
        return tf.nn.relu6(_bn(x, tensors, f"{prefix}/1"))

    def upsample(x):
        return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)

    level5 = project(out_relu, "top_layers/0")
    level4 = separable_block(upsample(level5) + project(taps[12], "residual_blocks/0/0"), f"{fpn}conv_layers/0", 1)
    level3 = separable_block(upsample(level4) + project(taps[5], "residual_blocks/1/0"), f"{fpn}conv_layers/1", 1)
    coarse = "model/_feature_extractor/_coarse_feature_layers/"
    level6 = separable_block(level5, f"{coarse}0", 2)
    level7 = separable_block(level6, f"{coarse}1", 2)
    return {str(i): t.numpy() for i, t in zip(range(3, 8), (level3, level4, level5, level6, level7))}


@contextlib.contextmanager
def float64_keras():
    """Layers and inputs built in float64: float32 rounding, amplified by 17 random blocks, reaches 1e-4."""
    policy, floatx = tf_keras.mixed_precision.global_policy(), tf_keras.backend.floatx()
    tf_keras.mixed_precision.set_global_policy("float64")
    tf_keras.backend.set_floatx("float64")
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(policy)
        tf_keras.backend.set_floatx(floatx)


def test_backbone_and_fpn_compute_what_the_od_api_computes(zoo_checkpoint, zoo_tensors, tmp_path):
    from pipelines.models.ssd import build_model, normalize_pixels
    from pipelines.models.warm_start import warm_start

    spec = load_train_spec(config_for(tmp_path, TOOTH_CONFIG, zoo_checkpoint, "detection"))
    with float64_keras():
        model = build_model(spec.model)
    warm_start(model, spec, from_scratch=False)
    images = np.random.default_rng(1).uniform(0, 255, [2, 320, 320, 3])
    np.testing.assert_allclose(normalize_pixels(images).numpy(), images / 127.5 - 1.0, atol=1e-6)  # [-1, 1]
    ours = model.decoder(model.backbone(tf.constant(images / 127.5 - 1.0), training=False), training=False)
    tensors = {n: v.astype(np.float64) if v.dtype == np.float32 else v for n, v in zoo_tensors.items()}
    theirs = reference_features(images, tensors)
    assert {k: v.shape for k, v in theirs.items()} == {
        "3": (2, 40, 40, 128),
        "4": (2, 20, 20, 128),
        "5": (2, 10, 10, 128),
        "6": (2, 5, 5, 128),
        "7": (2, 3, 3, 128),
    }
    for level, expected in theirs.items():
        assert ours[level].dtype == tf.float64 and np.abs(expected).max() > 0.5  # non-trivial features
        np.testing.assert_allclose(ours[level].numpy(), expected, atol=1e-5, rtol=0, err_msg=f"level {level}")


# --- anchors ---------------------------------------------------------------------------------------


def od_api_grid(level: int, size: int, scales_per_octave=2, ratios=(1.0, 2.0, 0.5), anchor_scale=4.0) -> np.ndarray:
    """The OD API's MultiscaleGridAnchorGenerator, one anchor at a time: [H * W * A, 4] ymin, xmin, ymax, xmax."""
    stride = 2**level
    offset = stride / 2 if size % stride == 0 else 0.0
    cells = -(-size // stride)
    boxes = []
    for row in range(cells):
        for col in range(cells):
            for ratio in ratios:  # GridAnchorGenerator's meshgrid: aspect ratio outer, scale inner
                for s in range(scales_per_octave):
                    scale = 2 ** (s / scales_per_octave)
                    h = scale / math.sqrt(ratio) * anchor_scale * stride
                    w = scale * math.sqrt(ratio) * anchor_scale * stride
                    cy, cx = row * stride + offset, col * stride + offset
                    boxes.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(boxes, np.float32)


@pytest.mark.parametrize("size", [320, 384, 640])
def test_anchors_follow_the_od_api_formula(size):
    from pipelines.models.anchors import multilevel_anchors

    ours = multilevel_anchors(3, 7, 4.0, [1.0, 2.0, 0.5], 2, size)
    for level in range(3, 8):
        np.testing.assert_allclose(ours[str(level)].reshape(-1, 4), od_api_grid(level, size), rtol=1e-6, atol=1e-4)
    top = ours["7"].reshape(-1, 4)[0]
    if size == 320:  # 320 is no multiple of 128: the first level-7 centre is the corner
        np.testing.assert_allclose(top, [-256, -256, 256, 256])


def test_model_garden_orders_the_same_anchors_scale_first():
    from official.vision.ops import anchor

    from pipelines.models.anchors import multilevel_anchors

    ours = multilevel_anchors(3, 6, 4.0, [1.0, 2.0, 0.5], 2, 320)
    theirs = anchor.Anchor(3, 6, 2, [1.0, 2.0, 0.5], 4.0, [320, 320]).multilevel_boxes
    for level in range(3, 7):  # where both place the centres alike
        mine = ours[str(level)].reshape(*ours[str(level)].shape[:2], 6, 4)
        garden = theirs[str(level)].numpy().reshape(*mine.shape)
        np.testing.assert_allclose(mine, garden[:, :, [0, 3, 1, 4, 2, 5]], atol=1e-3)
