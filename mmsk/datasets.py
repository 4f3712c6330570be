"""Loaders for AV-digits: real spoken digits paired with real handwritten digits.

*AV-digits* pairs every recording of the Free Spoken Digit Dataset (FSDD,
3,000 clips at 8 kHz, 6 speakers x 10 digits x 50 takes) with its own image
from the MNIST test set (28x28 grey, 10,000 images) of the same digit. No
image is used twice. This is the AV-MNIST benchmark of Vielzeuf et al. (2018),
built only from files whose licences allow redistribution.

- :func:`load_sample` reads the 300-pair sample shipped inside the package
  (no download, no set-up), for demos, tests and documentation.
- :func:`load_av_digits` reads the full 3,000 pairs from
  ``<data_home>/fsdd/`` and ``<data_home>/mnist/`` (see :func:`get_data_home`).

Both give the same columns, the same pairing and the same splits. The sample's
rows are exactly the full set's rows with takes 0, 10, 20, 30 and 40.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import logging
import numbers
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits

__all__ = ["get_data_home", "load_av_digits", "load_sample"]

logger = logging.getLogger(__name__)

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

#: Where ``download_if_missing=True`` gets FSDD: the GitHub archive of the source repository.
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
#: The two MNIST test files, each with the mirrors tried in turn.
MNIST_URLS = {
    "t10k-images-idx3-ubyte.gz": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-images-idx3-ubyte.gz",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-labels-idx1-ubyte.gz",
    ),
}
#: MD5 of the *decompressed* MNIST files (the official checksums; gzip headers vary by mirror).
MNIST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
_MNIST_IMAGES, _MNIST_LABELS = MNIST_URLS

_COLUMNS = ["image", "audio", "label", "speaker", "take", "mnist_index", "split"]
_FEATURE_NAMES = ["image", "audio"]
_SUBSETS = ("all", "train", "test")
_SPLITS = ("speaker", "take")
_WAV_NAME = re.compile(r"(?:^|/)recordings/(\d)_([a-z]+)_(\d+)\.wav$")

DESCR = """\
.. _av_digits_dataset:

AV-digits: spoken digits paired with handwritten digits
-------------------------------------------------------

**Data Set Characteristics:**

:Number of pairs: 3,000 (full set); 300 (shipped sample: takes 0, 10, 20, 30, 40)
:Number of classes: 10 (digits 0-9), balanced (300 per digit; 30 in the sample)
:Modalities: ``image``: a 28x28 uint8 grey MNIST test image (0 background, 255 ink);
    ``audio``: an 8 kHz mono 16-bit WAV recording of one English spoken digit
:Other columns: ``label`` (int), ``speaker`` (6 speakers), ``take`` (0-49),
    ``mnist_index`` (row of the MNIST test set), ``split`` ("train"/"test")
:Groups: ``speaker``, for GroupKFold or LeaveOneGroupOut (speaker-held-out evaluation)

Every recording of the Free Spoken Digit Dataset (FSDD) gets its own image of
the same digit from the MNIST test set, and no image is used twice. The
pairing is fixed: for each digit, the MNIST test indices of that digit are
permuted by ``np.random.RandomState(0).permutation`` and assigned in order to
the digit's 300 clips sorted by (speaker, take), speakers in the order george,
jackson, lucas, nicolas, theo, yweweler. It does not depend on what is loaded,
so the sample's rows equal the corresponding rows of the full set. Rows are
ordered by (take, speaker, label), so that consecutive rows vary in digit and
speaker.

Splits: ``split="speaker"`` holds out whole speakers (default ``theo``);
``split="take"`` is FSDD's convention (takes 0-4 are the test set, 10 %).

Degradations (optional, seeded): white noise mixed into every clip at a given
SNR, and the AV-MNIST image degradation, which removes a fraction of the
images' energy (variance) by keeping only their leading principal components.

The AV-MNIST benchmark (Vielzeuf et al. 2018) pairs the same two sources;
AV-digits differs in using MNIST's test images and in its documented pairing.

.. rubric:: Sources and licences

