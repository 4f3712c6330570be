"""Audio extractors: pooled librosa features and fixed-size log-mel images.

Both transformers read one clip at a time with :mod:`soundfile`, mix it to
mono, resample it with :func:`librosa.resample` when its rate differs from
``sr``, compute the clip's STFT magnitude once and derive everything else
from it with :mod:`librosa`. Loading lives in :mod:`mmsk._audio_load`
(:func:`load_audio`, re-exported here), shared with
:class:`~mmsk.audio_embed.AudioEmbedder`.
"""

from __future__ import annotations

import re
from typing import Any

import librosa
import numpy as np

from ._audio_load import (
    MAX_DURATION,
    RES_TYPE,  # noqa: F401 - (its old home)
    _check_int,
    _check_not_truncated,  # noqa: F401 - (its old home)
    _check_real,
    load_audio,
)
from ._audio_spectral import (
    CONTRAST_FMIN,
    _as_names,
    _check_choices,
    _check_front_end,
    _chroma_basis,
    _index_names,
    _magnitude,
    _max_contrast_bands,
    _mel_basis,
)
from ._base import BadItem, ItemTransformer
from ._docstrings import fill_doc
from ._files import MAX_FILE_BYTES

__all__ = ["MAX_DURATION", "AudioFeatures", "LogMelSpectrogram", "load_audio"]

#: Feature groups of :class:`AudioFeatures`, in their default order.
FEATURE_GROUPS = ("mfcc", "mfcc_delta", "melspec", "spectral", "chroma", "zcr", "rms")
#: Pooling statistics besides the percentiles ``"q1"`` ... ``"q99"``.
BASIC_STATS = ("mean", "std", "min", "max", "median")

_QUANTILE = re.compile(r"q([1-9][0-9]?)")


# -- AudioFeatures -------------------------------------------------------------
def _frame_features(y: np.ndarray, sr: int, est: AudioFeatures) -> np.ndarray:
    """Compute the clip's frame-level features, one row each: ``(n_rows, n_frames)``."""
    groups = _as_names(est.features)
    n_fft, hop = est.n_fft, est.hop_length
    y, S = _magnitude(y, n_fft, hop)
    if "spectral" in groups and CONTRAST_FMIN * 2.0 ** (est.n_bands - 1) >= sr / 2:
        raise BadItem(
            f"at its sampling rate {sr} Hz, spectral contrast allows n_bands <= "
            f"{_max_contrast_bands(sr)}, got n_bands={est.n_bands}"
        )
    power = S**2 if {"mfcc", "mfcc_delta", "melspec", "chroma"} & set(groups) else None
    log_mel = mfcc = None
    if {"mfcc", "mfcc_delta", "melspec"} & set(groups):
        mel = _mel_basis(sr, n_fft, est.n_mels, float(est.fmin), est.fmax) @ power
        log_mel = librosa.power_to_db(mel)
    if {"mfcc", "mfcc_delta"} & set(groups):
        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=est.n_mfcc)
    blocks = []
    for group in groups:
        if group == "mfcc":
            blocks.append(mfcc)
        elif group == "mfcc_delta":
            # librosa's default (interp, width 9) needs 9 frames; shorter clips use "nearest".
            mode = "interp" if mfcc.shape[-1] >= 9 else "nearest"
            blocks.append(librosa.feature.delta(mfcc, mode=mode))
        elif group == "melspec":
            blocks.append(log_mel)
        elif group == "spectral":
            centroid = librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft)
            blocks += [
                centroid,
                librosa.feature.spectral_bandwidth(S=S, sr=sr, n_fft=n_fft, centroid=centroid),
                librosa.feature.spectral_contrast(S=S, sr=sr, n_fft=n_fft, n_bands=est.n_bands),
                librosa.feature.spectral_rolloff(S=S, sr=sr, n_fft=n_fft),
                librosa.feature.spectral_flatness(S=S),
            ]
        elif group == "chroma":
            raw = _chroma_basis(sr, n_fft, est.n_chroma) @ power
            blocks.append(librosa.util.normalize(raw, norm=np.inf, axis=-2))
        elif group == "zcr":
            blocks.append(librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop))
        else:  # rms
            blocks.append(librosa.feature.rms(S=S, frame_length=n_fft, hop_length=hop))
    return np.concatenate(blocks, axis=0)


