"""The AV-digits data set's definition: speakers, takes, the fixed pairing, options, assembly.

Everything here is part of what the data set *is* (its rows do not depend on
what is loaded); :mod:`mmsk.datasets` finds the files and is the public API.
"""

from __future__ import annotations

import importlib.resources
import numbers
import re
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits

#: The full description (sources, licences, pairing), read from a file as scikit-learn's loaders do.
DESCR = (importlib.resources.files("mmsk") / "data" / "av_digits" / "DESCR.rst").read_text(
    encoding="utf-8"
)

#: The six FSDD speakers (commit 26eb9aa), in the order the pairing uses.
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
#: Takes per speaker and digit in FSDD.
N_TAKES = 50
#: FSDD's own convention: takes 0-4 of every speaker and digit are the test set.
FSDD_TEST_TAKES = (0, 1, 2, 3, 4)
#: The held-out speaker of ``split="speaker"`` when ``test_speakers`` is None.
DEFAULT_TEST_SPEAKERS = ("theo",)
#: Seed of the clip-to-image pairing; part of the data set's definition, never change it.
PAIRING_SEED = 0
#: Takes that make up the shipped sample (6 speakers x 10 digits x 5 takes = 300 pairs).
SAMPLE_TAKES = (0, 10, 20, 30, 40)
#: Sampling rate of every FSDD recording, in Hz.
SAMPLE_RATE = 8000

_COLUMNS = ["image", "audio", "label", "speaker", "take", "mnist_index", "split"]
_FEATURE_NAMES = ["image", "audio"]
_SUBSETS = ("all", "train", "test")
_SPLITS = ("speaker", "take")
_WAV_NAME = re.compile(r"(?:^|/)recordings/(\d)_([a-z]+)_(\d+)\.wav$")


# --------------------------------------------------------------------------- pairing


def _wav_name(digit: int, speaker: str, take: int) -> str:
    return f"{digit}_{speaker}_{take}.wav"


def _canonical_clips() -> pd.DataFrame:
    """All 3,000 FSDD clips as (label, speaker, take), in row order (take, speaker, label)."""
    takes, speakers, labels = np.meshgrid(
        np.arange(N_TAKES), np.arange(len(SPEAKERS)), np.arange(10), indexing="ij"
    )
    return pd.DataFrame(
        {
            "label": labels.ravel().astype(np.int64),
            "speaker": np.asarray(SPEAKERS, dtype=object)[speakers.ravel()],
            "take": takes.ravel().astype(np.int64),
        }
    )


def _pairing(mnist_labels: np.ndarray) -> pd.DataFrame:
    """Pair each canonical clip with its MNIST test index.

    For digit ``d``, the MNIST indices of ``d`` are permuted by
    ``np.random.RandomState(PAIRING_SEED)``; the clip of speaker number ``s``
    (in :data:`SPEAKERS` order) and take ``t`` gets element ``s * 50 + t``.
    """
    frame = _canonical_clips()
    mnist_labels = np.asarray(mnist_labels)
    per_digit = len(SPEAKERS) * N_TAKES
    index = np.empty(len(frame), dtype=np.int64)
    rank = frame["speaker"].map({s: i for i, s in enumerate(SPEAKERS)}).to_numpy() * N_TAKES
    rank = rank + frame["take"].to_numpy()
    for digit in range(10):
        candidates = np.flatnonzero(mnist_labels == digit)
        if len(candidates) < per_digit:
            raise ValueError(
                f"the MNIST labels hold {len(candidates)} images of digit {digit}; "
                f"AV-digits needs at least {per_digit} (the MNIST test set has 892 or more)"
            )
        order = np.random.RandomState(PAIRING_SEED).permutation(candidates)
        rows = frame["label"].to_numpy() == digit
        index[rows] = order[rank[rows]]
    frame["mnist_index"] = index
    return frame


# --------------------------------------------------------------------------- options


def _check_options(**opts) -> dict:
    """Validate the options shared by both loaders; return them normalised."""
    subset, split = opts["subset"], opts["split"]
    if not isinstance(subset, str) or subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {_SUBSETS}, got {subset!r}")
    if not isinstance(split, str) or split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    test_speakers = opts["test_speakers"]
    if split == "take":
        if test_speakers is not None:
            raise ValueError(
                "test_speakers applies to split='speaker' only; with split='take' the test set "
                f"is takes 0-4 of every speaker. Got test_speakers={test_speakers!r}"
            )
    else:
        if test_speakers is None:
            test_speakers = DEFAULT_TEST_SPEAKERS
        elif isinstance(test_speakers, str):
            test_speakers = (test_speakers,)
        try:
            test_speakers = tuple(test_speakers)
        except TypeError:
            raise ValueError(
                f"test_speakers must be a speaker name or a sequence of them, got {test_speakers!r}"
            ) from None
        unknown = [s for s in test_speakers if s not in SPEAKERS]
        if unknown or not test_speakers:
            raise ValueError(
                f"test_speakers must name some of the speakers {SPEAKERS}, got {test_speakers!r}"
            )
        if set(test_speakers) == set(SPEAKERS):
            raise ValueError("test_speakers names every speaker, which leaves no training rows")
    opts["test_speakers"] = test_speakers
    for name in ("return_X_y", "as_frame"):
        if not isinstance(opts[name], (bool, np.bool_)):
            raise ValueError(f"{name} must be a bool, got {opts[name]!r}")
    snr = opts["audio_snr_db"]
    if snr is not None and (
        isinstance(snr, (bool, np.bool_))
        or not isinstance(snr, numbers.Real)
        or not np.isfinite(snr)
    ):
        raise ValueError(f"audio_snr_db must be a finite number (dB) or None, got {snr!r}")
    removed = opts["image_energy_removed"]
    if removed is not None and (
        isinstance(removed, (bool, np.bool_))
        or not isinstance(removed, numbers.Real)
        or not 0 <= removed < 1
    ):
        raise ValueError(
            f"image_energy_removed must be a fraction in [0, 1) or None, got {removed!r}"
        )
    opts["seed"] = _base_seed(opts["random_state"])
    return opts


