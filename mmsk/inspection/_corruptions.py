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
from typing import Any

import numpy as np
from sklearn.base import clone

from .._items import BadItem, item_source
from ._base import Corruption
from ._missing import MissingModality, set_missing

__all__ = [
    "AudioNoise",
    "Corruption",
    "ImageBlur",
    "ImageNoise",
    "ImageOcclusion",
    "MissingModality",
    "TokenDrop",
    "get_corruption",
    "set_missing",
]


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