def _pool(frames: np.ndarray, stats: tuple[str, ...]) -> np.ndarray:
    """Pool ``(n_rows, n_frames)`` over frames; return ``n_rows * len(stats)`` values.

    The result is row-major: all statistics of row 0, then of row 1, ...
    """
    quantiles = [50.0 if s == "median" else float(s[1:]) for s in stats if s not in BASIC_STATS[:4]]
    qvals = iter(np.percentile(frames, quantiles, axis=1)) if quantiles else iter(())
    columns = []
    for stat in stats:
        if stat == "mean":
            columns.append(frames.mean(axis=1))
        elif stat == "std":
            columns.append(frames.std(axis=1))
        elif stat == "min":
            columns.append(frames.min(axis=1))
        elif stat == "max":
            columns.append(frames.max(axis=1))
        else:
            columns.append(next(qvals))
    return np.stack(columns, axis=1).reshape(-1)


def _clip_features(y: np.ndarray, sr: int, est: AudioFeatures) -> np.ndarray:
    """Feature vector of one mono clip ``y`` at ``sr`` with ``est``'s parameters."""
    return _pool(_frame_features(y, sr, est), _as_names(est.stats))


@fill_doc
class AudioFeatures(ItemTransformer):
    """Pooled librosa features: one fixed-length vector per audio clip.

    Each clip is loaded, mixed to mono and resampled to ``sr``; its STFT
    magnitude is computed once, and the frame-level features of the chosen
    groups are derived from it and pooled over time with the chosen
    statistics.

    {items}

    Parameters
    ----------
    sr : int or None, default=22050
        Sampling rate in Hz that every clip is resampled to (librosa's
        ``soxr_hq`` resampler). ``None`` keeps each file's own rate; the
        features then depend on that rate (the mel and chroma filters and
        the frame duration follow it), so use it only for a column of one
        rate. A waveform array item is taken to be at ``sr`` already, and
        needs ``sr`` set.
    features : sequence of str, default=("mfcc", "mfcc_delta", "melspec", \
"spectral", "chroma", "zcr", "rms")
        Feature groups, in output order:

        - ``"mfcc"``: ``n_mfcc`` MFCCs of the log-mel spectrogram
          (:func:`librosa.feature.mfcc`).
        - ``"mfcc_delta"``: their first derivative over time
          (:func:`librosa.feature.delta`).
        - ``"melspec"``: the ``n_mels`` bands of the log-mel spectrogram, in
          dB (:func:`librosa.power_to_db` of the mel power spectrogram).
        - ``"spectral"``: centroid, bandwidth, contrast (``n_bands + 1``
          values), roll-off (85 %) and flatness.
        - ``"chroma"``: ``n_chroma`` pitch classes (:func:`librosa.feature.chroma_stft`,
          standard tuning, no per-clip tuning estimate).
        - ``"zcr"``: zero-crossing rate of the waveform.
        - ``"rms"``: root-mean-square energy (from the spectrogram).
    stats : sequence of str, default=("mean", "std")
        Pooling statistics over frames: ``"mean"``, ``"std"``, ``"min"``,
        ``"max"``, ``"median"``, or a percentile ``"q1"`` ... ``"q99"``
        (``"q10"`` is the 10th percentile).
    n_mfcc : int, default=20
        Number of MFCCs (at most ``n_mels``).
    n_mels : int, default=64
        Number of mel bands, used by the MFCCs and the ``"melspec"`` group.
    n_chroma : int, default=12
        Number of chroma bins.
    n_bands : int, default=5
        Number of spectral-contrast octave bands, starting at 200 Hz. Each
        band must start below the Nyquist frequency: 5 works from
        ``sr=8000`` up, 6 (librosa's default) needs ``sr > 12800``.
    n_fft : int, default=2048
        FFT window length in samples. A clip shorter than ``n_fft`` is
        zero-padded at its end to ``n_fft`` samples.
    hop_length : int, default=512
        Samples between frames.
    fmin : float, default=0.0
        Lowest frequency of the mel filters (Hz).
    fmax : float or None, default=None
        Highest frequency of the mel filters (Hz); None means ``sr / 2``.
    {max_duration}
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
        The column's name, when fitted on a DataFrame.
    n_features_out_ : int
        Number of output features.

    See Also
    --------
    LogMelSpectrogram : A fixed-size log-mel image per clip, for trainable towers.

    Notes
    -----
    Per clip, with ``S = |librosa.stft(y, n_fft=n_fft, hop_length=hop_length)|``:
    the mel power spectrogram is ``librosa.filters.mel(...) @ S**2`` and
    ``log_mel = librosa.power_to_db(mel)``; MFCCs are
    ``librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc)``; the spectral
    features, chroma and RMS take ``S=`` (chroma the power ``S**2``, with
    ``tuning=0``). The deltas use librosa's default (Savitzky-Golay,
    width 9, ``mode="interp"``), or ``mode="nearest"`` for a clip of fewer
    than 9 frames. The mel and chroma filter banks are built once per
    process, and their products run BLAS on one thread, so the output does
    not depend on ``n_jobs`` or on the number of cores.

    Output columns are grouped by feature group, then by row, then by
    statistic, and named ``<row>_<stat>`` with 0-based, zero-padded indices:
    ``mfcc_03_mean``, ``mfcc_delta_03_std``, ``melspec_12_mean``,
    ``spectral_centroid_mean``, ``spectral_contrast_02_mean``,
    ``chroma_05_mean`` (``chroma_00`` is C), ``zcr_mean``, ``rms_max``.

    Audio files are read with :mod:`soundfile` (the formats of libsndfile:
    WAV, FLAC, OGG, MP3, ...). A WAV file whose data stop before the length
    its header gives is reported as truncated.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import AudioFeatures
    >>> t = np.arange(4000) / 8000
    >>> low, high = (np.sin(2 * np.pi * f * t).astype("float32") for f in (220, 880))
    >>> est = AudioFeatures(sr=8000, features=("spectral", "rms"), stats=("mean",))
    >>> X = est.fit_transform([low, high, None])
    >>> X.shape
    (3, 11)
    >>> est.get_feature_names_out()[:3].tolist()
    ['spectral_centroid_mean', 'spectral_bandwidth_mean', 'spectral_contrast_00_mean']
    >>> bool(X[1, 0] > X[0, 0])  # the higher tone has the higher centroid
    True
    >>> np.isnan(X[2]).all()  # a missing item gives a NaN row
    np.True_
    """

    _what = "audio items"
    _versioned = ("librosa", "soundfile", "soxr", "scipy")
    # The filter-bank products are tiny: BLAS threads only cost time (a lot on a busy
    # machine), and their number changes the rounding, which would make the output
    # depend on n_jobs and on the core count. The base sets this once per batch.
    _blas_threads = 1

    def __init__(
        self,
        *,
        sr=22050,
        features=FEATURE_GROUPS,
        stats=("mean", "std"),
        n_mfcc=20,
        n_mels=64,
        n_chroma=12,
        n_bands=5,
        n_fft=2048,
        hop_length=512,
        fmin=0.0,
        fmax=None,
        max_duration=MAX_DURATION,
        max_file_bytes=MAX_FILE_BYTES,
        allowed_dirs=None,
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.sr = sr
        self.features = features
        self.stats = stats
        self.n_mfcc = n_mfcc
        self.n_mels = n_mels
        self.n_chroma = n_chroma
        self.n_bands = n_bands
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.fmin = fmin
        self.fmax = fmax
        self.max_duration = max_duration
        self.max_file_bytes = max_file_bytes
        self.allowed_dirs = allowed_dirs
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self) -> None:
        valid_groups = ", ".join(repr(g) for g in FEATURE_GROUPS)
        groups = _check_choices("features", self.features, valid_groups)
        bad = [g for g in groups if g not in FEATURE_GROUPS]
        if bad:
            raise ValueError(f"unknown feature group(s) {bad}; valid names are {valid_groups}")
        valid_stats = ", ".join(repr(s) for s in BASIC_STATS) + ", or a percentile 'q1' ... 'q99'"
        stats = _check_choices("stats", self.stats, valid_stats)
        bad = [s for s in stats if s not in BASIC_STATS and not _is_quantile(s)]
        if bad:
            raise ValueError(f"unknown statistic(s) {bad}; valid names are {valid_stats}")
        _check_front_end(self, uses_mel=bool({"mfcc", "mfcc_delta", "melspec"} & set(groups)))
        for name in ("n_mfcc", "n_chroma", "n_bands"):
            _check_int(name, getattr(self, name))
        if {"mfcc", "mfcc_delta"} & set(groups) and self.n_mfcc > self.n_mels:
            raise ValueError(
                f"n_mfcc={self.n_mfcc} cannot exceed n_mels={self.n_mels} (MFCCs are computed "
                "from the mel bands)"
            )
        if "spectral" in groups and self.sr is not None:
            most = _max_contrast_bands(self.sr)
            if self.n_bands > most:
                raise ValueError(
                    f"n_bands={self.n_bands} is too many for sr={self.sr}: spectral contrast's "
                    f"bands start at 200 Hz and double, and each must start below the Nyquist "
                    f"frequency {self.sr / 2:g} Hz; use n_bands <= {most}"
                )

    def _row_names(self) -> list[str]:
        groups = _as_names(self.features)
        rows: list[str] = []
        for group in groups:
            if group == "mfcc":
                rows += _index_names("mfcc", self.n_mfcc)
            elif group == "mfcc_delta":
                rows += _index_names("mfcc_delta", self.n_mfcc)
            elif group == "melspec":
                rows += _index_names("melspec", self.n_mels)
            elif group == "spectral":
                rows += ["spectral_centroid", "spectral_bandwidth"]
                rows += _index_names("spectral_contrast", self.n_bands + 1)
                rows += ["spectral_rolloff", "spectral_flatness"]
            elif group == "chroma":
                rows += _index_names("chroma", self.n_chroma)
            else:
                rows.append(group)
        return rows

    def _feature_names(self) -> list[str]:
        stats = _as_names(self.stats)
        return [f"{row}_{stat}" for row in self._row_names() for stat in stats]

    def _extract(self, source: Any) -> np.ndarray:
        y, sr = load_audio(source, self.sr, mono=True, max_duration=self.max_duration)
        return _clip_features(y, sr, self)