def _base_seed(random_state: Any) -> int:
    if isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(
        random_state, (bool, np.bool_)
    ):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state!r}")
        return int(random_state)
    if random_state is None:
        return int(np.random.RandomState().randint(2**31 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    raise ValueError(
        f"random_state must be an int, a numpy RandomState or None, got {random_state!r}"
    )


# --------------------------------------------------------------------------- assembling


def _object_column(values) -> np.ndarray:
    """Return a 1-D object array holding ``values`` (arrays stay whole items)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _finish(frame: pd.DataFrame, opts: dict) -> Bunch | tuple:
    """Add the split, apply the degradations and the subset, build the Bunch."""
    if opts["split"] == "speaker":
        is_test = frame["speaker"].isin(opts["test_speakers"]).to_numpy()
    else:
        is_test = frame["take"].isin(FSDD_TEST_TAKES).to_numpy()
    frame["split"] = np.where(is_test, "test", "train")

    n_components = None
    if opts["image_energy_removed"] is not None:
        images = np.stack([_read_png(v) if isinstance(v, str) else v for v in frame["image"]])
        degraded, n_components = _remove_energy(images, opts["image_energy_removed"])
        frame["image"] = _object_column(degraded)

    if opts["subset"] != "all":
        frame = frame[frame["split"] == opts["subset"]].reset_index(drop=True)

    if opts["audio_snr_db"] is not None:
        speaker_ids = {s: i for i, s in enumerate(SPEAKERS)}
        waves = [
            _add_noise(
                path,
                opts["audio_snr_db"],
                [opts["seed"], int(label), speaker_ids[speaker], int(take)],
            )
            for path, label, speaker, take in frame[
                ["audio", "label", "speaker", "take"]
            ].itertuples(index=False)
        ]
        frame["audio"] = _object_column(waves)

    frame = frame[_COLUMNS].astype({"label": np.int64, "take": np.int64, "mnist_index": np.int64})
    if opts["as_frame"]:
        data, target, groups = frame[_FEATURE_NAMES], frame["label"], frame["speaker"]
    else:
        data = np.empty((len(frame), 2), dtype=object)
        data[:, 0] = frame["image"].to_numpy(dtype=object)
        data[:, 1] = frame["audio"].to_numpy(dtype=object)
        target = frame["label"].to_numpy()
        groups = frame["speaker"].to_numpy(dtype=object)
    if opts["return_X_y"]:
        return data, target
    return Bunch(
        frame=frame if opts["as_frame"] else None,
        data=data,
        target=target,
        groups=groups,
        feature_names=list(_FEATURE_NAMES),
        target_names=np.arange(10),
        image_pca_components=n_components,
        DESCR=DESCR,
    )


def _remove_energy(images: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
    """Rebuild images from the leading principal components that keep ``1 - fraction``."""
    images = np.asarray(images)
    n, h, w = images.shape
    flat = images.reshape(n, h * w).astype(np.float64)
    if fraction == 0:
        return images.astype(np.uint8, copy=True), h * w
    mean = flat.mean(axis=0)
    centred = flat - mean
    # Principal axes from the (h*w, h*w) scatter matrix: much cheaper than an SVD of the
    # data. One BLAS thread: faster at this size (threads thrash on a busy machine) and the
    # same floating-point result whatever the machine's core count.
    with threadpool_limits(limits=1, user_api="blas"):
        variance, axes = np.linalg.eigh(centred.T @ centred)
        variance, axes = np.clip(variance[::-1], 0, None), axes[:, ::-1]
        kept = np.cumsum(variance) / variance.sum()
        k = min(int(np.searchsorted(kept, 1.0 - fraction - 1e-12)) + 1, len(kept))
        basis = axes[:, :k]
        rebuilt = mean + (centred @ basis) @ basis.T
    out = np.clip(np.rint(rebuilt), 0, 255).astype(np.uint8)
    return out.reshape(n, h, w), k


def _add_noise(path: str, snr_db: float, seed: list[int]) -> np.ndarray:
    """Read one WAV clip and mix it with seeded white noise at ``snr_db``."""
    wave, sr = sf.read(path, dtype="float32", always_2d=False)
    if wave.ndim > 1:
        wave = wave.mean(axis=1)
    if sr != SAMPLE_RATE:
        raise ValueError(f"{path}: sampling rate {sr} Hz, expected {SAMPLE_RATE} Hz")
    wave = wave.astype(np.float64)
    power = float(np.mean(wave**2)) if wave.size else 0.0
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(wave.shape) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (wave + noise).astype(np.float32)


def _read_png(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8)