- Free Spoken Digit Dataset (FSDD), Jakobovski et al.,
  https://github.com/Jakobovski/free-spoken-digit-dataset (commit 26eb9aa).
  Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0).
- MNIST test set, Yann LeCun and Corinna Cortes (a derivative of NIST data).
  Creative Commons Attribution-ShareAlike 3.0 (CC BY-SA 3.0).

The shipped sample's files keep these licences (share-alike); the rest of mmsk
is BSD-3-Clause.

.. rubric:: References

- Y. LeCun, L. Bottou, Y. Bengio and P. Haffner. Gradient-based learning
  applied to document recognition. Proc. IEEE 86(11), 1998.
- V. Vielzeuf, A. Lechervy, S. Pateux and F. Jurie. CentralNet: a multilayer
  approach for multimodal fusion. ECCV Workshops, 2018.
"""


# --------------------------------------------------------------------------- public API


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Return the folder that holds mmsk's full data sets.

    The folder is ``data_home`` if given, else the ``MMSK_DATA`` environment
    variable, else ``~/mmsk_data``; a leading ``~`` is expanded. The folder is
    not created and need not exist.

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        Explicit folder; overrides the environment variable.

    Returns
    -------
    pathlib.Path
        The data folder.

    See Also
    --------
    load_av_digits : Reads ``<data_home>/fsdd/`` and ``<data_home>/mnist/``.

    Examples
    --------
    >>> from mmsk.datasets import get_data_home
    >>> get_data_home("/srv/data").as_posix()
    '/srv/data'
    >>> get_data_home("~/x") == get_data_home("~/x").expanduser()
    True
    """
    if data_home is None:
        data_home = os.environ.get("MMSK_DATA") or "~/mmsk_data"
    elif not isinstance(data_home, (str, os.PathLike)):
        raise ValueError(f"data_home must be a str, a path or None, got {type(data_home).__name__}")
    return Path(data_home).expanduser()