def _is_quantile(stat: Any) -> bool:
    return isinstance(stat, str) and _QUANTILE.fullmatch(stat) is not None


# -- LogMelSpectrogram ---------------------------------------------------------
def _log_mel_image(y: np.ndarray, sr: int, est: LogMelSpectrogram) -> np.ndarray:
    """Compute the clip's ``(n_mels, n_frames)`` log-mel image, in dB relative to its max."""
    _, S = _magnitude(y, est.n_fft, est.hop_length)
    mel = _mel_basis(sr, est.n_fft, est.n_mels, float(est.fmin), est.fmax) @ (S**2)
    floor = -float(est.top_db)
    if mel.max() <= 1e-10:  # digital silence: no level to be relative to
        image = np.full_like(mel, floor)
    else:
        image = librosa.power_to_db(mel, ref=np.max, top_db=est.top_db)
    n = image.shape[1]
    if n > est.n_frames:
        start = (n - est.n_frames) // 2 if est.crop == "center" else 0
        image = image[:, start : start + est.n_frames]
    elif n < est.n_frames:
        pad = ((0, 0), (0, est.n_frames - n))
        if est.pad_mode == "constant":
            image = np.pad(image, pad, mode="constant", constant_values=floor)
        else:
            image = np.pad(image, pad, mode="wrap")
    return image


