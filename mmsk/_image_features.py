"""Classical image descriptors (:class:`~mmsk.image.ImageFeatures`)."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from PIL import Image

from ._base import ItemTransformer
from ._docstrings import fill_doc
from ._files import MAX_FILE_BYTES
from ._image_load import _BANDS, _check_choice, _check_pair, _uint8_pixels, load_image

_FEATURE_GROUPS = ("color", "hog", "stats")
_STATS = ("mean", "std", "min", "max")
#: Gradient magnitude (intensity change over two pixels, intensities in [0, 1])
#: above which a pixel counts as an edge in ``stat_edge_density``.
EDGE_THRESHOLD = 0.1


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
    _whole_files = True  # Pillow reads a small file in many small pieces: one read is faster

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
