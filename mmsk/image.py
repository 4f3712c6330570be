"""Image extractors: fixed-size pixels, classical descriptors, pretrained embeddings.

An image *item* is a path to a file Pillow can read (PNG, JPEG, BMP, GIF,
TIFF, WebP, ...), the raw ``bytes`` of such a file, a :class:`PIL.Image.Image`,
a numpy array (``(H, W)`` grey or ``(H, W, C)`` with ``C`` in 1, 3, 4), or a
missing value. :func:`load_image` turns any of them into a PIL image; the
transformers resize it and turn it into numbers. :class:`ImageEncoder` runs
the resized images through a frozen torch model; torch (and torchvision,
extra ``vision``, for named backbones) is imported on first use only.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from numbers import Integral, Real
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._base import BadItem, ItemTransformer
from ._docstrings import fill_doc
from ._embed import Embedder, module_fingerprint
from ._files import MAX_FILE_BYTES, open_regular
from ._optional import import_optional
from ._torch import resolve_device

__all__ = ["ImageEncoder", "ImageFeatures", "ImagePixels", "load_image"]

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
_FEATURE_GROUPS = ("color", "hog", "stats")
_STATS = ("mean", "std", "min", "max")
#: Gradient magnitude (intensity change over two pixels, intensities in [0, 1])
#: above which a pixel counts as an edge in ``stat_edge_density``.
EDGE_THRESHOLD = 0.1
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
        with open_regular(source) as fh:  # a regular file within MAX_FILE_BYTES
            img = _open(fh)
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


@lru_cache(maxsize=16)
def _pixel_names(height: int, width: int, bands: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"px_{r}_{c}_{b}" for b in bands for r in range(height) for c in range(width))


# -- ImagePixels -------------------------------------------------------------------
@fill_doc
class ImagePixels(ItemTransformer):
    """Fixed-size pixels of each image, as floats in [0, 1].

    Each image is converted to ``mode``, brought to ``size`` by the
    ``resize`` policy, and flattened channels-first: the output row is the
    ``(C, H, W)`` array in C order, so ``X.reshape(-1, *output_shape_)`` is
    the batch a convolutional tower (``torch.nn.Conv2d``) takes. Feature
    names are ``px_{row}_{col}_{band}``, e.g. ``px_0_0_L`` or
    ``px_3_7_R``.

    {items}

    Parameters
    ----------
    size : (int, int), default=(28, 28)
        Output ``(width, height)`` in pixels, in Pillow's order (as in
        :meth:`PIL.Image.Image.resize`). ``output_shape_`` and the feature
        names use ``(rows, cols)`` = ``(height, width)``.
    mode : {"L", "RGB", "LA", "RGBA"}, default="L"
        Pillow mode to convert every image to: grey, colour, with or
        without alpha. The channels, in this order, are the bands of the
        mode.
    resize : {"stretch", "pad", "crop"}, default="stretch"
        How to reach ``size``. ``"stretch"`` resizes to it, changing the
        aspect ratio if needed; ``"pad"`` keeps the aspect ratio, fits the
        image inside ``size`` and centres it on black (0) bars;
        ``"crop"`` keeps the aspect ratio, scales the image until it
        covers ``size`` and keeps the centre.
    resample : {"bilinear", "nearest", "box", "hamming", "bicubic", "lanczos"}, \
