"""Decode, check and normalise images: for the TFRecords, and for every path that runs a model.

A baseline RGB JPEG that needs no rotation is stored byte for byte (it is still fully
decoded once, to catch truncation and corruption). Anything else (PNG, grayscale,
CMYK, alpha, 16-bit, EXIF-rotated) is turned upright as a viewer shows it and
re-encoded as an RGB JPEG, so that every record decodes the same way in training.

Every decode has a pixel budget, checked on the size in the file's header before any
pixel is decoded: a PNG of a few hundred kilobytes can hold a 9400 x 9400 16-bit image
that takes gigabytes to decode. It replaces Pillow's own guard (``Image.MAX_IMAGE_PIXELS``:
a warning at 89 megapixels, an error at 179 that names no size), which is one setting for
the whole process and could not follow a user's ``--max-megapixels``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

# The largest photos a clinic's cameras take at full resolution: full-frame bodies used for
# dental photography (Nikon D850 45.7 MP, Canon R5 45 MP) and phones' 48-50 MP modes (8160 x
# 6120 is 49.9 MP). Phones' 108 and 200 MP modes and larger bodies need --max-megapixels.
DEFAULT_MAX_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = None  # every decode in odlite goes through open_image's budget instead

JPEG_QUALITY = 95
SCALES = (8, 4, 2, 1)  # libjpeg's DCT scales (1/8 to 1/1); other formats are reduced by the same factors
_EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_UPRIGHT = {  # EXIF orientation -> the transpose that shows the image as a viewer does
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageProblem(ValueError):
    """The image cannot be used; the message says why."""


class ImageTooLarge(ImageProblem):
    """Past the pixel budget: found from the header, before anything was decoded."""


@dataclass(frozen=True)
class PreparedImage:
    jpeg: bytes
    width: int
    height: int
    sha256: str
    reencoded: str = ""  # why the original bytes were not kept, empty when they were


def megapixels(pixels: int) -> str:
    """``pixels`` in megapixels as a person writes them: 88.4, 64, 0.0048."""
    value = pixels / 1e6
    return f"{value:.1f}".removesuffix(".0") if value >= 1 else f"{value:.2g}"


def check_budget(width: int, height: int, max_pixels: int) -> None:
    """Raises :class:`ImageTooLarge` when ``width`` x ``height`` is past ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image too large: {width}x{height} is {megapixels(width * height)} megapixels, over the limit of "
            f"{megapixels(max_pixels)} (--max-megapixels)"
        )


def open_image(data: bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image, not yet decoded, once its header's size is within ``max_pixels``; raises :class:`ImageProblem`.
    ``data``: the file's bytes, or the file itself, of which only the header is read."""
    if not data:
        raise ImageProblem("empty file")
    try:
        image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    except UnidentifiedImageError:
        raise ImageProblem("not an image, or a format that cannot be read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"corrupt or truncated image: {exc}") from None
    check_budget(*image.size, max_pixels)
    return image


def _eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale as 8-bit 'L', a 16-bit range scaled to 0-255 (rounded), in Pillow's
    integer images: no wider copy than the source (a float64 array of a 50 MP image is 400 MB)."""
    if image.mode not in ("I;16", "I"):
        image = image.convert("I")  # I;16B and the like: rare, and point() takes only I;16 and I
    peak = 65535 if image.mode == "I;16" or image.getextrema()[1] > 255 else 255
    return image.point(lambda v: v * (255 / peak) + 0.5).convert("L")


def _transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _flat_rgb(image: Image.Image) -> Image.Image:
    """RGB, transparent pixels composited on white (pasted through the alpha: one RGB copy, no RGBA ones)."""
    if _transparent(image):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _upright_rgb(image: Image.Image, orientation: int, factor: int = 1) -> Image.Image:
    """The decoded image as 8-bit RGB, reduced ``factor`` times (a box filter, as libjpeg's scaling is)
    and turned as a viewer shows it; reduced first, so that the copies after it are small."""
    if image.mode.startswith("I"):
        image = _eight_bit(image)
    if factor > 1:
        if image.mode not in ("L", "LA", "RGB", "RGBA"):  # the modes reduce() takes (LA, RGBA premultiplied)
            image = image.convert("RGBA" if _transparent(image) else "RGB")
        image = image.reduce(factor)
    image = _flat_rgb(image)
    return image.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else image


def _why_reencode(image: Image.Image, orientation: int) -> str:
    if image.format != "JPEG":
        return f"{image.format or 'unknown'} image"
    if image.mode != "RGB":
        return f"{image.mode} JPEG"
    if orientation not in (0, 1):
        return f"EXIF orientation {orientation}"
    return ""


def _scale(size: tuple[int, int], wanted: tuple[int, int]) -> int:
    """The largest of SCALES that leaves both sides of ``size`` at least ``wanted``: Pillow's draft rule."""
    fits = min(size[0] // max(wanted[0], 1), size[1] // max(wanted[1], 1))
    return next(s for s in SCALES if s <= max(fits, 1))


def _decoded(data: bytes, needs=None, max_pixels: int = DEFAULT_MAX_PIXELS):
    """(the decoded image, its EXIF orientation, its size as displayed, the factor it is still to be
    reduced by); raises :class:`ImageProblem`.

    With ``needs`` ((width, height) as displayed -> the size a model resizes it to), the image is
    brought to the smallest scale of SCALES still at least that large: a JPEG is decoded at it
    (the DCT does the downscaling, at a fraction of a full decode's cost), other formats are
    decoded in full and reduced by ``_upright_rgb``. The whole stream is still read, so
    truncation and corruption are caught as before."""
    image = open_image(data, max_pixels)
    try:
        orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)  # a PNG's decodes it: within budget
        turned = orientation in _TURNED
        shown = image.size[::-1] if turned else image.size
        factor = 1
        if needs is not None:
            width, height = needs(*shown)
            wanted = (height, width) if turned else (width, height)
            if image.format == "JPEG":
                image.draft(image.mode, wanted)
            else:
                factor = _scale(image.size, wanted)
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"corrupt or truncated image: {exc}") from None
    return image, orientation, shown, factor


@dataclass(frozen=True)
class Picture:
    """An image as a viewer shows it (EXIF orientation applied): its pixels, perhaps decoded at a
    reduced scale, and its full displayed size, the frame its boxes are reported in."""

    rgb: np.ndarray
    width: int
    height: int


def load_picture(data: bytes, needs=None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """The one way inference paths (detect, serve) read an image; raises :class:`ImageProblem`.

    ``needs``: (width, height) -> the size the model resizes the picture to; the picture is then
    no larger than the smallest of SCALES that covers it (see ``_decoded``)."""
    image, orientation, (width, height), factor = _decoded(data, needs, max_pixels)
    return Picture(np.asarray(_upright_rgb(image, orientation, factor)), width, height)


def prepare_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedImage:
    """The JPEG to store and its displayed size; raises :class:`ImageProblem`."""
    image, orientation, _, _ = _decoded(data, max_pixels=max_pixels)
    reason = _why_reencode(image, orientation)
    if not reason:
        return PreparedImage(data, image.width, image.height, hashlib.sha256(data).hexdigest())
    upright = _upright_rgb(image, orientation)
    buffer = io.BytesIO()
    upright.save(buffer, "JPEG", quality=JPEG_QUALITY)
    jpeg = buffer.getvalue()
    return PreparedImage(jpeg, upright.width, upright.height, hashlib.sha256(jpeg).hexdigest(), reason)


def read_and_prepare(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedImage:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageProblem(f"cannot read image: {exc.strerror or exc}") from None
    return prepare_image(data, max_pixels)
