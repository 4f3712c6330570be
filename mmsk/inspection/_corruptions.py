"""Per-modality corruptions at graded levels, applied to raw items.

A corruption takes the items of one column (paths, bytes, arrays, PIL
images, texts, missing values: the item forms of :mod:`mmsk._items`) and a
*level*, and returns corrupted items that mmsk's extractors accept, kept in
memory: audio as WAV bytes at the file's own rate (or a waveform array, for a
waveform item), images as ``uint8`` arrays, texts as ``str``. Missing items
stay missing. Decoding uses the libraries the extractors use (soundfile,
Pillow), so a corrupted item is read exactly as the original would be.

Levels go from mild to severe in the order given; each class has a
``clean_level`` (the level that changes nothing) and default ``levels``.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, clone

from .._items import BadItem, ItemError, as_items, describe_item, is_missing, item_source

__all__ = [
    "AudioNoise",
    "Corruption",
    "ImageBlur",
    "ImageNoise",
    "ImageOcclusion",
    "MissingModality",
    "TokenDrop",
    "get_corruption",
]


class Corruption(BaseEstimator):
    """Base class of the corruptions: the item loop, level checks, errors.

    A subclass sets :attr:`name`, :attr:`kinds`, :attr:`unit` and
    :attr:`clean_level`, and writes ``_check_level`` and ``_corrupt_item``
    (one item, one level, a :class:`numpy.random.Generator`).

    Parameters
    ----------
    levels : sequence of float
        The levels to evaluate, from mild to severe.

    Examples
    --------
    >>> from mmsk.inspection import TokenDrop
    >>> TokenDrop(levels=[0.5]).levels
    [0.5]
    """

    #: Short name, as used in ``robustness_report(corruptions=...)``.
    name: ClassVar[str] = ""
    #: Modality kinds the corruption is meant for (None: any).
    kinds: ClassVar[tuple[str, ...] | None] = None
    #: What a level measures, for tables and plots.
    unit: ClassVar[str] = "level"
    #: The level at which nothing changes (the clean input).
    clean_level: ClassVar[float] = 0.0

    def __init__(self, levels: Sequence[float] = (0.1, 0.25, 0.5)):
        self.levels = levels

    # -- levels -----------------------------------------------------------------------------
    def _check_level(self, level: float) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def check_level(self, level: Any) -> float:
        """Validate one level and return it as a float.

        Parameters
        ----------
        level : float
            A level of this corruption.

        Returns
        -------
        float
            The level.

        Raises
        ------
        ValueError
            If the level is not a real number or is out of this corruption's range.

        Examples
        --------
        >>> from mmsk.inspection import MissingModality
        >>> MissingModality().check_level(0.5)
        0.5
        """
        if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real):
            raise ValueError(f"{self.name}: a level must be a real number, got {level!r}")
        value = float(level)
        if math.isnan(value):
            raise ValueError(f"{self.name}: a level must not be NaN")
        self._check_level(value)
        return value

    def checked_levels(self) -> list[float]:
        """Return :attr:`levels` validated, as a list of floats.

        Returns
        -------
        list of float
            The levels, mild to severe.

        Raises
        ------
        ValueError
            If ``levels`` is empty, not a sequence, or holds a bad level.

        Examples
        --------
        >>> from mmsk.inspection import AudioNoise
        >>> AudioNoise(levels=(10, 0)).checked_levels()
        [10.0, 0.0]
        """
        levels = self.levels
        if isinstance(levels, numbers.Real):
            levels = [levels]
        if isinstance(levels, (str, bytes)):
            levels = [levels]  # rejected by check_level, naming it
        try:
            values = list(levels)
        except TypeError:
            raise ValueError(
                f"{self.name}: levels must be a sequence of numbers, got {self.levels!r}"
            ) from None
        if not values:
            raise ValueError(f"{self.name}: levels must not be empty")
        return [self.check_level(v) for v in values]

    # -- items ------------------------------------------------------------------------------
    def _corrupt_item(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        raise NotImplementedError  # pragma: no cover - overridden

    def __call__(self, items: Any, level: float, *, random_state: Any = None) -> list[Any]:
        """Corrupt a column of items at ``level``.

        Parameters
        ----------
        items : sequence of items
            A list, array, :class:`pandas.Series` or one-column 2-D input.
        level : float
            The corruption level (see the class).
        random_state : int, numpy Generator or None, default=None
            Seed of the random draws; the same seed gives the same output.

        Returns
        -------
        list
            The corrupted items, one per input item; missing items stay missing.

        Raises
        ------
        ValueError
            For a bad level.
        mmsk.ItemError
            For an item that cannot be corrupted, naming the column, row and item.

        Examples
        --------
        >>> from mmsk.inspection import TokenDrop
        >>> TokenDrop()(["a b c d", None], 0.0)
        ['a b c d', None]
        """
        level = self.check_level(level)
        values, column = as_items(items, what="items")
        rng = np.random.default_rng(random_state)
        out = []
        for row, item in enumerate(values):
            if is_missing(item):
                out.append(item)
                continue
            try:
                out.append(self._corrupt_item(item, level, rng))
            except (BadItem, OSError, ValueError, TypeError) as exc:
                reason = str(exc) or type(exc).__name__
                if isinstance(exc, FileNotFoundError):
                    reason = "file not found"
                raise ItemError(
                    column, row, describe_item(item), f"{self.name} corruption: {reason}"
                ) from exc
        return out

    def apply(
        self, X: Any, columns: Sequence[Any], level: float, *, random_state: Any = None
    ) -> Any:
        """Return a copy of the table ``X`` with ``columns`` corrupted at ``level``.

        Parameters
        ----------
        X : DataFrame or 2-D ndarray
            The input table; not modified.
        columns : sequence
            Column labels (DataFrame) or positions (array) of one modality.
        level : float
            The corruption level.
        random_state : int, numpy Generator or None, default=None
            Seed of the random draws.

        Returns
        -------
        DataFrame or ndarray
            The corrupted copy.

        Examples
        --------
        >>> import pandas as pd
        >>> from mmsk.inspection import TokenDrop
        >>> X = pd.DataFrame({"text": ["a b", "c d"], "n": [1, 2]})
        >>> TokenDrop().apply(X, ["text"], 1.0)["text"].tolist()
        ['', '']
        """
        level = self.check_level(level)
        rng = np.random.default_rng(random_state)
        out = X.copy()
        for col in columns:
            if hasattr(out, "iloc"):
                values = self(out[col].rename(str(col)), level, random_state=rng)
                out[col] = _column_like(values, out[col])
            else:
                values = self(list(out[:, col]), level, random_state=rng)
                out[:, col] = _object_array(values) if out.dtype == object else values
        return out


def _object_array(values: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _column_like(values: Sequence[Any], like: Any) -> Any:
    """Return a Series holding ``values`` with ``like``'s index and name."""
    import pandas as pd

    return pd.Series(_object_array(values), index=like.index, name=like.name, dtype=object)