default="bilinear"
        Pillow's resampling filter.
    {file_limits}
    {on_error}
    {n_jobs}
    {memory}
    {verbose}

    Attributes
    ----------
    output_shape_ : tuple of int
        ``(channels, height, width)`` of one image, channels first.
    n_features_in_ : int
        Always 1: one column of items.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        ``channels * height * width``.

    See Also
    --------
    ImageFeatures : Colour histograms, gradient histograms and statistics.
    load_image : How one item is decoded.

    Notes
    -----
    In-memory items are :class:`PIL.Image.Image` objects and numpy arrays
    of shape ``(H, W)`` (grey) or ``(H, W, C)`` with ``C`` in 1, 3, 4
    (channels last); a numeric array of shape ``(n, H, W[, C])`` given as
    ``X`` is read as ``n`` such items. Arrays are read as 8-bit images:
    ``uint8`` values as 0..255, floats as [0, 1] (rounded to 1/255 steps),
    booleans as 0 and 1. 16-bit grey files are scaled to 8 bits. Converting
    to ``"L"`` uses Pillow's luma transform; converting an image with alpha
    to ``"L"`` or ``"RGB"`` drops the alpha channel. EXIF orientation tags
    are not applied.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import ImagePixels
    >>> images = [np.full((8, 8), 255, dtype=np.uint8), np.zeros((6, 9), dtype=np.uint8)]
    >>> pixels = ImagePixels(size=(4, 4)).fit(images)
    >>> pixels.transform(images).shape, pixels.output_shape_
    ((2, 16), (1, 4, 4))
    >>> pixels.transform(images)[:, 0]
    array([1., 0.], dtype=float32)
    >>> pixels.get_feature_names_out()[:3].tolist()
    ['px_0_0_L', 'px_0_1_L', 'px_0_2_L']
    """

    _what = "images"
    _versioned = ("Pillow",)

    def __init__(
        self,
        *,
        size=(28, 28),
        mode="L",
        resize="stretch",
        resample="bilinear",
        max_file_bytes=MAX_FILE_BYTES,
        allowed_dirs=None,
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.size = size
        self.mode = mode
        self.resize = resize
        self.resample = resample
        self.max_file_bytes = max_file_bytes
        self.allowed_dirs = allowed_dirs
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self) -> None:
        _check_pair(self.size, "size", "(width, height)")
        _check_choice(self.mode, "mode", tuple(_BANDS))
        _check_choice(self.resize, "resize", _RESIZE_POLICIES)
        _check_choice(self.resample, "resample", tuple(_RESAMPLE))

    def _fit_items(self, items, column, labels=None) -> None:
        width, height = self.size
        self.output_shape_ = (len(_BANDS[self.mode]), int(height), int(width))

    def _feature_names(self) -> list[str]:
        width, height = self.size
        return list(_pixel_names(int(height), int(width), _BANDS[self.mode]))

    def _extract(self, source: Any) -> np.ndarray:
        img = load_image(source, self.mode)
        width, height = int(self.size[0]), int(self.size[1])
        target = (width, height)
        resample = _RESAMPLE[self.resample]
        if self.resize == "pad":
            arr = _pad(img, target, resample)
        else:
            if self.resize == "crop":
                box = _crop_box(img.size, target)
                if box is not None:
                    img = img.resize(target, resample, box=box)
            if img.size != target:
                img = img.resize(target, resample)
            arr = _uint8_pixels(img)
        if arr.ndim == 3:
            arr = arr.transpose(2, 0, 1)
        return np.divide(arr, np.float32(255), dtype=np.float32, order="C").reshape(-1)


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


# -- ImageFeatures -----------------------------------------------------------------
@fill_doc
class ImageFeatures(ItemTransformer):
    """Classical image descriptors: colour histograms, gradient histograms, statistics.

    Each image is converted to ``mode`` and resized to ``size``
    (stretched). Then, for the groups named in ``features`` (always
    output in the order colour, HOG, statistics):

    - ``"color"``: a histogram of the 0..255 values of each channel in
      ``color_bins`` equal bins, normalised to sum to 1 per channel.
      Names ``color_{band}_{bin}``, e.g. ``color_R_07``.
    - ``"hog"``: a histogram of oriented gradients of the grey image
      (intensities in [0, 1]), computed with numpy: central-difference
      gradients, unsigned orientations (0 to 180 degrees) voted into
      ``hog_orientations`` bins weighted by the gradient magnitude (split
      linearly between the two nearest bins), one histogram per cell of a
      ``hog_cells`` grid, each L2-normalised. Bin ``k`` is centred on
      ``k * 180 / hog_orientations`` degrees: bin 0 holds horizontal
      gradients (vertical edges). Names ``hog_r{row}_c{col}_o{bin}``,
      e.g. ``hog_r1_c2_o05``.
    - ``"stats"``: the mean, standard deviation, minimum and maximum of
      each channel in [0, 1] (``stat_R_mean``), then the mean gradient
      magnitude of the grey image (``stat_grad_mean``) and the fraction of
      its pixels whose gradient magnitude exceeds 0.1 (``stat_edge_density``).

    {items}

    Parameters
    ----------
    size : (int, int), default=(64, 64)
        ``(width, height)`` the image is resized to before description, in
        Pillow's order.
    mode : {"RGB", "L"}, default="RGB"
        Colour or grey: the channels of the colour histograms and
        statistics. The gradients always use the grey image.
    features : sequence of {"color", "hog", "stats"}, default=("color", "hog", "stats")
        Which groups to compute.
    color_bins : int, default=16
        Number of histogram bins per channel, between 1 and 256.
    hog_orientations : int, default=9
        Number of orientation bins over 0 to 180 degrees.
    hog_cells : (int, int), default=(4, 4)
        Number of cells ``(rows, cols)`` the image is divided into for the
        gradient histograms; each must not exceed the image's height and
        width in pixels.
    {file_limits}
    {on_error}
    {n_jobs}
    {memory}
    {verbose}

    Attributes
    ----------
    n_features_in_ : int
        Always 1: one column of items.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        Number of descriptors per image.

    See Also
    --------
    ImagePixels : The resized pixels themselves.
    load_image : How one item is decoded.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import ImageFeatures
    >>> red = np.zeros((16, 16, 3), dtype=np.uint8)
    >>> red[..., 0] = 255
    >>> feats = ImageFeatures(size=(16, 16), color_bins=4, features=["color"])
    >>> feats.fit_transform([red]).round(2)
    array([[0., 0., 0., 1., 1., 0., 0., 0., 1., 0., 0., 0.]], dtype=float32)
    >>> feats.get_feature_names_out()[:4].tolist()
    ['color_R_00', 'color_R_01', 'color_R_02', 'color_R_03']
    """

    _what = "images"
    _versioned = ("Pillow",)

    def __init__(
        self,
        *,
        size=(64, 64),
        mode="RGB",
        features=("color", "hog", "stats"),
        color_bins=16,
        hog_orientations=9,
        hog_cells=(4, 4),
        max_file_bytes=MAX_FILE_BYTES,
        allowed_dirs=None,
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.size = size
        self.mode = mode
        self.features = features
        self.color_bins = color_bins
        self.hog_orientations = hog_orientations
        self.hog_cells = hog_cells
        self.max_file_bytes = max_file_bytes
        self.allowed_dirs = allowed_dirs
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _groups(self) -> list[str]:
        features = [self.features] if isinstance(self.features, str) else list(self.features)
        return [g for g in _FEATURE_GROUPS if g in features]

    def _check_params(self) -> None:
        width, height = _check_pair(self.size, "size", "(width, height)")
        _check_choice(self.mode, "mode", ("RGB", "L"))
        features = self.features
        if isinstance(features, str):
            features = [features]
        try:
            features = list(features)
        except TypeError:
            features = None
        if (
            not features
            or any(not isinstance(f, str) or f not in _FEATURE_GROUPS for f in features)
            or len(set(features)) != len(features)
        ):
            raise ValueError(
                f"features must be a non-empty sequence of distinct names from {_FEATURE_GROUPS}, "
                f"got {self.features!r}"
            )
        for name, low, high in (("color_bins", 1, 256), ("hog_orientations", 1, 180)):
            value = getattr(self, name)
            is_int = isinstance(value, Integral) and not isinstance(value, bool)
            if not is_int or not low <= value <= high:
                raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
        rows, cols = _check_pair(self.hog_cells, "hog_cells", "(rows, cols)")
        if "hog" in features and (rows > height or cols > width):
            raise ValueError(
                f"hog_cells={self.hog_cells!r} asks for more cells than the {height} x {width} "
                f"pixels of size={self.size!r} hold"
            )

    def _feature_names(self) -> list[str]:
        groups = self._groups()
        bands = _BANDS[self.mode]
        names: list[str] = []
        if "color" in groups:
            names += [f"color_{b}_{k:02d}" for b in bands for k in range(self.color_bins)]
        if "hog" in groups:
            rows, cols = self.hog_cells
            names += [
                f"hog_r{r}_c{c}_o{o:02d}"
                for r in range(rows)
                for c in range(cols)
                for o in range(self.hog_orientations)
            ]
        if "stats" in groups:
            names += [f"stat_{b}_{s}" for b in bands for s in _STATS]
            names += ["stat_grad_mean", "stat_edge_density"]
        return names

    def _extract(self, source: Any) -> np.ndarray:
        groups = self._groups()
        img = load_image(source, self.mode)
        size = (int(self.size[0]), int(self.size[1]))
        if img.size != size:
            img = img.resize(size, Image.Resampling.BILINEAR)
        arr = _uint8_pixels(img)
        channels = arr[:, :, None] if arr.ndim == 2 else arr
        parts = []
        if "color" in groups:
            parts.append(_color_histograms(channels, self.color_bins))
        if "hog" in groups or "stats" in groups:
            grey = arr if self.mode == "L" else _uint8_pixels(img.convert("L"))
            gx, gy = _gradients(np.divide(grey, np.float32(255), dtype=np.float32))
            magnitude = np.hypot(gx, gy)
            if "hog" in groups:
                parts.append(_hog(gx, gy, magnitude, self.hog_orientations, self.hog_cells))
            if "stats" in groups:
                values = channels.reshape(-1, channels.shape[2]) / np.float32(255)
                per_channel = np.stack(
                    [values.mean(0), values.std(0), values.min(0), values.max(0)], axis=1
                )
                parts.append(per_channel.reshape(-1))
                edges = (magnitude > EDGE_THRESHOLD).mean()
                parts.append(np.array([magnitude.mean(), edges], dtype=np.float32))
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])


def _color_histograms(channels: np.ndarray, bins: int) -> np.ndarray:
    """Per-channel histograms of ``(H, W, C)`` uint8 values, each summing to 1."""
    n_channels = channels.shape[2]
    index = channels.astype(np.intp) * bins // 256 + np.arange(n_channels) * bins
    counts = np.bincount(index.reshape(-1), minlength=n_channels * bins)
    return counts / (channels.shape[0] * channels.shape[1])


def _gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences ``I[x+1] - I[x-1]``; zero on the border."""
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    gx[:, 1:-1] = grey[:, 2:] - grey[:, :-2]
    gy[1:-1, :] = grey[2:, :] - grey[:-2, :]
    return gx, gy


