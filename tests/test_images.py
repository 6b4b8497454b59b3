"""Image normalisation: pass-through for plain RGB JPEG, upright RGB JPEG for everything else."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import LABEL_MAP, Item, jpeg_bytes, records, seed_json
from made import png16
from PIL import Image, ImageFile

from pipelines.data.convert import convert
from pipelines.data.images import ImageProblem, ImageTooLarge, load_picture, prepare_image


def _decode(jpeg: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and image.mode == "RGB"
    return np.asarray(image)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_plain_rgb_jpeg_passes_through_byte_for_byte():
    data = jpeg_bytes(40, 30)
    prepared = prepare_image(data)
    assert prepared.jpeg == data and prepared.reencoded == ""
    assert (prepared.width, prepared.height) == (40, 30)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda im: _encode(im.convert("L"), "JPEG"), "L JPEG"),
        (lambda im: _encode(im.convert("CMYK"), "JPEG"), "CMYK JPEG"),
        (lambda im: _encode(im, "PNG"), "PNG image"),
        (lambda im: _encode(im.convert("RGBA"), "PNG"), "PNG image"),
        (lambda im: _encode(im.convert("P"), "PNG"), "PNG image"),
        (lambda im: _encode(im, "BMP"), "BMP image"),
    ],
)
def test_other_images_become_rgb_jpeg(make, reason):
    source = Image.fromarray(np.full((20, 30, 3), (200, 40, 90), np.uint8))
    prepared = prepare_image(make(source))
    assert prepared.reencoded == reason
    pixels = _decode(prepared.jpeg)
    assert pixels.shape == (20, 30, 3)
    if reason != "L JPEG":  # grayscale loses the colour; the rest keep it (CMYK approximately)
        assert np.abs(pixels.mean(axis=(0, 1)) - (200, 40, 90)).max() < 25


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    array = np.full((10, 12), 40000, np.uint16)
    prepared = prepare_image(_encode(Image.fromarray(array), "PNG"))
    assert abs(int(_decode(prepared.jpeg)[5, 5, 0]) - 40000 * 255 // 65535) <= 2


def test_transparent_pixels_are_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    prepared = prepare_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert _decode(prepared.jpeg).min() > 240


def _exif_rotated_jpeg() -> bytes:
    """Stored 40 wide x 20 high with a red top-left corner; EXIF 6 says: show it turned 90 degrees clockwise."""
    stored = np.full((20, 40, 3), 255, np.uint8)
    stored[:6, :6] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_rotation_is_applied_and_boxes_stay_in_the_displayed_frame(tmp_path):
    root = tmp_path / "src"
    (root / "img_train").mkdir(parents=True)
    (root / "json_train").mkdir()
    (root / "img_train" / "r.jpg").write_bytes(_exif_rotated_jpeg())
    # Displayed 20 wide x 40 high: a box reaching y=38 only fits the displayed frame.
    item = Item("r", 20, 40, [("caries", 2, 20, 18, 38)])
    (root / "json_train" / "r.json").write_text(json.dumps(seed_json(item)))
    result = convert(root, tmp_path / "out", label_map_path=LABEL_MAP, val_fraction=0, progress=False)
    assert result.reencoded == 1 and not result.warnings
    example = records(tmp_path / "out")["r.jpg"]
    assert (example["image/width"], example["image/height"]) == (20, 40)
    pixels = _decode(example["image/encoded"])
    assert pixels.shape == (40, 20, 3)
    # Turned clockwise, the stored top-left corner shows at the top-right.
    assert pixels[2, 17].astype(int).tolist() == pytest.approx([255, 0, 0], abs=40)
    assert pixels[2, 2].min() > 200
    assert example["image/object/bbox/ymax"][0] == pytest.approx(38 / 40)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"hello world, not an image", "not an image"),
        (jpeg_bytes(30, 30)[:300], "truncated"),
    ],
)
def test_unusable_images_raise(data, reason):
    with pytest.raises(ImageProblem, match=reason):
        prepare_image(data)


def test_a_picture_is_decoded_no_larger_than_the_model_needs_and_keeps_its_frame():
    from pipelines.data.images import load_picture

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8))
    data = _encode(image, "JPEG")
    square = lambda w, h: (320, 320)  # noqa: E731
    picture = load_picture(data, square)
    assert picture.rgb.shape == (540, 960, 3) and (picture.width, picture.height) == (1920, 1080)  # 1/2: 1/4 is 270
    assert load_picture(data, lambda w, h: (300, 200)).rgb.shape == (270, 480, 3)  # 1/4
    assert load_picture(data, lambda w, h: (200, 100)).rgb.shape == (135, 240, 3)  # 1/8
    assert load_picture(data).rgb.shape == (1080, 1920, 3)  # no model: full size
    # EXIF orientation 6 (turned): the displayed frame is 1080 x 1920, the scale chosen in it.
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = load_picture(_encode(image, "JPEG", exif=exif.tobytes()), lambda w, h: (300, 500))
    assert (turned.width, turned.height) == (1080, 1920) and turned.rgb.shape == (960, 540, 3)
    # Other formats decode in full, then are reduced by the same factors; a truncated JPEG still fails.
    png = _encode(image, "PNG")
    assert load_picture(png, square).rgb.shape == (540, 960, 3) and load_picture(png).rgb.shape == (1080, 1920, 3)
    with pytest.raises(ImageProblem, match="truncated"):
        load_picture(data[: len(data) // 2], square)


def test_records_of_large_photos_decode_small_with_ground_truth_in_full_pixels(tmp_path):
    import tensorflow as tf
    from conftest import write_seed
    from official.vision.dataloaders.tf_example_decoder import TfExampleDecoder

    from pipelines.data.tfrecord import decode_for_input
    from pipelines.data.train_input import ReducedDecoder
    from pipelines.evaluate import eval_dataset

    root = write_seed(tmp_path / "src", "val", [Item("big", 1400, 1000, [("caries", 100, 200, 500, 600)])])
    convert(root, tmp_path / "data", label_map_path=LABEL_MAP, progress=False)
    paths = [str(p) for p in (tmp_path / "data").glob("val-*.tfrecord")]
    raw = next(iter(tf.data.TFRecordDataset(paths)))
    encoded = tf.io.parse_single_example(raw, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})["image/encoded"]
    image, height, width = decode_for_input(encoded, 320)
    assert image.shape == (500, 700, 3) and (int(height), int(width)) == (1000, 1400)  # 1/2: 1/4 is 250 high
    assert decode_for_input(encoded, None)[0].shape == (1000, 1400, 3)
    png = tf.io.encode_png(image)
    assert decode_for_input(png, 100)[0].shape == (500, 700, 3)  # not a JPEG: in full
    images, truth = next(iter(eval_dataset(paths, 320, 1)))
    assert images.shape == (1, 320, 320, 3)
    assert (int(truth["image/height"][0]), int(truth["image/width"][0])) == (1000, 1400)  # boxes' frame
    full, reduced = TfExampleDecoder(regenerate_source_id=True).decode(raw), ReducedDecoder(320).decode(raw)
    assert full["image"].shape == (1000, 1400, 3) and reduced["image"].shape == (500, 700, 3)
    np.testing.assert_array_equal(reduced["groundtruth_boxes"], full["groundtruth_boxes"])
    assert (int(reduced["height"]), int(reduced["width"])) == (1000, 1400)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_the_pixel_budget_is_checked_on_the_header_before_any_pixel_is_decoded(fmt, monkeypatch):
    data = jpeg_bytes(300, 200, fmt=fmt)
    assert load_picture(data, max_pixels=60_000).rgb.shape == (200, 300, 3)  # at the limit: read

    def decode(image):
        raise AssertionError(f"{image.format} decoded before its size was checked")

    monkeypatch.setattr(Image.Image, "load", decode)
    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    for read in (lambda: load_picture(data, lambda w, h: (32, 32), 50_000), lambda: prepare_image(data, 50_000)):
        with pytest.raises(ImageTooLarge, match=r"300x200 is 0\.06 megapixels, over the limit of 0\.05"):
            read()


def test_a_small_png_of_tens_of_millions_of_pixels_is_refused_by_default():
    bomb = png16(8000, 8000)
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLarge, match="8000x8000 is 64 megapixels, over the limit of 50 .--max-megapixels."):
        load_picture(bomb, lambda w, h: (320, 320))


def test_sixteen_bit_greyscale_becomes_eight_bit_without_a_wide_copy():
    """A float64 copy of the image (the former conversion) is 8 bytes a pixel: 400 MB at 50 megapixels."""
    import tracemalloc

    from pipelines.data.images import _eight_bit

    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, (1000, 1200), dtype=np.uint16)
    values[0, :4] = (0, 128, 40000, 65535)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    tracemalloc.start()
    try:
        eight = _eight_bit(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * values.size, f"{peak / values.size:.1f} bytes a pixel allocated converting 16-bit greyscale"
    assert eight.mode == "L" and eight.size == image.size
    expected = np.round(values.astype(np.float64) * 255 / 65535)  # the reference, in the test only
    assert np.abs(np.asarray(eight).astype(int) - expected).max() == 0
    assert np.asarray(eight)[0, :4].tolist() == [0, 0, 156, 255]


def test_a_sixteen_bit_png_is_read_reduced_and_upright():
    big = np.zeros((1600, 2400), np.uint16)
    big[:400, :400] = 65535  # a white top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned clockwise: 1600 wide, 2400 high
    data = _encode(Image.fromarray(big), "PNG", exif=exif.tobytes())
    picture = load_picture(data, lambda w, h: (320, 320))
    assert (picture.width, picture.height) == (1600, 2400) and picture.rgb.shape == (600, 400, 3)  # 1/4
    assert picture.rgb.dtype == np.uint8 and picture.rgb[5, -5].tolist() == [255, 255, 255]  # now top-right
    assert picture.rgb[-5, 5].tolist() == [0, 0, 0]
