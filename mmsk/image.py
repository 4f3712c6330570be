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

from functools import lru_cache
from typing import Any

import numpy as np

from ._base import ItemTransformer
from ._docstrings import fill_doc
from ._files import MAX_FILE_BYTES
from ._image_encoder import ImageEncoder
from ._image_features import EDGE_THRESHOLD, ImageFeatures  # noqa: F401 (public constant)
from ._image_load import (
    _BANDS,
    _RESAMPLE,
    _RESIZE_POLICIES,
    _check_choice,
    _check_pair,
    _crop_box,
    _pad,
    _uint8_pixels,
    load_image,
)

__all__ = ["ImageEncoder", "ImageFeatures", "ImagePixels", "load_image"]

# The classes live in private modules by responsibility; their public home
# (pickle/skops type names, the allow-list, the API reference) stays mmsk.image.
for _public in (ImageEncoder, ImageFeatures, load_image):
    _public.__module__ = __name__
del _public


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
    _whole_files = True  # Pillow reads a small file in many small pieces: one read is faster
    _wire_dtype = np.uint8  # workers send the 8-bit pixels: a quarter of the float32 bytes

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
        return self._from_wire(self._extract_wire(source))

    def _from_wire(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:  # (one item per call in _extract: no out= keyword to parse)
            return np.divide(rows, np.float32(255), dtype=np.float32)
        return np.divide(rows, np.float32(255), out=out, dtype=np.float32)

    def _extract_wire(self, source: Any) -> np.ndarray:
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
            return np.ascontiguousarray(arr.transpose(2, 0, 1)).reshape(-1)
        return arr.reshape(-1)