def _hog(
    gx: np.ndarray, gy: np.ndarray, magnitude: np.ndarray, n_bins: int, cells: tuple[int, int]
) -> np.ndarray:
    """Magnitude-weighted unsigned orientation histograms per cell, L2-normalised."""
    height, width = magnitude.shape
    rows, cols = cells
    position = (np.degrees(np.arctan2(gy, gx)) % 180.0) * (n_bins / 180.0)
    low = np.floor(position)
    upper_weight = position - low
    low = low.astype(np.intp) % n_bins
    high = (low + 1) % n_bins
    cell_row = np.arange(height) * rows // height
    cell_col = np.arange(width) * cols // width
    cell = (cell_row[:, None] * cols + cell_col[None, :]) * n_bins
    size = rows * cols * n_bins
    hist = np.bincount(
        (cell + low).reshape(-1), (magnitude * (1 - upper_weight)).reshape(-1), size
    ) + np.bincount((cell + high).reshape(-1), (magnitude * upper_weight).reshape(-1), size)
    hist = hist.reshape(rows * cols, n_bins)
    norms = np.sqrt((hist**2).sum(axis=1, keepdims=True) + 1e-10)
    return (hist / norms).reshape(-1)


# -- ImageEncoder ------------------------------------------------------------------
#: Attribute names under which torchvision-style models keep their classification head.
_HEAD_NAMES = ("fc", "classifier", "head", "heads")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
_ENCODER_MODES = ("RGB", "L")
_OUTPUT = "the model's output"


