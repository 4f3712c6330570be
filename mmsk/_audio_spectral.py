"""The audio extractors' shared spectral front end and parameter checks.

:class:`~mmsk.audio.AudioFeatures` and :class:`~mmsk.audio.LogMelSpectrogram`
both take a clip's STFT magnitude (:func:`_magnitude`) and the mel and chroma
filter banks of :mod:`librosa`, built once per process and parameter set;
the checks refuse what librosa would only refuse mid-extraction (fmin/fmax
against the Nyquist frequency, empty mel filters, too many contrast bands).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import librosa
import numpy as np

from ._audio_load import _check_int, _check_real

#: Lowest band edge of spectral contrast (librosa's default ``fmin=200``).
CONTRAST_FMIN = 200.0


# -- shared spectral front end -------------------------------------------------
@functools.lru_cache(maxsize=32)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """:func:`librosa.filters.mel`, built once per process and parameter set."""
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


@functools.lru_cache(maxsize=32)
def _chroma_basis(sr: int, n_fft: int, n_chroma: int) -> np.ndarray:
    """:func:`librosa.filters.chroma` at standard tuning, built once per parameter set."""
    return librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=0.0)


def _magnitude(y: np.ndarray, n_fft: int, hop_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad a clip shorter than ``n_fft`` to ``n_fft``; return it and ``|STFT|``."""
    if y.shape[-1] < n_fft:
        y = np.pad(y, (0, n_fft - y.shape[-1]))
    return y, np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length))


def _nyquist_checks(sr: float, fmin: float, fmax: float | None) -> None:
    if fmin >= sr / 2:
        raise ValueError(f"fmin={fmin} must be below the Nyquist frequency sr/2 = {sr / 2}")
    if fmax is not None and fmax > sr / 2:
        raise ValueError(f"fmax={fmax} must not exceed the Nyquist frequency sr/2 = {sr / 2}")


def _max_contrast_bands(sr: float) -> int:
    """Largest ``n_bands`` librosa's spectral contrast accepts at ``sr``."""
    n = 0
    while CONTRAST_FMIN * 2.0**n < sr / 2:
        n += 1
    return n


# -- parameter checks ----------------------------------------------------------
def _check_choices(name: str, value: Any, valid: str) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else value
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of names ({valid}), got {value!r}") from None
    if not values:
        raise ValueError(f"{name} must name at least one of: {valid}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated entries: {list(values)}")
    return values


def _check_front_end(est: Any, uses_mel: bool = True) -> None:
    """Check the parameters both transformers share: sr, STFT, mel and ``max_duration``."""
    if est.max_duration is not None:
        _check_real("max_duration", est.max_duration, 0.0, strict=True)
    if est.sr is not None:
        _check_int("sr", est.sr)
    _check_int("n_fft", est.n_fft, 2)
    _check_int("hop_length", est.hop_length)
    _check_int("n_mels", est.n_mels)
    _check_real("fmin", est.fmin)
    if est.fmax is not None:
        _check_real("fmax", est.fmax, est.fmin, strict=True)
    if est.sr is not None:
        _nyquist_checks(est.sr, est.fmin, est.fmax)
        if uses_mel:
            _check_mel_filters(est.sr, est.n_fft, est.n_mels, est.fmin, est.fmax)


def _check_mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> None:
    """Refuse a mel filter bank with empty filters (bands narrower than an FFT bin)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # librosa's "Empty filters detected"
        basis = _mel_basis(sr, n_fft, n_mels, float(fmin), fmax)
    empty = int((basis.max(axis=1) <= 0).sum())
    if empty:
        raise ValueError(
            f"n_mels={n_mels} is too many for n_fft={n_fft} at sr={sr}: {empty} mel filters "
            "would be empty (narrower than one FFT bin); reduce n_mels or increase n_fft"
        )


def _as_names(value: Any) -> tuple[str, ...]:
    """Return a parameter given as one name or a sequence of names as a tuple."""
    return (value,) if isinstance(value, str) else tuple(value)


def _index_names(prefix: str, n: int) -> list[str]:
    width = max(2, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]