def load_sample(
    *,
    subset: str = "all",
    split: str = "speaker",
    test_speakers: str | Iterable[str] | None = None,
    return_X_y: bool = False,
    as_frame: bool = True,
    audio_snr_db: float | None = None,
    image_energy_removed: float | None = None,
    random_state: Any = 0,
) -> Bunch | tuple:
    """Load the AV-digits sample shipped with mmsk (300 image-audio pairs).

    The sample is the 300 rows of the full AV-digits set (see
    :func:`load_av_digits`) whose FSDD take is 0, 10, 20, 30 or 40: every
    speaker says every digit five times, 30 pairs per digit. Its files live
    inside the package (``mmsk/data/av_digits/``), so it needs no download:
    the WAV recordings copied unchanged from FSDD, and the paired MNIST test
    images as 8-bit grey PNG files.

    Parameters
    ----------
    subset : {"all", "train", "test"}, default="all"
        Which rows to return, according to ``split``.
    split : {"speaker", "take"}, default="speaker"
        ``"speaker"``: the clips of ``test_speakers`` are the test set.
        ``"take"``: FSDD's convention, takes 0-4 are the test set (here,
        take 0: 60 rows).
    test_speakers : str, sequence of str or None, default=None
        Speakers held out by ``split="speaker"``; None means ``("theo",)``.
        Must be None when ``split="take"``.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=True
        Return pandas objects (``frame``, ``data`` as a DataFrame, ``target``
        and ``groups`` as Series); otherwise numpy arrays and ``frame=None``.
    audio_snr_db : float or None, default=None
        Mix every clip with white Gaussian noise at this signal-to-noise
        ratio in dB (lower is noisier; negative values are allowed). The
        ``audio`` column then holds float32 waveforms at 8 kHz instead of
        paths: use ``AudioFeatures(sr=8000)``. See :func:`load_av_digits`.
    image_energy_removed : float in [0, 1) or None, default=None
        Remove this fraction of the images' energy by PCA (the AV-MNIST
        degradation, e.g. 0.75). The ``image`` column then holds 28x28 uint8
        arrays instead of paths. The PCA is fitted on the 300 sample images,
        so degraded sample images differ from the degraded full set's.
    random_state : int, RandomState instance or None, default=0
        Seed of the audio noise; same value, same noise. See
        :func:`load_av_digits`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        frame : DataFrame of shape (n_rows, 7) or None
            Columns ``image`` (absolute str path of a PNG, or array),
            ``audio`` (absolute str path of a WAV, or array), ``label``,
            ``speaker``, ``take``, ``mnist_index``, ``split``.
            None when ``as_frame=False``.
        data : DataFrame or ndarray of shape (n_rows, 2)
            The ``image`` and ``audio`` columns.
        target : Series or ndarray of shape (n_rows,)
            The digit, 0-9.
        groups : Series or ndarray of shape (n_rows,)
            The speaker, for :class:`~sklearn.model_selection.GroupKFold`.
        feature_names : list of str
            ``["image", "audio"]``.
        target_names : ndarray of shape (10,)
            The digits 0-9.
        image_pca_components : int or None
            Principal components kept by ``image_energy_removed``.
        DESCR : str
            Description of the data set, its sources and licences.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as above.

    See Also
    --------
    load_av_digits : The full 3,000 pairs, from ``data_home``.

    Notes
    -----
    Licences: the recordings are from the Free Spoken Digit Dataset (FSDD),
    Jakobovski et al., CC BY-SA 4.0; the images are from MNIST, Yann LeCun
    and Corinna Cortes, CC BY-SA 3.0. See ``mmsk/data/av_digits/README.md``.

    Examples
    --------
    >>> from mmsk.datasets import load_sample
    >>> sample = load_sample()
    >>> sample.frame.shape
    (300, 7)
    >>> sample.frame[["label", "speaker", "take", "split"]].head(3)
       label speaker  take  split
    0      0  george     0  train
    1      1  george     0  train
    2      2  george     0  train
    >>> sample.frame["audio"][0].endswith("0_george_0.wav")
    True
    >>> X, y = load_sample(subset="test", return_X_y=True)
    >>> X.shape, sorted(set(load_sample(subset="test").groups))
    ((50, 2), ['theo'])
    """
    opts = _check_options(
        subset=subset,
        split=split,
        test_speakers=test_speakers,
        return_X_y=return_X_y,
        as_frame=as_frame,
        audio_snr_db=audio_snr_db,
        image_energy_removed=image_energy_removed,
        random_state=random_state,
    )
    root = _sample_dir()
    table = root / "av_digits.csv"
    if not table.is_file():
        raise FileNotFoundError(
            f"the shipped AV-digits sample is missing: {table} does not exist. "
            "Reinstall mmsk; the wheel carries mmsk/data/av_digits/."
        )
    frame = pd.read_csv(
        table,
        dtype={"image": str, "audio": str, "speaker": str},
        keep_default_na=False,
    )
    for column in ("image", "audio"):
        frame[column] = [str(root / rel) for rel in frame[column]]
    return _finish(frame[_COLUMNS[:-1]], opts)