class _Stop(BaseException):
    """Raised by a feature hook to end the forward pass once the features are known.

    A ``BaseException``, so that a model's own ``except Exception`` cannot swallow it.
    """


def _looks_like_path(value: Any) -> bool:
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and (
        os.path.isfile(value)
        or os.sep in value
        or "/" in value
        or value.lower().endswith(_WEIGHT_SUFFIXES)
    )


def _read_state_dict(path: Any) -> dict:
    """Read a state dict saved with ``torch.save(module.state_dict(), path)``."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ImageEncoder: weights file not found: {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - say what the file should hold
        raise ValueError(
            f"ImageEncoder: cannot read weights from {path!r} ({type(exc).__name__}: {exc}). "
            "weights= takes a state dict saved with torch.save(module.state_dict(), path); "
            "a whole module saved with torch.save(module, path) goes in model= instead."
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint
    if not isinstance(state, dict):
        raise ValueError(f"ImageEncoder: {path!r} holds a {type(state).__name__}, not a state dict")
    return state


def _load_image_model(model: Any, weights: Any, device: Any) -> Any:
    """Build the torch module that ``model`` and ``weights`` name, frozen, on ``device``.

    A module object is deep-copied (the user's object is never changed).
    """
    import torch

    nn = torch.nn
    weight_file = weights is not None and _looks_like_path(weights)
    torchvision_name = isinstance(model, str) and not _looks_like_path(model)
    if weights is not None and not weight_file and not torchvision_name:
        raise ValueError(
            f"ImageEncoder: weights={weights!r} is not an existing file, and a weights name "
            "('DEFAULT', 'IMAGENET1K_V1') needs a torchvision model name as model="
        )
    if isinstance(model, nn.Module):
        module = copy.deepcopy(model)
    elif isinstance(model, (str, os.PathLike)) and _looks_like_path(model):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ImageEncoder: model file not found: {path!r}")
        module = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"ImageEncoder: {path!r} holds a {type(module).__name__}, not a torch module. "
                "For a state dict, give the architecture as model= (a module, a class or a "
                "torchvision name) and the file as weights=."
            )
    elif isinstance(model, str):
        tv = import_optional("torchvision", "vision")
        if weight_file:
            named = None
        elif weights is None:
            named = "DEFAULT"
        else:
            named = weights
        module = tv.models.get_model(model, weights=named)
    elif callable(model):
        module = model()
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"ImageEncoder: model() returned a {type(module).__name__}, not a torch module"
            )
    else:
        raise ValueError(f"ImageEncoder: cannot make a model from {model!r}")
    if weight_file:
        state = _read_state_dict(weights)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"ImageEncoder: the weights in {os.fspath(weights)!r} do not fit "
                f"{type(module).__name__}: {exc}"
            ) from exc
    module.eval()
    module.requires_grad_(False)
    return module.to(resolve_device(device))


def _find_head(module: Any) -> tuple[str, Any]:
    """Name and module of the final classification layer (a Linear)."""
    import torch

    linear = torch.nn.Linear
    for name in _HEAD_NAMES:
        sub = getattr(module, name, None)
        if isinstance(sub, linear):
            return name, sub
        if isinstance(sub, torch.nn.Module):
            inner = [(n, m) for n, m in sub.named_modules() if isinstance(m, linear)]
            if inner:
                return f"{name}.{inner[-1][0]}", inner[-1][1]
    if isinstance(module, torch.nn.Sequential):
        inner = [(n, m) for n, m in module.named_children() if isinstance(m, linear)]
        if inner:
            return inner[-1]
    raise ValueError(
        f"ImageEncoder: cannot tell the final layer of {type(module).__name__} (no Linear "
        f"named {', '.join(_HEAD_NAMES)}, and not a Sequential ending in one). Give "
        "layer='<submodule name>' (its output is the embedding) or layer=None (the model's output)."
    )


def _first_tensor(value: Any, what: str) -> Any:
    import torch

    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"ImageEncoder: {what} is a {type(value).__name__}, not a tensor")
    return value


class _FrozenImageModel:
    """A loaded model in eval mode on its device, and the layer whose features it returns."""

    def __init__(self, module: Any, layer: Any, device: Any):
        import torch

        self.module = module
        self.device = torch.device(resolve_device(device))
        self.dtype = next(
            (p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32
        )
        self._box: list[Any] = []
        if layer is None:
            self.where = _OUTPUT
            return
        if layer == "penultimate":
            name, target = _find_head(module)
            self.where = f"the input of {name!r}"
            target.register_forward_pre_hook(self._keep_input)
        else:
            try:
                target = module.get_submodule(layer)
            except AttributeError:
                children = [n for n, _ in module.named_children()]
                raise ValueError(
                    f"ImageEncoder: {type(module).__name__} has no submodule {layer!r}; "
                    f"its children are {children}"
                ) from None
            self.where = f"the output of {layer!r}"
            target.register_forward_hook(self._keep_output)

    def _keep_input(self, module: Any, args: tuple) -> None:
        self._box.append(args[0] if args else None)
        raise _Stop

    def _keep_output(self, module: Any, args: tuple, output: Any) -> None:
        self._box.append(output)
        raise _Stop

    def __call__(self, pixels: np.ndarray, mean: Any, std: Any) -> np.ndarray:
        """Embed a batch of ``(n, H, W, C)`` uint8 images; return ``(n, dim)`` float32."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(pixels).to(self.device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).to(self.dtype, memory_format=torch.contiguous_format)
            x = x.div_(255)
            if mean is not None:
                x = x.sub_(torch.tensor(mean, dtype=self.dtype).to(self.device).view(1, -1, 1, 1))
            if std is not None:
                x = x.div_(torch.tensor(std, dtype=self.dtype).to(self.device).view(1, -1, 1, 1))
            try:
                out = self.module(x)
            except _Stop:
                out = self._box.pop()
            else:
                if self.where != _OUTPUT:
                    raise ValueError(
                        f"ImageEncoder: the forward pass of {type(self.module).__name__} never "
                        f"reached {self.where}: choose another layer"
                    )
            finally:
                self._box.clear()
            out = _first_tensor(out, self.where)
            return out.reshape(out.shape[0], -1).float().cpu().numpy()


def _encoder_input(source: Any, *, mode: str, size: tuple[int, int], resize: str) -> np.ndarray:
    """Decode one item and bring it to ``size``: an ``(H, W, C)`` uint8 array."""
    img = load_image(source, mode)
    resample = Image.Resampling.BILINEAR
    if resize == "pad":
        arr = _pad(img, size, resample)
    else:
        if resize == "crop":
            box = _crop_box(img.size, size)
            if box is not None:
                img = img.resize(size, resample, box=box)
        if img.size != size:
            img = img.resize(size, resample)
        arr = _uint8_pixels(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _check_stats(value: Any, name: str, channels: int, positive: bool) -> None:
    if value is None:
        return
    ok = isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str)
    if ok:
        values = list(value)
        ok = len(values) == channels and all(
            isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v) for v in values
        )
        ok = ok and (not positive or all(v > 0 for v in values))
    if not ok:
        sign = "positive " if positive else ""
        raise ValueError(
            f"{name} must be None or {channels} {sign}numbers (one per channel of the mode), "
            f"got {value!r}"
        )


