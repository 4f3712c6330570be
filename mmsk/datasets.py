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
import os
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
from sklearn.utils import Bunch

# The data set's definition lives in _av_digits; its constants are public here.
from ._av_digits import (  # noqa: F401 (public constants re-exported)
    _COLUMNS,
    _WAV_NAME,
    DEFAULT_TEST_SPEAKERS,
    DESCR,
    FSDD_TEST_TAKES,
    N_TAKES,
    PAIRING_SEED,
    SAMPLE_RATE,
    SAMPLE_TAKES,
    SPEAKERS,
    _canonical_clips,
    _check_options,
    _finish,
    _object_column,
    _pairing,
    _wav_name,
)

__all__ = ["get_data_home", "load_av_digits", "load_sample"]

logger = logging.getLogger(__name__)


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
