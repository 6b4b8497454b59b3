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


def _open_checked(data: bytes) -> tuple[Image.Image, int]:
    """The fully decoded image and its EXIF orientation; raises :class:`ImageProblem`."""
    if not data:
        raise ImageProblem("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
            orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except UnidentifiedImageError:
        raise ImageProblem("not an image, or a format that cannot be read") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageProblem(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"corrupt or truncated image: {exc}") from None
    return image, orientation


def upright_rgb(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] as a viewer shows the image (EXIF orientation applied); raises :class:`ImageProblem`."""
    image, _ = _open_checked(data)
    return np.asarray(_to_rgb(ImageOps.exif_transpose(image)))


def prepare_image(data: bytes) -> PreparedImage:
    """The JPEG to store and its displayed size; raises :class:`ImageProblem`."""
    image, orientation = _open_checked(data)
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
