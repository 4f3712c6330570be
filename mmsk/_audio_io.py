"""Loading audio items, shared by the audio extractors.

:func:`load_audio` turns one item (a path, the bytes of a file, a file-like
object or a waveform array) into a mono float32 waveform at the requested
rate, with :mod:`soundfile` and :func:`librosa.resample`; the small
parameter checks the audio extractors share live here too.
:class:`~mmsk.audio.AudioFeatures`, :class:`~mmsk.audio.LogMelSpectrogram`
and :class:`~mmsk.audio_embed.AudioEmbedder` all read their items with it.
"""

from __future__ import annotations

import io
import numbers
import os
import re
from typing import Any

import librosa
import numpy as np
import soundfile as sf

from ._items import BadItem

__all__ = ["RES_TYPE", "load_audio"]

#: Resampler, librosa's default.
RES_TYPE = "soxr_hq"

_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: Data sizes that streaming writers put in a header before the length is known.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
_ACCEPTED = "a path (str or pathlib.Path), bytes, or a waveform ndarray"


def _decode(source: Any) -> tuple[np.ndarray, int]:
    """Decode a path or file-like object to float32 ``(frames, channels)``."""
    try:
        with sf.SoundFile(source) as fh:
            if fh.format == "WAV":
                _check_not_truncated(fh.extra_info)
            data = fh.read(dtype="float32", always_2d=True)
            return data, int(fh.samplerate)
    except sf.SoundFileError as exc:
        if isinstance(source, str):  # libsndfile says "System error" for these
            if os.path.isdir(source):
                raise IsADirectoryError(source) from None
            if not os.path.exists(source):
                raise FileNotFoundError(source) from None
        reason = (getattr(exc, "error_string", None) or str(exc)).strip().rstrip(".")
        reason = re.sub(r"^Error\s*:\s*", "", reason)
        raise BadItem(
            f"cannot decode audio: {reason} (readable formats: those of libsndfile, "
            "e.g. WAV, FLAC, OGG, MP3)"
        ) from None


def _check_not_truncated(log: str) -> None:
    """Raise BadItem when libsndfile's log says a WAV holds less data than promised."""
    match = _DATA_SIZE.search(log)
    if match is None:
        return
    promised, held = int(match.group(1)), int(match.group(2))
    if held < promised and promised not in _UNKNOWN_SIZES:
        raise BadItem(
            f"truncated file: its header promises {promised} bytes of audio data, it holds {held}"
        )


def _waveform(item: np.ndarray) -> np.ndarray:
    """Check an in-memory waveform and return it as float32 ``(channels, samples)``."""
    y = item
    if y.dtype.kind == "i":
        y = y.astype(np.float32) / np.float32(-np.iinfo(y.dtype).min)
    elif y.dtype.kind != "f":
        raise BadItem(
            f"a waveform array must hold floats (or signed integer PCM), got dtype {y.dtype}"
        )
    if y.ndim == 1:
        y = y[np.newaxis, :]
    elif y.ndim != 2:
        raise BadItem(
            f"a waveform array must be 1-D (samples,) or 2-D (channels, samples), "
            f"got shape {item.shape}"
        )
    elif y.shape[0] > y.shape[1]:
        raise BadItem(
            f"a 2-D waveform must be (channels, samples) as in librosa, got shape {item.shape}; "
            "transpose it"
        )
    return np.asarray(y, dtype=np.float32)


def load_audio(source: Any, sr: int | None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Load one audio item as a float32 waveform at ``sr``.

    This is the decoder behind :class:`~mmsk.AudioFeatures`,
    :class:`~mmsk.LogMelSpectrogram` and :class:`~mmsk.AudioEmbedder`:
    files are read with :mod:`soundfile`, the channels averaged when
    ``mono`` is true, and the result resampled to ``sr`` when the file's
    rate differs.

    Parameters
    ----------
    source : str, path-like, bytes, file-like or ndarray
        A file path, the bytes of an audio file, a binary file-like object
        (:class:`io.BytesIO`), or a waveform already at ``sr``: 1-D
        ``(samples,)`` or 2-D ``(channels, samples)`` as in librosa, floats
        in [-1, 1] (signed integer PCM is scaled to that range).
    sr : int or None
        Target sampling rate in Hz; a file at another rate is resampled with
        :func:`librosa.resample` (``res_type="soxr_hq"``). None keeps the
        file's own rate, and cannot be used with a waveform array.
    mono : bool, default=True
        Average the channels.

    Returns
    -------
    y : ndarray of float32, shape (samples,) or (channels, samples)
        The waveform; 1-D when ``mono`` is true.
    sr : int
        Its sampling rate.

    Raises
    ------
    mmsk._base.BadItem
        For an unsupported item type, an undecodable, truncated or empty
        file, a waveform array without ``sr``, or non-finite samples.

    See Also
    --------
    librosa.load : The same for librosa users, without mmsk's checks.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.audio import load_audio
    >>> y, sr = load_audio(np.zeros((2, 800), dtype="float32"), sr=8000)
    >>> y.shape, sr
    ((800,), 8000)
    """
    if isinstance(source, np.ndarray):
        if sr is None:
            raise BadItem("a waveform array has no sampling rate of its own: set sr= to its rate")
        y, rate = _waveform(source), int(sr)
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        elif isinstance(source, os.PathLike):
            source = os.fspath(source)
        elif not isinstance(source, str) and not hasattr(source, "read"):
            raise BadItem(f"unsupported item type {type(source).__name__}; expected {_ACCEPTED}")
        data, rate = _decode(source)
        y = data.T
    if y.shape[-1] == 0:
        raise BadItem("empty audio (0 samples)")
    if mono:
        y = y[0] if y.shape[0] == 1 else y.mean(axis=0)
    if not np.isfinite(y).all():
        raise BadItem("audio holds non-finite samples (NaN or inf)")
    if sr is not None and rate != sr:
        y = librosa.resample(y, orig_sr=rate, target_sr=sr, res_type=RES_TYPE)
        rate = int(sr)
    return y, rate


# -- parameter checks ----------------------------------------------------------
def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_real(name: str, value: Any, minimum: float = 0.0, strict: bool = False) -> None:
    bad = not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value)
    if not bad:
        bad = value <= minimum if strict else value < minimum
    if bad:
        sign = ">" if strict else ">="
        raise ValueError(f"{name} must be a number {sign} {minimum}, got {value!r}")
