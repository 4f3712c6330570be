"""Decoding one image item (:func:`~mmsk.image.load_image`) and shared resize helpers."""

from __future__ import annotations

import io
import os
from numbers import Integral
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._base import BadItem
from ._files import read_regular

#: Pillow's resampling filters by name.
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
#: Output modes and the band letters used in feature names.
_BANDS = {"L": ("L",), "LA": ("L", "A"), "RGB": ("R", "G", "B"), "RGBA": ("R", "G", "B", "A")}
_ARRAY_MODES = {2: "L", 3: "RGB", 4: "RGBA"}
_RESIZE_POLICIES = ("stretch", "pad", "crop")
_ACCEPTED = "a path, bytes, a PIL image or an ndarray"


# -- loading one item --------------------------------------------------------------
def _is_empty(fp: Any) -> bool:
    if isinstance(fp, (str, os.PathLike)):
        return os.path.getsize(fp) == 0
    if isinstance(fp, io.BytesIO):
        return fp.getbuffer().nbytes == 0
    return False


def _open(fp: Any) -> Image.Image:
    """Open and decode a file (path or file object), closing the file."""
    try:
        with Image.open(fp) as img:
            img.load()
    except UnidentifiedImageError:
        if _is_empty(fp):
            raise BadItem("empty file") from None
        raise BadItem("not an image Pillow can read (unknown format or corrupt header)") from None
    except (OSError, SyntaxError, EOFError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        text = str(exc).strip() or type(exc).__name__
        raise BadItem(f"truncated or corrupt image ({text})") from exc
    return img


def _from_array(a: np.ndarray) -> Image.Image:
    """Turn an ``(H, W)`` or ``(H, W, C)`` array into an 8-bit PIL image."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise BadItem(
            "an image array must be (H, W) grey or (H, W, C) channels-last with C in 1, 3, 4; "
            f"got shape {a.shape}"
        )
    if a.size == 0:
        raise BadItem(f"empty image (array of shape {a.shape})")
    kind = a.dtype.kind
    if kind == "b":
        a = a.astype(np.uint8) * np.uint8(255)
    elif kind == "f":
        if not np.isfinite(a).all():
            raise BadItem("NaN or infinite pixel values")
        low, high = a.min(), a.max()
        if low < 0 or high > 1:
            raise BadItem(
                f"float pixel values must lie in [0, 1], got {low:.4g}..{high:.4g} "
                "(give uint8 arrays for 0..255 values)"
            )
        a = np.rint(a.astype(np.float32) * np.float32(255)).astype(np.uint8)
    elif kind in "ui":
        if a.dtype != np.uint8:
            low, high = a.min(), a.max()
            if low < 0 or high > 255:
                raise BadItem(
                    f"integer pixel values must lie in 0..255, got {low}..{high} "
                    "(give uint8 0..255 or floats in [0, 1])"
                )
            a = a.astype(np.uint8)
    else:
        raise BadItem(f"unsupported array dtype {a.dtype}; expected uint8, float or bool pixels")
    return Image.fromarray(np.ascontiguousarray(a))


def load_image(source: Any, mode: str | None = None) -> Image.Image:
    """Load one image item as a PIL image, converted to ``mode``.

    Parameters
    ----------
    source : str, path-like, bytes, file object, PIL.Image.Image or ndarray
        The item. Files are decoded and closed at once. An array is
        ``(H, W)`` grey or ``(H, W, C)`` with ``C`` in 1, 3 (RGB) or 4
        (RGBA); ``uint8`` (and other integer) values are read as 0..255,
        float values as [0, 1], booleans as black and white.
    mode : str or None, default=None
        A Pillow mode ("L", "RGB", ...) to convert to; None keeps the
        item's own mode. 16-bit grey images are scaled to 8 bits first.

    Returns
    -------
    PIL.Image.Image
        The decoded image. It may be ``source`` itself when that is a PIL
        image already in ``mode``: do not modify it in place.

    Raises
    ------
    mmsk._base.BadItem
        If the item is empty, of an unsupported type, not an image, or
        truncated, or a path that is not a regular file of at most 256 MiB
        (a :class:`ValueError`, reported with its row by the transformers).
    FileNotFoundError
        If a path does not exist.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.image import load_image
    >>> img = load_image(np.zeros((2, 3), dtype=np.uint8), "RGB")
    >>> img.mode, img.size
    ('RGB', (3, 2))
    """
    if isinstance(source, (str, os.PathLike)):
        img = _open(io.BytesIO(read_regular(source)))  # a regular file within MAX_FILE_BYTES
    elif hasattr(source, "read"):
        img = _open(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        img = _open(io.BytesIO(bytes(source)))
    elif isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _from_array(source)
    else:
        raise BadItem(f"unsupported item type {type(source).__name__}; expected {_ACCEPTED}")
    if img.width == 0 or img.height == 0:
        raise BadItem(f"empty image ({img.width} x {img.height} pixels)")
    if img.mode == "I" or img.mode.startswith("I;16"):
        # Pillow clips 16-bit values to 255 when converting; scale them instead.
        img = Image.fromarray((np.asarray(img).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8))
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    return img


# -- shared parameter checks -------------------------------------------------------
def _check_pair(value: Any, name: str, meaning: str) -> tuple[int, int]:
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in value)
    )
    if not ok:
        raise ValueError(f"{name} must be a pair of positive ints {meaning}, got {value!r}")
    return int(value[0]), int(value[1])


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _uint8_pixels(img: Image.Image) -> np.ndarray:
    """Return the pixels of an 8-bit image as ``(H, W)`` or ``(H, W, C)`` (read-only).

    Faster than ``np.asarray(img)`` for small images, with the same result.
    """
    data = np.frombuffer(img.tobytes(), dtype=np.uint8)
    bands = len(img.getbands())
    if bands == 1:
        return data.reshape(img.height, img.width)
    return data.reshape(img.height, img.width, bands)


def _crop_box(have: tuple[int, int], want: tuple[int, int]) -> tuple[float, ...] | None:
    """Return the centred source box with the target's aspect ratio (None: whole image)."""
    w, h = have
    target = want[0] / want[1]
    if w * want[1] > h * want[0]:  # too wide: cut the sides
        cw = h * target
        return ((w - cw) / 2, 0.0, (w + cw) / 2, float(h))
    if w * want[1] < h * want[0]:  # too tall: cut top and bottom
        ch = w / target
        return (0.0, (h - ch) / 2, float(w), (h + ch) / 2)
    return None


def _pad(img: Image.Image, want: tuple[int, int], resample: int) -> np.ndarray:
    """Fit ``img`` inside ``want`` keeping its aspect ratio, centred on zeros."""
    w, h = img.size
    width, height = want
    scale = min(width / w, height / h)
    new = (min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale))))
    if new != img.size:
        img = img.resize(new, resample)
    arr = _uint8_pixels(img)
    if new == want:
        return arr
    canvas = np.zeros((height, width) + arr.shape[2:], dtype=arr.dtype)
    top, left = (height - new[1]) // 2, (width - new[0]) // 2
    canvas[top : top + new[1], left : left + new[0]] = arr
    return canvas
