"""Loading one audio item within limits: soundfile decoding, mono, resampling.

The decoder behind :class:`~mmsk.audio.AudioFeatures` and
:class:`~mmsk.audio.LogMelSpectrogram` (re-exported as
:func:`mmsk.audio.load_audio`). A path is opened as a regular file within
a size (:mod:`mmsk._files`); a clip's length is checked on its header
before a sample is decoded (``max_duration``), so a small file that
claims an enormous clip costs nothing.
"""

from __future__ import annotations

import io
import math
import numbers
import os
import re
from typing import Any

import librosa
import numpy as np
import soundfile as sf

from ._files import MAX_FILE_BYTES, open_regular
from ._items import BadItem

__all__ = ["DECODED_PER_SECOND", "MAX_DURATION", "RES_TYPE", "load_audio"]

#: Resampler, librosa's default.
RES_TYPE = "soxr_hq"
#: Default longest clip, in seconds (``max_duration``).
MAX_DURATION = 600.0
#: Samples decoded per second of ``max_duration``, over all channels: stereo at 192 kHz.
DECODED_PER_SECOND = 2 * 192_000

_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: Data sizes that streaming writers put in a header before the length is known.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
_ACCEPTED = "a path (str or pathlib.Path), bytes, or a waveform ndarray"


def _frame_limit(frames: int, rate: int, channels: int, max_duration: float | None) -> int:
    """Check a clip's header against ``max_duration``; return the most frames to read.

    Two bounds, both from the header, before any sample is decoded: the
    duration ``frames / rate``, and the decoded samples ``frames * channels``
    (at most :data:`DECODED_PER_SECOND` per second of ``max_duration``).
    """
    if max_duration is None:
        return -1
    if rate <= 0:
        raise BadItem(f"the header gives a sampling rate of {rate} Hz")
    seconds = frames / rate
    if seconds > max_duration:
        raise BadItem(
            f"audio of {seconds:.1f} s ({frames} frames at {rate} Hz), longer than the limit "
            f"of {max_duration:g} s (max_duration); refused before decoding"
        )
    most = int(max_duration * DECODED_PER_SECOND)
    if frames * channels > most:
        raise BadItem(
            f"audio of {frames} frames x {channels} channels at {rate} Hz: {frames * channels} "
            f"samples to decode, more than the {most} that max_duration={max_duration:g} s "
            "allows (stereo at 192 kHz); refused before decoding"
        )
    return int(math.floor(max_duration * rate))


def _native(source: Any) -> Any:
    """Return the descriptor of an unread OS-level file, else ``source`` itself.

    libsndfile reads a descriptor itself, at the speed of ``sf.read(path)``;
    a Python file object goes through soundfile's per-call I/O callbacks
    (a third slower on short clips). The descriptor is the file already
    opened and checked (regular, within the size limit); its owner closes it.
    """
    if isinstance(source, io.BufferedReader):
        try:
            if source.tell() == 0:
                return source.fileno()
        except (OSError, ValueError):
            pass
    return source


def _decode(source: Any, max_duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a file-like object (or path) to float32 ``(frames, channels)``, within limits."""
    native = _native(source)
    try:
        with sf.SoundFile(native, closefd=native is source) as fh:
            if fh.format == "WAV":
                _check_not_truncated(fh.extra_info)
            rate = int(fh.samplerate)
            limit = _frame_limit(int(fh.frames), rate, int(fh.channels), max_duration)
            # Read one frame more than allowed: a header that under-states the length
            # cannot make the read unbounded.
            data = fh.read(-1 if limit < 0 else limit + 1, dtype="float32", always_2d=True)
            if 0 <= limit < data.shape[0]:
                raise BadItem(
                    f"audio longer than the limit of {max_duration:g} s (max_duration), "
                    "though its header says less"
                )
            return data, rate
    except sf.SoundFileError as exc:
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


def load_audio(
    source: Any,
    sr: int | None,
    mono: bool = True,
    *,
    max_duration: float | None = MAX_DURATION,
    max_file_bytes: int | None = MAX_FILE_BYTES,
) -> tuple[np.ndarray, int]:
    """Load one audio item as a float32 waveform at ``sr``.

    This is the decoder behind :class:`AudioFeatures` and
    :class:`LogMelSpectrogram`: files are read with :mod:`soundfile`, the
    channels averaged when ``mono`` is true, and the result resampled to
    ``sr`` when the file's rate differs. A path must name a regular file of
    at most ``max_file_bytes``; a clip longer than ``max_duration`` is
    refused from its header, before decoding.

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
    max_duration : float or None, default=600.0
        Longest clip in seconds (None: any). Read from the header before
        decoding, with a bound on the decoded samples (see
        ``docs/security.md``); also applies to a waveform array at ``sr``.
    max_file_bytes : int or None, default=268435456 (256 MiB)
        Largest file a path may name (None: any).

    Returns
    -------
    y : ndarray of float32, shape (samples,) or (channels, samples)
        The waveform; 1-D when ``mono`` is true.
    sr : int
        Its sampling rate.

    Raises
    ------
    mmsk._items.BadItem
        For an unsupported item type, an undecodable, truncated or empty
        file, a path that is not a regular file or is over
        ``max_file_bytes``, a clip over ``max_duration``, a waveform array
        without ``sr``, or non-finite samples.

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
        if max_duration is not None and y.shape[-1] > max_duration * rate:
            raise BadItem(
                f"waveform of {y.shape[-1] / rate:.1f} s ({y.shape[-1]} samples at sr={rate}), "
                f"longer than the limit of {max_duration:g} s (max_duration)"
            )
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        elif not isinstance(source, (str, os.PathLike)) and not hasattr(source, "read"):
            raise BadItem(f"unsupported item type {type(source).__name__}; expected {_ACCEPTED}")
        if isinstance(source, (str, os.PathLike)):
            with open_regular(source, max_bytes=max_file_bytes) as fh:
                data, rate = _decode(fh, max_duration)
        else:
            data, rate = _decode(source, max_duration)
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