@fill_doc
class ImageEncoder(Embedder):
    """Frozen embeddings of images from a pretrained torch model.

    Every image is converted to ``mode``, resized to ``size``, scaled to
    [0, 1] and normalised with ``mean`` and ``std`` (per channel), and the
    batch goes through the model in eval mode with no gradients. The row
    is the model's features at ``layer``: by default the input of its final
    classification layer (the penultimate layer, e.g. the 512 pooled
    features of a ResNet-18).

    - **Any model**: a ``torch.nn.Module`` object, a class or function
      that builds one, a file holding a whole saved module, or a
      torchvision model name (extra ``vision``), each with optional
      ``weights`` from a local file.
    - **Lazy**: the model is built or loaded on first use (``fit``, or
      ``transform`` after unpickling), never by the constructor; ``clone``
      and ``set_params`` never load it. The loaded model is not pickled.
    - **Batched**: ``batch_size`` images per forward pass, on the GPU when
      there is one (``device="auto"``); ``n_jobs`` joblib workers decode
      and resize the images meanwhile.
    - **Cached**: with ``memory=``, each image's embedding is stored under
      the image's content, the model's weights and the preprocessing, so a
      grid search or a cross-validation embeds each image once.

    {items}

    Parameters
    ----------
    model : str, path-like, torch.nn.Module or callable, default="resnet18"
        The backbone:

        - a torchvision model name (``"resnet18"``, ``"efficientnet_b0"``,
          ``"vit_b_16"``, ...; needs ``pip install 'mmsk[vision]'``), built
          by ``torchvision.models.get_model``;
        - the path of a file holding a whole module saved with
          ``torch.save(module, path)`` (it is unpickled: load trusted files
          only);
        - a class or function called with no arguments that returns a
          module (use a module-level one, so that the estimator pickles);
        - a module object. It is a parameter like any other: it is pickled
          with the estimator and copied by :func:`~sklearn.base.clone`, and
          the embedder works on its own copy (your object is never moved,
          changed or put in eval mode).

        Names, paths and classes keep pickles small.
    weights : None, str or path-like, default=None
        The path of a state dict saved with
        ``torch.save(module.state_dict(), path)`` (a training checkpoint
        with a ``"state_dict"`` entry works too), loaded into the model
        (strictly: every key must match). For a torchvision name, also a
        weights name: ``"DEFAULT"``, ``"IMAGENET1K_V1"``,
        ``"ResNet18_Weights.IMAGENET1K_V1"``, downloaded on first use into
        torch's cache (``TORCH_HOME``). None keeps the weights the module
        comes with, and for a torchvision name means ``"DEFAULT"``, the
        pretrained weights.
    layer : "penultimate", str or None, default="penultimate"
        Where the features come from. ``"penultimate"``: the input of the
        final classification layer, the last ``Linear`` of the model's
        ``fc``, ``classifier``, ``head`` or ``heads`` (torchvision's names),
        or of an ``nn.Sequential`` model; the forward pass stops there. A
        submodule name (``"avgpool"``, ``"layer4"``, ``"features.7"``): the
        output of that submodule, flattened; the pass stops there too.
        None: the model's output, flattened.
    size : (int, int), default=(224, 224)
        ``(width, height)`` of the model's input, in Pillow's order.
    resize : {"stretch", "pad", "crop"}, default="stretch"
        How to reach ``size``, as in :class:`ImagePixels`: stretch, keep
        the aspect ratio and pad with black, or keep it and crop the
        centre.
    mode : {"RGB", "L"}, default="RGB"
        The channels the model takes: colour or grey.
    mean : sequence of float or None, default=(0.485, 0.456, 0.406)
        Per-channel mean subtracted from the [0, 1] pixels (ImageNet's by
        default); one value per channel of ``mode``. None subtracts
        nothing.
    std : sequence of float or None, default=(0.229, 0.224, 0.225)
        Per-channel standard deviation the pixels are divided by; None
        divides by nothing.
    batch_size : int, default=32
        Images per forward pass. The output does not depend on it (up to
        float rounding).
    device : "auto", str or torch.device, default="auto"
        Where the model runs: ``"auto"`` is ``"cuda"`` when a GPU is
        visible, else ``"cpu"``.
    {file_limits}
    {on_error}
    {n_jobs}
    {memory}
    {verbose}

    Attributes
    ----------
    embedding_dim_ : int
        Features per image at ``layer``, found by running the model once on
        a blank image in ``fit``.
    n_features_in_ : int
        Always 1: one column of items.
    feature_names_in_ : ndarray of shape (1,)
        The column name, when fitted on a DataFrame.
    n_features_out_ : int
        ``embedding_dim_``; the output names are ``emb_000``, ``emb_001``, ...

    See Also
    --------
    ImagePixels : The resized pixels themselves, for a trainable tower.
    ImageFeatures : Classical descriptors, no model needed.
    mmsk.text.SentenceEmbedder : Frozen embeddings of texts.

    Notes
    -----
    The cache key of an image is its content plus a fingerprint of the
    loaded model (architecture and weights), ``layer``, ``size``,
    ``resize``, ``mode``, ``mean``, ``std`` and the library versions; not
    ``batch_size``, ``device`` nor ``n_jobs``.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from mmsk import ImageEncoder
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    ...     torch.nn.Linear(4, 10))
    >>> encoder = ImageEncoder(model=net, size=(16, 16), mode="L", mean=(0.5,), std=(0.5,))
    >>> images = [np.zeros((20, 20), dtype=np.uint8), np.full((16, 24), 255, dtype=np.uint8)]
    >>> encoder.fit_transform(images).shape  # the 4 features entering the last Linear
    (2, 4)
    >>> encoder.get_feature_names_out().tolist()
    ['emb_000', 'emb_001', 'emb_002', 'emb_003']
    """

    _what = "images"
    _versioned = ("torch", "Pillow", "torchvision")
    _model_params = ("model", "weights", "layer", "device")
    _fingerprinted = ("model", "weights")

    def __init__(
        self,
        *,
        model="resnet18",
        weights=None,
        layer="penultimate",
        size=(224, 224),
        resize="stretch",
        mode="RGB",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        batch_size=32,
        device="auto",
        max_file_bytes=MAX_FILE_BYTES,
        allowed_dirs=None,
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.model = model
        self.weights = weights
        self.layer = layer
        self.size = size
        self.resize = resize
        self.mode = mode
        self.mean = mean
        self.std = std
        self.batch_size = batch_size
        self.device = device
        self.max_file_bytes = max_file_bytes
        self.allowed_dirs = allowed_dirs
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self) -> None:
        model = self.model
        if isinstance(model, str) and not model.strip():
            raise ValueError("model must name a model or a file, got an empty string")
        if not isinstance(model, (str, os.PathLike)) and not callable(model):
            raise ValueError(
                "model must be a torch module, a class or function that returns one, the path "
                f"of a saved module or a torchvision model name, got {model!r}"
            )
        weights = self.weights
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise ValueError(f"weights must be None, a path or a weights name, got {weights!r}")
        layer = self.layer
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(
                f"layer must be 'penultimate', a submodule name or None, got {layer!r}"
            )
        _check_pair(self.size, "size", "(width, height)")
        _check_choice(self.resize, "resize", _RESIZE_POLICIES)
        _check_choice(self.mode, "mode", _ENCODER_MODES)
        channels = len(_BANDS[self.mode])
        _check_stats(self.mean, "mean", channels, positive=False)
        _check_stats(self.std, "std", channels, positive=True)
        ok = isinstance(self.batch_size, Integral) and not isinstance(self.batch_size, bool)
        if not ok or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")

    def fit(self, X: Any, y: Any = None) -> ImageEncoder:
        """Check the parameters, load the model and learn the embedding size.

        No image is read: ``fit`` loads the model (on first use) and runs it
        once on a blank image of ``size``.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The training column (only its name is used).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        return super().fit(X, y)

    def transform(self, X: Any) -> np.ndarray:
        """Embed every image.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The images.

        Returns
        -------
        ndarray of float32, shape (n_images, embedding_dim_)
            One row per image; NaN for a missing image (and, with
            ``on_error="nan"``, an unreadable one).
        """
        return super().transform(X)

    # -- the work ------------------------------------------------------------
    def _load_model(self) -> _FrozenImageModel:
        module = _load_image_model(self.model, self.weights, self.device)
        return _FrozenImageModel(module, self.layer, self.device)

    def _model_fingerprint(self, model: _FrozenImageModel) -> str:
        return module_fingerprint(model.module)

    def _embedding_dim(self, model: _FrozenImageModel) -> int:
        width, height = int(self.size[0]), int(self.size[1])
        blank = np.zeros((1, height, width, len(_BANDS[self.mode])), dtype=np.uint8)
        return int(model(blank, self._stat(self.mean), self._stat(self.std)).shape[1])

    def _preparer(self) -> Callable[[Any], np.ndarray]:
        size = (int(self.size[0]), int(self.size[1]))
        return partial(_encoder_input, mode=self.mode, size=size, resize=self.resize)

    def _embed(self, model: _FrozenImageModel, inputs: list[Any]) -> np.ndarray:
        return model(np.stack(inputs), self._stat(self.mean), self._stat(self.std))

    @staticmethod
    def _stat(value: Any) -> list[float] | None:
        return None if value is None else [float(v) for v in value]
