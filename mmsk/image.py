"""Image extractors: fixed-size pixels and classical descriptors, with Pillow.

An image *item* is a path to a file Pillow can read (PNG, JPEG, BMP, GIF,
TIFF, WebP, ...), the raw ``bytes`` of such a file, a :class:`PIL.Image.Image`,
a numpy array (``(H, W)`` grey or ``(H, W, C)`` with ``C`` in 1, 3, 4), or a
missing value. :func:`load_image` turns any of them into a PIL image; the
transformers resize it and turn it into numbers.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from numbers import Integral
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._base import BadItem, ItemTransformer
from ._docstrings import fill_doc

__all__ = ["ImageFeatures", "ImagePixels", "load_image"]

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
        truncated (a :class:`ValueError`, reported with its row by the
        transformers).
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
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
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
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.size = size
        self.mode = mode
        self.resize = resize
        self.resample = resample
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self) -> None:
        _check_pair(self.size, "size", "(width, height)")
        _check_choice(self.mode, "mode", tuple(_BANDS))
        _check_choice(self.resize, "resize", _RESIZE_POLICIES)
        _check_choice(self.resample, "resample", tuple(_RESAMPLE))

    def _fit_items(self, items, column) -> None:
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