# -- audio ---------------------------------------------------------------------------------
class AudioNoise(Corruption):
    """Additive white Gaussian noise at a signal-to-noise ratio (dB).

    The noise's power is the clip's mean power (over all samples and
    channels) divided by ``10 ** (snr_db / 10)``, the definition of
    :func:`mmsk.datasets.load_av_digits`; the sum is not clipped. A file
    item (path or bytes) is decoded by soundfile and returned as the bytes
    of a 32-bit float WAV file at the file's own rate, so an extractor
    resamples it exactly as it would the original. A waveform array stays a
    float32 array of the same shape.

    Parameters
    ----------
    levels : sequence of float, default=(20, 10, 5, 0, -5)
        SNRs in dB, from mild to severe (lower is noisier); ``inf`` is clean.

    See Also
    --------
    mmsk.datasets.load_av_digits : The same noise, applied by the loader.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.inspection import AudioNoise
    >>> tone = np.sin(np.linspace(0, 800 * np.pi, 8000)).astype("float32")
    >>> noisy = AudioNoise()([tone], 10.0, random_state=0)[0]
    >>> snr = 10 * np.log10(np.mean(tone**2) / np.mean((noisy - tone) ** 2))
    >>> bool(abs(snr - 10.0) < 0.2)
    True
    """

    name = "noise"
    kinds = ("audio",)
    unit = "SNR (dB)"
    clean_level = math.inf

    def __init__(self, levels: Sequence[float] = (20, 10, 5, 0, -5)):
        super().__init__(levels=levels)

    def _check_level(self, level: float) -> None:
        if level == -math.inf:
            raise ValueError(f"{self.name}: an SNR of -inf dB is pure noise; give a finite SNR")

    @staticmethod
    def _noisy(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
        wave64 = wave.astype(np.float64)
        if math.isinf(snr_db):
            return wave64
        power = float(np.mean(wave64**2)) if wave64.size else 0.0
        noise = rng.standard_normal(wave64.shape) * math.sqrt(power / 10.0 ** (snr_db / 10.0))
        return wave64 + noise

    def _corrupt_item(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        if isinstance(item, np.ndarray):
            wave = item
            if wave.dtype.kind == "i":
                wave = wave.astype(np.float32) / np.float32(-np.iinfo(wave.dtype).min)
            elif wave.dtype.kind != "f":
                raise BadItem(f"a waveform array must hold numbers, got dtype {wave.dtype}")
            return self._noisy(wave, level, rng).astype(np.float32)
        import soundfile as sf

        source = item_source(item)
        if not isinstance(source, (str, io.BytesIO)) and not hasattr(source, "read"):
            raise BadItem(
                f"unsupported audio item type {type(item).__name__}; expected a path, "
                "bytes or a waveform ndarray"
            )
        try:
            data, rate = sf.read(source, dtype="float32", always_2d=True)
        except sf.SoundFileError as exc:
            raise BadItem(f"cannot decode audio ({str(exc).strip()})") from None
        noisy = self._noisy(data, level, rng).astype(np.float32)
        buffer = io.BytesIO()
        sf.write(buffer, noisy, rate, format="WAV", subtype="FLOAT")
        return buffer.getvalue()


# -- images --------------------------------------------------------------------------------
def _image_array(item: Any) -> np.ndarray:
    """Decode an image item (Pillow, as the extractors do) to a uint8 array."""
    from ..image import load_image

    img = load_image(item_source(item))
    if img.mode not in ("L", "RGB", "RGBA"):
        has_alpha = "A" in img.getbands() or "transparency" in img.info
        grey = img.mode in ("1", "I", "F") or img.mode.startswith("I;")
        img = img.convert("L" if grey else "RGBA" if has_alpha else "RGB")
    return np.asarray(img, dtype=np.uint8)


def _colour(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an image array into its colour channels and its alpha (if any)."""
    if arr.ndim == 3 and arr.shape[2] == 4:
        return arr[:, :, :3], arr[:, :, 3:]
    return arr, None


def _join(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    return colour if alpha is None else np.concatenate([colour, alpha], axis=2)


class ImageBlur(Corruption):
    """Gaussian blur of the image, Pillow's :class:`~PIL.ImageFilter.GaussianBlur`.

    Parameters
    ----------
    levels : sequence of float, default=(0.5, 1, 2, 3)
        Blur radii in pixels of the image as stored (before any resizing by
        an extractor), from mild to severe; 0 is clean.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.inspection import ImageBlur
    >>> dot = np.zeros((9, 9), dtype=np.uint8)
    >>> dot[4, 4] = 255
    >>> blurred = ImageBlur()([dot], 1.0)[0]
    >>> blurred.dtype.name, bool(blurred[4, 4] < 255 and blurred[4, 5] > 0)
    ('uint8', True)
    """

    name = "blur"
    kinds = ("image",)
    unit = "blur radius (px)"

    def __init__(self, levels: Sequence[float] = (0.5, 1, 2, 3)):
        super().__init__(levels=levels)

    def _check_level(self, level: float) -> None:
        if not 0 <= level < math.inf:
            raise ValueError(f"{self.name}: the radius must be finite and >= 0, got {level!r}")

    def _corrupt_item(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        from PIL import Image, ImageFilter

        arr = _image_array(item)
        if level == 0:
            return arr
        return np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(level)))


class ImageOcclusion(Corruption):
    """A rectangle covering a given fraction of the image, at a random place.

    The rectangle has the image's aspect ratio (as near as whole pixels
    allow) and lies wholly inside the image; its colour channels are set to
    ``fill`` (an alpha channel is kept).

    Parameters
    ----------
    levels : sequence of float, default=(0.1, 0.25, 0.5)
        Fractions of the image's area to cover, in [0, 1], from mild to
        severe; 0 is clean.
    fill : int, default=0
        The value (0..255) written into the rectangle: 0 is black.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.inspection import ImageOcclusion
    >>> white = np.full((20, 20), 255, dtype=np.uint8)
    >>> out = ImageOcclusion()([white], 0.25, random_state=0)[0]
    >>> float((out == 0).mean())
    0.25
    """

    name = "occlusion"
    kinds = ("image",)
    unit = "area occluded"

    def __init__(self, levels: Sequence[float] = (0.1, 0.25, 0.5), fill: int = 0):
        super().__init__(levels=levels)
        self.fill = fill

    def _check_level(self, level: float) -> None:
        if not 0 <= level <= 1:
            raise ValueError(f"{self.name}: the area fraction must lie in [0, 1], got {level!r}")
        if isinstance(self.fill, bool) or not isinstance(self.fill, numbers.Integral):
            raise ValueError(f"{self.name}: fill must be an int in 0..255, got {self.fill!r}")
        if not 0 <= self.fill <= 255:
            raise ValueError(f"{self.name}: fill must be an int in 0..255, got {self.fill!r}")

    def _corrupt_item(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        arr = _image_array(item).copy()
        height, width = arr.shape[:2]
        area = level * height * width
        h = min(height, max(1, round(math.sqrt(level) * height))) if area > 0 else 0
        w = min(width, round(area / h)) if h else 0
        if h and w:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            colour, alpha = _colour(arr)
            colour[top : top + h, left : left + w] = self.fill
            arr = _join(colour, alpha)
        return arr


class ImageNoise(Corruption):
    """Additive Gaussian pixel noise, intensities in [0, 1], clipped.

    Parameters
    ----------
    levels : sequence of float, default=(0.05, 0.1, 0.2, 0.4)
        Standard deviations of the noise on the [0, 1] intensity scale
        (0.1 is about 25 grey levels), from mild to severe; 0 is clean.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.inspection import ImageNoise
    >>> grey = np.full((50, 50), 128, dtype=np.uint8)
    >>> out = ImageNoise()([grey], 0.1, random_state=0)[0]
    >>> bool(abs((out / 255.0).std() - 0.1) < 0.01)
    True
    """

    name = "noise"
    kinds = ("image",)
    unit = "noise std (intensity)"

    def __init__(self, levels: Sequence[float] = (0.05, 0.1, 0.2, 0.4)):
        super().__init__(levels=levels)

    def _check_level(self, level: float) -> None:
        if not 0 <= level < math.inf:
            raise ValueError(f"{self.name}: the noise std must be finite and >= 0, got {level!r}")

    def _corrupt_item(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        arr = _image_array(item)
        if level == 0:
            return arr
        colour, alpha = _colour(arr)
        noisy = colour / 255.0 + rng.standard_normal(colour.shape) * level
        colour = np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
        return _join(colour, alpha)


# -- text ----------------------------------------------------------------------------------
class TokenDrop(Corruption):
    """Drop each whitespace-separated token of a text with a given probability.

    The kept tokens are joined by single spaces; a text whose tokens are
    all dropped becomes ``""``.

    Parameters
    ----------
    levels : sequence of float, default=(0.1, 0.25, 0.5, 0.75)
        Drop probabilities in [0, 1], from mild to severe; 0 is clean.

    Examples
    --------
    >>> from mmsk.inspection import TokenDrop
    >>> TokenDrop()(["one two three four"], 1.0)
    ['']
    """

    name = "token_drop"
    kinds = ("text",)
    unit = "tokens dropped"

    def __init__(self, levels: Sequence[float] = (0.1, 0.25, 0.5, 0.75)):
        super().__init__(levels=levels)

    def _check_level(self, level: float) -> None:
        if not 0 <= level <= 1:
            raise ValueError(f"{self.name}: the drop probability must lie in [0, 1], got {level!r}")

    def _corrupt_item(self, item: Any, level: float, rng: np.random.Generator) -> Any:
        if not isinstance(item, str):
            raise BadItem(f"a text item must be a str, got {type(item).__name__}")
        tokens = item.split()
        keep = rng.random(len(tokens)) >= level
        return " ".join(t for t, k in zip(tokens, keep, strict=True) if k)


# -- any modality --------------------------------------------------------------------------
class MissingModality(Corruption):
    """Make the modality missing in a given fraction of the rows.

    Exactly ``round(rate * n_rows)`` rows, drawn at random, lose *all* of
    the modality's columns together: an item becomes ``None``, a number
    ``NaN``. That is what the fusion estimators read as a missing modality
    (an all-NaN block), so the score shows how the model copes without it.

    Parameters
    ----------
    levels : sequence of float, default=(0.1, 0.25, 0.5, 0.75, 1.0)
        Fractions of rows in [0, 1], from mild to severe; 0 is clean.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk.inspection import MissingModality
    >>> X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": ["x", "y", "z", "w"]})
    >>> out = MissingModality().apply(X, ["a", "b"], 0.5, random_state=0)
    >>> int(out["a"].isna().sum()), out["b"].isna().tolist() == out["a"].isna().tolist()
    (2, True)
    """

    name = "missing"
    kinds = None
    unit = "rows missing"

    def __init__(self, levels: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 1.0)):
        super().__init__(levels=levels)

    def _check_level(self, level: float) -> None:
        if not 0 <= level <= 1:
            raise ValueError(f"{self.name}: the missing rate must lie in [0, 1], got {level!r}")

    def rows(self, n_rows: int, level: float, *, random_state: Any = None) -> np.ndarray:
        """Choose the rows that lose the modality.

        The rows come from one random permutation: with the same seed, the
        rows missing at a lower rate are also missing at a higher one.

        Parameters
        ----------
        n_rows : int
            Number of rows.
        level : float
            The missing rate.
        random_state : int, numpy Generator or None, default=None
            Seed.

        Returns
        -------
        ndarray of int
            The sorted positions of ``round(level * n_rows)`` rows.

        Examples
        --------
        >>> from mmsk.inspection import MissingModality
        >>> MissingModality().rows(10, 0.3, random_state=0).size
        3
        """
        level = self.check_level(level)
        order = np.random.default_rng(random_state).permutation(n_rows)
        return np.sort(order[: int(round(level * n_rows))])

    def __call__(self, items: Any, level: float, *, random_state: Any = None) -> list[Any]:
        """Set a fraction ``level`` of the items to ``None``.

        Parameters
        ----------
        items : sequence of items
            The column.
        level : float
            The missing rate.
        random_state : int, numpy Generator or None, default=None
            Seed.

        Returns
        -------
        list
            The items, ``round(level * n)`` of them replaced by ``None``.

        Examples
        --------
        >>> from mmsk.inspection import MissingModality
        >>> MissingModality()(["a", "b", "c", "d"], 0.5, random_state=0).count(None)
        2
        """
        values, _ = as_items(items)
        out = list(values)
        for row in self.rows(len(out), level, random_state=random_state):
            out[row] = None
        return out

    def apply(
        self, X: Any, columns: Sequence[Any], level: float, *, random_state: Any = None
    ) -> Any:
        """Return a copy of ``X`` with the modality missing in a fraction of rows.

        The same rows lose every column in ``columns``: items become
        ``None``, numbers ``NaN``.

        Parameters
        ----------
        X : DataFrame or 2-D ndarray
            The input table; not modified.
        columns : sequence
            Column labels (DataFrame) or positions (array) of one modality.
        level : float
            The missing rate.
        random_state : int, numpy Generator or None, default=None
            Seed.

        Returns
        -------
        DataFrame or ndarray
            The copy.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.inspection import MissingModality
        >>> out = MissingModality().apply(np.ones((4, 3)), [0, 1], 1.0)
        >>> np.isnan(out).sum(axis=0).tolist()
        [4, 4, 0]
        """
        rows = self.rows(len(X), level, random_state=random_state)
        return set_missing(X, columns, rows)


def set_missing(X: Any, columns: Sequence[Any], rows: Any = None) -> Any:
    """Return a copy of ``X`` whose ``columns`` are missing in ``rows`` (all if None).

    Numeric columns get ``NaN``; other columns ``None``.

    Parameters
    ----------
    X : DataFrame or 2-D ndarray
        The table; not modified.
    columns : sequence
        Column labels or positions.
    rows : array of int or None, default=None
        Row positions; None means every row.

    Returns
    -------
    DataFrame or ndarray
        The copy.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk.inspection._corruptions import set_missing
    >>> set_missing(pd.DataFrame({"a": ["x", "y"]}), ["a"], [1])["a"].tolist()
    ['x', None]
    """
    import pandas as pd

    n = len(X)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.intp)
    out = X.copy()
    if hasattr(out, "iloc"):
        for col in columns:
            series = out[col]
            if series.dtype.kind in "fc":
                values = series.to_numpy(copy=True)
                values[rows] = np.nan
            elif series.dtype.kind in "iub":
                values = series.to_numpy(dtype=np.float64, copy=True)
                values[rows] = np.nan
            else:
                values = _object_array(series.tolist())
                values[rows] = None
                out[col] = pd.Series(values, index=series.index, name=series.name, dtype=object)
                continue
            out[col] = pd.Series(values, index=series.index, name=series.name)
        return out
    cols = list(columns)
    if out.dtype.kind in "iub":
        out = out.astype(np.float64)
    if out.dtype == object:
        for col in cols:
            out[rows, col] = None
    else:
        out[np.ix_(rows, cols)] = np.nan
    return out


#: Corruption names -> classes, by modality kind ("noise" means two things).
_BY_NAME: dict[str, dict[str | None, type[Corruption]]] = {
    "noise": {"audio": AudioNoise, "image": ImageNoise},
    "blur": {"image": ImageBlur},
    "occlusion": {"image": ImageOcclusion},
    "token_drop": {"text": TokenDrop},
    "missing": {None: MissingModality},
}
#: The corruptions of ``robustness_report(corruptions=None)``, per modality kind.
DEFAULTS: dict[str, tuple[str, ...]] = {
    "audio": ("noise", "missing"),
    "image": ("blur", "occlusion", "noise", "missing"),
    "text": ("token_drop", "missing"),
}


def get_corruption(
    name: str | Corruption, kind: str | None = None, levels: Sequence[float] | None = None
) -> Corruption:
    """Return the corruption called ``name`` for a modality of ``kind``.

    Parameters
    ----------
    name : str or Corruption
        ``"noise"`` (audio: :class:`AudioNoise`; image: :class:`ImageNoise`),
        ``"blur"``, ``"occlusion"``, ``"token_drop"`` or ``"missing"``; a
        :class:`Corruption` is returned as it is (levels given here replace
        its own, on a copy).
    kind : {"image", "audio", "text", "tabular", "features"} or None, default=None
        The modality's kind, which decides what ``"noise"`` means.
    levels : sequence of float or None, default=None
        Levels instead of the class's defaults.

    Returns
    -------
    Corruption
        The corruption, levels checked.

    Raises
    ------
    ValueError
        For an unknown name, a name that does not apply to ``kind``, or bad levels.

    Examples
    --------
    >>> from mmsk.inspection import get_corruption
    >>> get_corruption("noise", "audio", levels=[10, 0])
    AudioNoise(levels=[10, 0])
    """
    if isinstance(name, Corruption):
        corruption = name if levels is None else clone(name).set_params(levels=list(levels))
    else:
        choices = _BY_NAME.get(name) if isinstance(name, str) else None
        if choices is None:
            raise ValueError(
                f"unknown corruption {name!r}; use one of {sorted(_BY_NAME)} or a "
                "mmsk.inspection.Corruption instance"
            )
        cls = choices.get(kind) or choices.get(None)
        if cls is None:
            raise ValueError(
                f"corruption {name!r} applies to {sorted(k for k in choices if k)} modalities, "
                f"not to a modality of kind {kind!r}; pass a Corruption instance to force it"
            )
        corruption = cls() if levels is None else cls(levels=list(levels))
    corruption.checked_levels()
    return corruption
