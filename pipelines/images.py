"""Decode, check and normalise images for the TFRecords.

A baseline RGB JPEG that needs no rotation is stored byte for byte (it is still fully
decoded once, to catch truncation and corruption). Anything else (PNG, grayscale,
CMYK, alpha, 16-bit, EXIF-rotated) is turned upright as a viewer shows it and
re-encoded as an RGB JPEG, so that every record decodes the same way in training.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

JPEG_QUALITY = 95
_EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


class ImageProblem(ValueError):
    """The image cannot be used; the message says why."""


@dataclass(frozen=True)
class PreparedImage:
    jpeg: bytes
    width: int
    height: int
    sha256: str
    reencoded: str = ""  # why the original bytes were not kept, empty when they were


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _why_reencode(image: Image.Image, orientation: int) -> str:
    if image.format != "JPEG":
        return f"{image.format or 'unknown'} image"
    if image.mode != "RGB":
        return f"{image.mode} JPEG"
    if orientation not in (0, 1):
        return f"EXIF orientation {orientation}"
    return ""


def _open_checked(data: bytes, needs=None) -> tuple[Image.Image, int, tuple[int, int]]:
    """The decoded image, its EXIF orientation and its size as displayed; raises :class:`ImageProblem`.

    With ``needs`` ((width, height) as displayed -> the size a model resizes it to), a JPEG is
    decoded at the smallest libjpeg scale (1, 1/2, 1/4, 1/8) still at least that large: the
    DCT does the downscaling, at a fraction of a full decode's cost. The whole stream is
    still read, so truncation and corruption are caught as before."""
    if not data:
        raise ImageProblem("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
            turned = orientation in _TURNED
            shown = image.size[::-1] if turned else image.size
            if needs is not None and image.format == "JPEG":
                width, height = needs(*shown)
                image.draft(image.mode, (height, width) if turned else (width, height))
            image.load()
    except UnidentifiedImageError:
        raise ImageProblem("not an image, or a format that cannot be read") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageProblem(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"corrupt or truncated image: {exc}") from None
    return image, orientation, shown


@dataclass(frozen=True)
class Picture:
    """An image as a viewer shows it (EXIF orientation applied): its pixels, perhaps decoded at a
    reduced scale, and its full displayed size, the frame its boxes are reported in."""

    rgb: np.ndarray
    width: int
    height: int


def load_picture(data: bytes, needs=None) -> Picture:
    """The one way inference paths (detect, serve) read an image; raises :class:`ImageProblem`.

    ``needs``: (width, height) -> the size the model resizes the picture to; a JPEG is then
    decoded no larger than needed (see ``_open_checked``). Other formats decode in full."""
    image, _, (width, height) = _open_checked(data, needs)
    return Picture(np.asarray(_to_rgb(ImageOps.exif_transpose(image))), width, height)


def prepare_image(data: bytes) -> PreparedImage:
    """The JPEG to store and its displayed size; raises :class:`ImageProblem`."""
    image, orientation, _ = _open_checked(data)
    reason = _why_reencode(image, orientation)
    if not reason:
        return PreparedImage(data, image.width, image.height, hashlib.sha256(data).hexdigest())
    upright = _to_rgb(ImageOps.exif_transpose(image))
    buffer = io.BytesIO()
    upright.save(buffer, "JPEG", quality=JPEG_QUALITY)
    jpeg = buffer.getvalue()
    return PreparedImage(jpeg, upright.width, upright.height, hashlib.sha256(jpeg).hexdigest(), reason)


def read_and_prepare(path: Path) -> PreparedImage:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageProblem(f"cannot read image: {exc.strerror or exc}") from None
    return prepare_image(data)