def load_av_digits(
    *,
    data_home: str | os.PathLike | None = None,
    subset: str = "all",
    split: str = "speaker",
    test_speakers: str | Iterable[str] | None = None,
    return_X_y: bool = False,
    as_frame: bool = True,
    audio_snr_db: float | None = None,
    image_energy_removed: float | None = None,
    random_state: Any = 0,
    download_if_missing: bool = False,
) -> Bunch | tuple:
    """Load the full AV-digits set: 3,000 spoken digits, each with its own image.

    Every FSDD recording (8 kHz, 6 speakers x 10 digits x 50 takes) is paired
    with a distinct MNIST test image of the same digit. The pairing is fixed
    and seeded: for each digit, the MNIST test indices of that digit are
    permuted by ``np.random.RandomState(0).permutation`` and assigned in order
    to the digit's 300 clips sorted by (speaker, take), speakers in the order
    of :data:`SPEAKERS`. It depends on nothing that is loaded, so subsets and
    the shipped sample (:func:`load_sample`) are exactly rows of this set.
    Rows are ordered by (take, speaker, label).

    Files are read from ``<data_home>/fsdd/recordings/{digit}_{speaker}_{take}.wav``
    and ``<data_home>/mnist/t10k-images-idx3-ubyte.gz``,
    ``<data_home>/mnist/t10k-labels-idx1-ubyte.gz`` (the MNIST test set, IDX
    format, gzip-compressed).

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        Folder holding ``fsdd/`` and ``mnist/``; None means
        :func:`get_data_home` (``MMSK_DATA``, else ``~/mmsk_data``).
    subset : {"all", "train", "test"}, default="all"
        Which rows to return, according to ``split``.
    split : {"speaker", "take"}, default="speaker"
        ``"speaker"``: the clips of ``test_speakers`` are the test set (500
        rows per speaker). ``"take"``: FSDD's convention, takes 0-4 of every
        speaker and digit are the test set (300 rows).
    test_speakers : str, sequence of str or None, default=None
        Speakers held out by ``split="speaker"``: some of george, jackson,
        lucas, nicolas, theo, yweweler, not all; None means ``("theo",)``.
        Must be None when ``split="take"``.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    as_frame : bool, default=True
        Return pandas objects (``frame``, ``data`` as a DataFrame, ``target``
        and ``groups`` as Series); otherwise numpy arrays and ``frame=None``.
    audio_snr_db : float or None, default=None
        Mix every clip with white Gaussian noise at this signal-to-noise ratio
        in dB: the noise's power is the clip's mean power divided by
        ``10 ** (audio_snr_db / 10)``. Lower is noisier; negative values are
        allowed; the sum is not clipped. The ``audio`` column then holds
        float32 waveforms at 8 kHz instead of paths: use
        ``AudioFeatures(sr=8000)``. All clips are decoded (about 50 MB for the
        full set).
    image_energy_removed : float in [0, 1) or None, default=None
        The AV-MNIST image degradation: remove this fraction of the images'
        energy by PCA, e.g. 0.75. A PCA is fitted on all images of the set
        (whatever ``subset``, so subsets stay rows of the whole); each image
        is rebuilt from the fewest leading components that keep at least
        ``1 - image_energy_removed`` of the variance, then rounded and clipped
        back to uint8. Deterministic. ``0`` leaves the images unchanged.
    random_state : int, RandomState instance or None, default=0
        Seed of the audio noise. Each row's noise comes from a generator
        seeded by ``(random_state, label, speaker, take)``, so it does not
        depend on ``subset`` and equals the sample's noise for the same row.
        An int is used as is; a RandomState instance or None gives a base
        seed drawn from it (None: not reproducible).
    download_if_missing : bool, default=False
        Download what is missing into ``data_home``: FSDD from its GitHub
        archive (:data:`FSDD_URL`), the MNIST test files from
        :data:`MNIST_URLS`, checked against :data:`MNIST_MD5`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        frame : DataFrame of shape (n_rows, 7) or None
            Columns ``image`` (28x28 uint8 ndarray), ``audio`` (absolute str
            path of the WAV file, or a float32 waveform), ``label``,
            ``speaker``, ``take``, ``mnist_index``, ``split``.
            None when ``as_frame=False``.
        data : DataFrame or ndarray of shape (n_rows, 2)
            The ``image`` and ``audio`` columns.
        target : Series or ndarray of shape (n_rows,)
            The digit, 0-9.
        groups : Series or ndarray of shape (n_rows,)
            The speaker, for :class:`~sklearn.model_selection.GroupKFold`.
        feature_names : list of str
            ``["image", "audio"]``.
        target_names : ndarray of shape (10,)
            The digits 0-9.
        image_pca_components : int or None
            Principal components kept by ``image_energy_removed``.
        DESCR : str
            Description of the data set, its sources and licences.

    (data, target) : tuple if ``return_X_y`` is True
        ``data`` and ``target`` as above.

    Raises
    ------
    FileNotFoundError
        If files are missing and ``download_if_missing`` is False; the
        message names the expected paths and where to get them.
    ValueError
        For an invalid argument, or an MNIST file that is not what it should be.

    See Also
    --------
    load_sample : The 300-pair sample shipped with mmsk.
    get_data_home : Where the data are looked for.

    Notes
    -----
    Licences: FSDD (Jakobovski et al.) is CC BY-SA 4.0; MNIST (Yann LeCun and
    Corinna Cortes) is CC BY-SA 3.0. Credit both when you redistribute.

    Examples
    --------
    Without the data, the error says where they are expected:

    >>> from mmsk.datasets import load_av_digits
    >>> try:
    ...     load_av_digits(data_home="/nonexistent")
    ... except FileNotFoundError as exc:
    ...     print("/nonexistent/fsdd/recordings" in str(exc))
    True

    With the data under ``MMSK_DATA`` (or ``~/mmsk_data``):

    >>> av = load_av_digits()  # doctest: +SKIP
    >>> av.frame.shape  # doctest: +SKIP
    (3000, 7)
    >>> train = load_av_digits(subset="train", audio_snr_db=0)  # doctest: +SKIP
    """
    opts = _check_options(
        subset=subset,
        split=split,
        test_speakers=test_speakers,
        return_X_y=return_X_y,
        as_frame=as_frame,
        audio_snr_db=audio_snr_db,
        image_energy_removed=image_energy_removed,
        random_state=random_state,
    )
    if not isinstance(download_if_missing, (bool, np.bool_)):
        raise ValueError(f"download_if_missing must be a bool, got {download_if_missing!r}")
    home = get_data_home(data_home).absolute()
    where = (
        "the data_home argument"
        if data_home is not None
        else "the MMSK_DATA environment variable"
        if os.environ.get("MMSK_DATA")
        else "the default ~/mmsk_data (set MMSK_DATA or pass data_home= to change it)"
    )
    missing_wavs, missing_mnist = _missing_files(home)
    if (missing_wavs or missing_mnist) and download_if_missing:
        _download(home, fsdd=bool(missing_wavs), mnist=missing_mnist)
        missing_wavs, missing_mnist = _missing_files(home)
    if missing_wavs or missing_mnist:
        raise FileNotFoundError(_missing_message(home, where, missing_wavs, missing_mnist))

    images, labels = _read_mnist(home / "mnist")
    frame = _pairing(labels)
    recordings = home / "fsdd" / "recordings"
    audio = [
        str(recordings / _wav_name(d, s, t))
        for d, s, t in zip(frame["label"], frame["speaker"], frame["take"], strict=True)
    ]
    frame.insert(0, "audio", audio)
    frame.insert(0, "image", _object_column(images[frame["mnist_index"].to_numpy()]))
    return _finish(frame, opts)


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