@fill_doc
class LogMelSpectrogram(ItemTransformer):
    """Fixed-size log-mel spectrogram image per clip, flattened.

    Each clip is loaded, mixed to mono and resampled to ``sr``; its mel
    power spectrogram is converted to dB relative to the clip's loudest
    bin, then padded or cropped along time to ``n_frames`` frames. The
    ``(n_mels, n_frames)`` image is flattened row-major (mel band by mel
    band), so ``X.reshape(-1, *est.output_shape_)`` gives the
    ``(n, 1, n_mels, n_frames)`` batch a convolutional tower takes.

    {items}

    Parameters
    ----------
    sr : int or None, default=22050
        Sampling rate in Hz that every clip is resampled to. ``None`` keeps
        each file's rate, which changes what a frame and a mel band mean;
        a waveform array item is taken to be at ``sr`` and needs it set.
    n_mels : int, default=64
        Number of mel bands (image height).
    n_frames : int, default=64
        Number of STFT frames kept (image width); ``n_frames * hop_length / sr``
        seconds of audio.
    n_fft : int, default=2048
        FFT window length in samples. A clip shorter than ``n_fft`` is
        zero-padded at its end to ``n_fft`` samples.
    hop_length : int, default=512
        Samples between frames.
    fmin : float, default=0.0
        Lowest frequency of the mel filters (Hz).
    fmax : float or None, default=None
        Highest frequency of the mel filters (Hz); None means ``sr / 2``.
    top_db : float, default=80.0
        Dynamic range kept: values are dB relative to the clip's maximum,
        clipped below at ``-top_db``, so they lie in ``[-top_db, 0]``.
    pad_mode : {"constant", "wrap"}, default="constant"
        How a clip of fewer than ``n_frames`` frames is filled up, always at
        its end: ``"constant"`` with ``-top_db`` (the level of silence),
        ``"wrap"`` by repeating the clip's frames from its start.
    crop : {"center", "start"}, default="center"
        Which ``n_frames`` frames a longer clip keeps: the middle ones or
        the first ones.
    {max_duration}
    {file_limits}
    {on_error}
    {n_jobs}
    {memory}
    {verbose}

    Attributes
    ----------
    output_shape_ : tuple of int
        ``(1, n_mels, n_frames)``: the (channels, height, width) shape of
        one image, for the trainable convolutional towers.
    n_features_in_ : int
        Always 1: one column of items.
    feature_names_in_ : ndarray of shape (1,)
        The column's name, when fitted on a DataFrame.
    n_features_out_ : int
        ``n_mels * n_frames``.

    See Also
    --------
    AudioFeatures : Pooled summary features per clip.

    Notes
    -----
    Per clip: ``S = |librosa.stft(y, n_fft=n_fft, hop_length=hop_length)|``,
    ``mel = librosa.filters.mel(...) @ S**2`` and
    ``librosa.power_to_db(mel, ref=np.max, top_db=top_db)``. A clip of
    digital silence (no energy at all) is all ``-top_db``. Features are
    named ``logmel_<mel>_<frame>``, e.g. ``logmel_05_012``, 0-based.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import LogMelSpectrogram
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(4000) / 8000).astype("float32")
    >>> est = LogMelSpectrogram(sr=8000, n_mels=16, n_frames=10, n_fft=512, hop_length=256)
    >>> X = est.fit_transform([tone, tone[:1000]])
    >>> X.shape, est.output_shape_
    ((2, 160), (1, 16, 10))
    >>> bool(X.max() <= 0 and X.min() >= -80)
    True
    >>> X.reshape(-1, *est.output_shape_).shape
    (2, 1, 16, 10)
    """

    _what = "audio items"
    _versioned = ("librosa", "soundfile", "soxr", "scipy")
    # The filter-bank products are tiny: BLAS threads only cost time (a lot on a busy
    # machine), and their number changes the rounding, which would make the output
    # depend on n_jobs and on the core count. The base sets this once per batch.
    _blas_threads = 1

    def __init__(
        self,
        *,
        sr=22050,
        n_mels=64,
        n_frames=64,
        n_fft=2048,
        hop_length=512,
        fmin=0.0,
        fmax=None,
        top_db=80.0,
        pad_mode="constant",
        crop="center",
        max_duration=MAX_DURATION,
        max_file_bytes=MAX_FILE_BYTES,
        allowed_dirs=None,
        on_error="raise",
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.sr = sr
        self.n_mels = n_mels
        self.n_frames = n_frames
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.fmin = fmin
        self.fmax = fmax
        self.top_db = top_db
        self.pad_mode = pad_mode
        self.crop = crop
        self.max_duration = max_duration
        self.max_file_bytes = max_file_bytes
        self.allowed_dirs = allowed_dirs
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self) -> None:
        _check_front_end(self)
        _check_int("n_frames", self.n_frames)
        _check_real("top_db", self.top_db, 0.0, strict=True)
        if self.pad_mode not in ("constant", "wrap"):
            raise ValueError(f"pad_mode must be 'constant' or 'wrap', got {self.pad_mode!r}")
        if self.crop not in ("center", "start"):
            raise ValueError(f"crop must be 'center' or 'start', got {self.crop!r}")

    def _fit_items(self, items: Any, column: str | None, labels: Any = None) -> None:
        self.output_shape_ = (1, int(self.n_mels), int(self.n_frames))

    def _feature_names(self) -> list[str]:
        mel_width = max(2, len(str(self.n_mels - 1)))
        frame_width = max(3, len(str(self.n_frames - 1)))
        return [
            f"logmel_{m:0{mel_width}d}_{f:0{frame_width}d}"
            for m in range(self.n_mels)
            for f in range(self.n_frames)
        ]

    def _extract(self, source: Any) -> np.ndarray:
        y, sr = load_audio(source, self.sr, mono=True, max_duration=self.max_duration)
        return _log_mel_image(y, sr, self).reshape(-1)