# --------------------------------------------------------------------------- files


def _sample_dir() -> Path:
    """Return the shipped sample's folder as a real path (works from an installed wheel)."""
    root = importlib.resources.files("mmsk") / "data" / "av_digits"
    if not isinstance(root, os.PathLike):
        raise RuntimeError(
            "mmsk's shipped sample needs mmsk installed as files on disk (not inside a zip); "
            f"found {root!r}"
        )
    return Path(os.fspath(root)).absolute()


def _missing_files(home: Path) -> tuple[list[Path], list[str]]:
    recordings = home / "fsdd" / "recordings"
    present = set(os.listdir(recordings)) if recordings.is_dir() else set()
    clips = _canonical_clips()
    missing_wavs = [
        recordings / name
        for name in sorted(
            {_wav_name(d, s, t) for d, s, t in clips.itertuples(index=False)} - present
        )
    ]
    missing_mnist = [name for name in MNIST_URLS if not (home / "mnist" / name).is_file()]
    return missing_wavs, missing_mnist


def _missing_message(home: Path, where: str, wavs: list[Path], mnist: list[str]) -> str:
    recordings = home / "fsdd" / "recordings"
    lines = [f"AV-digits data not found under {home} (from {where})."]
    if wavs:
        if len(wavs) == 3000:
            lines.append(
                f"- FSDD: {recordings} must hold the 3,000 recordings "
                f"{{digit}}_{{speaker}}_{{take}}.wav, e.g. {recordings / '0_george_0.wav'}"
            )
        else:
            shown = ", ".join(str(p) for p in wavs[:3])
            lines.append(
                f"- FSDD: {len(wavs)} of the 3,000 recordings are missing from {recordings}, "
                f"e.g. {shown}"
            )
        lines.append(
            "  Get the recordings/ folder of https://github.com/Jakobovski/free-spoken-digit-dataset"
        )
    for name in mnist:
        lines.append(f"- MNIST test set: {home / 'mnist' / name} is missing")
    if mnist:
        lines.append(f"  Get it from {MNIST_URLS[mnist[0]][0].rsplit('/', 1)[0]}/")
    lines.append(
        "Set MMSK_DATA or pass data_home= to point at a folder with this layout, pass "
        "download_if_missing=True to download the files there, or use "
        "mmsk.datasets.load_sample() for the 300-pair sample shipped with mmsk."
    )
    return "\n".join(lines)


def _read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    ndim = len(shape) + 1
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"{path} is not an MNIST IDX file (expected magic number {magic})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims[1:] != shape or len(raw) != header + int(np.prod(dims)):
        raise ValueError(f"{path}: unexpected IDX dimensions {dims} or size {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _read_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _read_idx(folder / _MNIST_IMAGES, 2051, (28, 28))
    labels = _read_idx(folder / _MNIST_LABELS, 2049, ())
    if len(images) != len(labels):
        raise ValueError(
            f"{folder}: {len(images)} MNIST images but {len(labels)} labels; the files do not match"
        )
    return images, labels


# --------------------------------------------------------------------------- download


def _fetch(url: str, folder: Path) -> Path:
    """Download ``url`` into a temporary file inside ``folder``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _download(home: Path, *, fsdd: bool, mnist: list[str]) -> None:
    """Download the missing parts of the full data into ``home``."""
    if fsdd:
        _download_fsdd(home / "fsdd" / "recordings")
    for name in mnist:
        _download_mnist(home / "mnist", name)


def _download_fsdd(recordings: Path) -> None:
    wanted = {_wav_name(d, s, t) for d, s, t in _canonical_clips().itertuples(index=False)}
    logger.info("downloading FSDD from %s", FSDD_URL)
    archive = _fetch(FSDD_URL, recordings.parent)
    try:
        found = set()
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                match = _WAV_NAME.search(member)
                name = member.rsplit("/", 1)[-1]
                if not match or name not in wanted:
                    continue
                found.add(name)
                target = recordings / name
                if target.is_file():
                    continue
                recordings.mkdir(parents=True, exist_ok=True)
                part = target.with_name(name + ".part")
                part.write_bytes(zf.read(member))
                os.replace(part, target)
    except zipfile.BadZipFile as exc:
        raise OSError(f"the FSDD download from {FSDD_URL} is not a zip archive: {exc}") from exc
    finally:
        archive.unlink()
    if len(found) != len(wanted):
        raise OSError(
            f"the FSDD archive from {FSDD_URL} lacks {len(wanted) - len(found)} of the 3,000 "
            f"recordings, e.g. {sorted(wanted - found)[0]}"
        )


def _download_mnist(folder: Path, name: str) -> None:
    errors = []
    for url in MNIST_URLS[name]:
        logger.info("downloading %s", url)
        try:
            tmp = _fetch(url, folder)
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        try:
            with gzip.open(tmp, "rb") as fh:
                digest = hashlib.md5(fh.read(), usedforsecurity=False).hexdigest()
        except (OSError, EOFError) as exc:
            digest = f"unreadable gzip ({exc})"
        if digest == MNIST_MD5[name]:
            os.replace(tmp, folder / name)
            return
        tmp.unlink()
        errors.append(f"{url}: MD5 of the content is {digest}, expected {MNIST_MD5[name]}")
    raise OSError(f"could not download {name}:\n" + "\n".join(errors))
