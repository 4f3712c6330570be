"""Safe model files: save a fitted estimator, load it without running code from the file.

:func:`save` writes a skops file (a zip archive: ``schema.json``, arrays
as ``.npy`` and raw bytes) with one more member, the *model card*
``mmsk_card.json``. Fusion estimators go in as plain data: each net's
weights as safetensors bytes and the configuration that rebuilds it (see
:mod:`mmsk._portable`), never a pickled torch object. :func:`load` reads
such a file only when every type it names is on the allow-list of
:mod:`mmsk._trust` (what skops trusts: scikit-learn estimators, numpy and
scipy types; and mmsk's estimators, :data:`MMSK_TYPES`, a few plain
scikit-learn helpers, and torch optimizer and loss *classes* as parameter
values), and a pickle or joblib file only with ``trusted=True``. :func:`read_card` reads
the card alone. The format is described in ``docs/io.md``.
"""

from __future__ import annotations

import bz2
import io
import json
import lzma
import os
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmsk._card import FORMAT, FORMAT_VERSION, data_fingerprint, make_card, versions
from mmsk._trust import MMSK_TYPES, refused_types

__all__ = [
    "CARD_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "MMSK_TYPES",
    "ModelFileError",
    "ModelVersionWarning",
    "UntrustedModelError",
    "data_fingerprint",
    "load",
    "load_with_card",
    "read_card",
    "save",
]

#: The zip member that holds the model card.
CARD_NAME = "mmsk_card.json"


class ModelFileError(ValueError):
    """A file that is not an mmsk model file, or a damaged one."""


class UntrustedModelError(ModelFileError):
    """A model file that loading cannot trust: a pickle without opt-in, or a foreign type."""


class ModelVersionWarning(UserWarning):
    """A model file written with other versions of mmsk, scikit-learn or torch."""


# -- saving --------------------------------------------------------------------------------
def save(model: Any, path: str | os.PathLike[str], **card_extras: Any) -> Path:
    """Save a fitted estimator to a safe model file with a model card.

    Parameters
    ----------
    model : estimator
        Usually a fitted :class:`~sklearn.pipeline.Pipeline`; any object of
        scikit-learn, numpy, scipy and mmsk types (a grid search, a
        stacking ensemble, a bare fusion estimator, ...).
    path : str or path-like
        The file to write (its folder is created); ``.skops`` is the
        conventional suffix. An existing file is replaced only once the
        new one is complete.
    **card_extras
        Extra facts for the model card. These have a meaning:
        ``X`` and ``y``, the training data, of which only a sha256
        fingerprint (:func:`data_fingerprint`) and the shape are kept;
        ``roles``, a dict role -> column names (``"image"``, ``"audio"``,
        ``"text"``, ``"numeric"``, ``"categorical"``), else inferred from a
        fitted ColumnTransformer; ``target``, the target's name; ``task``,
        ``"classification"`` or ``"regression"``, else read from the
        estimator. Anything else must be JSON data and goes to the card's
        ``extra``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``model`` holds an object that loading could not trust (a
        custom callback, a torch module, a ``joblib.Memory``), or a fusion
        estimator fitted by an older mmsk.
    TypeError
        If an extra of the card is not JSON data.

    See Also
    --------
    load : Load the file.
    read_card : Read its model card.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from sklearn.linear_model import LogisticRegression
    >>> import mmsk
    >>> X, y = np.arange(8.0).reshape(4, 2), [0, 0, 1, 1]
    >>> clf = LogisticRegression().fit(X, y)
    >>> path = Path(tempfile.mkdtemp()) / "model.skops"
    >>> mmsk.save(clf, path, X=X, y=y, note="first try").name
    'model.skops'
    >>> card = mmsk.io.read_card(path)
    >>> card["task"], card["classes"], card["extra"]
    ('classification', [0, 1], {'note': 'first try'})
    """
    import skops.io as sio

    from . import _portable

    card = make_card(model, dict(card_extras))
    card_json = json.dumps(card, indent=2, allow_nan=False)
    if "model_card_" in getattr(model, "__dict__", {}):  # a loaded model: not its old card
        model = _without_card(model)
    name = type(model).__name__
    try:
        with _portable.saving():
            data = sio.dumps(model)
    except ValueError:  # e.g. a fusion estimator fitted by an older mmsk
        raise
    except Exception as exc:  # noqa: BLE001 - skops: UnsupportedTypeException, TypeError, ...
        what = _culprit(model) or "skops cannot store one of its objects"
        raise ValueError(
            f"cannot save {name} in the safe format: {what} ({_reason(exc)}); {_SAFE_HINT}"
        ) from exc
    refused = refused_types(sio.get_untrusted_types(data=data), _schema_from_bytes(data))
    if refused:
        raise ValueError(
            f"cannot save {name} in the safe format: it holds {', '.join(refused)}, which "
            f"loading would not trust; {_SAFE_HINT}"
        )
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(CARD_NAME, card_json)
    return _write_atomically(Path(path), buffer.getvalue())


_SAFE_HINT = (
    "a safe file holds only mmsk, scikit-learn, numpy and scipy objects (and torch optimizer "
    "and loss classes as parameters): replace the others (e.g. callbacks=None, a model name "
    "or file instead of a torch module), or pickle the model with joblib, which then loads "
    "only with trusted=True"
)


def _culprit(model: Any) -> str | None:
    """Say which object of ``model`` skops cannot store, for the objects we know of."""
    from mmsk._card import walk

    for where, est in walk(model):
        name = f"{type(est).__name__}{f' ({where})' if where else ''}"
        for attr, value in vars(est).items():
            if attr == "_metadata_request":
                return f"{name} has set_*_request() routing requests, which skops cannot store"
            if type(value).__module__.split(".")[0] == "torch" and not isinstance(value, type):
                return f"{attr} of {name} is a torch object"
    return None


def _without_card(model: Any) -> Any:
    import copy

    model = copy.copy(model)
    del model.model_card_
    return model


def _write_atomically(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _schema_from_bytes(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("schema.json"))


# -- loading -------------------------------------------------------------------------------------
def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the model card of a model file, without loading the model.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.

    Returns
    -------
    dict
        The card: ``format``, ``format_version``, ``created``,
        ``estimator``, ``task``, ``target``, ``classes``, ``inputs``
        (``columns``, ``n_features``, ``roles``, ``roles_source``),
        ``fusion`` (per fusion estimator: blocks, epochs, validation
        scores), ``training_data`` (fingerprints), ``versions`` and
        ``extra``; see ``docs/io.md``.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ModelFileError
        If the file is not a model file of :func:`save` (a pickle is
        refused: its card cannot be read without unpickling it), is
        damaged, or has a newer format version.

    See Also
    --------
    save : Write a model file.
    load : Load the model.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from sklearn.linear_model import Ridge
    >>> import mmsk
    >>> path = mmsk.save(Ridge().fit(np.eye(3), [1, 2, 3]), Path(tempfile.mkdtemp()) / "r.skops")
    >>> card = mmsk.io.read_card(path)
    >>> card["format"], card["task"], card["inputs"]["n_features"]
    ('mmsk-model', 'regression', 3)
    """
    file = _existing(path)
    kind = _sniff(file)
    if kind == "pickle":
        raise ModelFileError(
            f"{path} is a pickle file: its card cannot be read without unpickling it; "
            "if you trust it, mmsk.load(path, trusted=True).model_card_ has it"
        )
    _check_kind(kind, path)
    with _open_zip(file, path) as archive:
        return _card_of(archive, path)


def load(
    path: str | os.PathLike[str],
    *,
    trusted: bool = False,
    map_location: Any = "cpu",
    architectures: Mapping[str, Any] | None = None,
) -> Any:
    """Load an estimator from a model file; a pickle only with ``trusted=True``.

    The file's format is told from its first bytes, without unpickling
    anything. A safe model file (:func:`save`) loads only if every type
    it names is on mmsk's allow-list, so loading it runs no code from the
    file. A pickle or joblib file runs whatever code it holds when
    unpickled: it is refused unless ``trusted=True``, and then loaded with
    a warning.

    Parameters
    ----------
    path : str or path-like
        The model file.
    trusted : bool, default=False
        Allow a pickle or joblib file (one of the old ``mmsk fit``'s too).
        It does not widen the allow-list of safe files.
    map_location : str or torch.device, default="cpu"
        Device for the fusion nets: ``"cpu"`` (a model trained on a GPU
        loads on a machine without one), ``"cuda"``, ``"cuda:1"`` or
        ``"auto"`` (a GPU when there is one). Safe files only; pickles
        go where skorch maps them.
    architectures : dict or None, default=None
        Block name -> the torch module, or the class or function that
        builds it, of a ``"pretrained_image"`` tower whose backbone was
        given at fit as such a Python object: a safe file stores the
        fine-tuned weights of the backbone, never its code, so loading
        needs the architecture again (the weights are then loaded into
        a copy of it). Not needed for a backbone given as a torchvision
        name. Safe files only.

    Returns
    -------
    estimator
        The saved estimator, fitted. Its card is also its ``model_card_``
        attribute, unless the estimator is not fitted.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    UntrustedModelError
        For a pickle file without ``trusted=True``, or a safe file that
        names a type outside the allow-list.
    ModelFileError
        If the file is not a model file, is damaged (truncated, edited, a
        zip of something else), or has a newer format version.
    ValueError
        (:class:`mmsk._portable.ArchitectureNeededError`) If an image
        backbone needs its architecture and ``architectures`` lacks it.

    Warns
    -----
    ModelVersionWarning
        If the file was written with another version of mmsk,
        scikit-learn or torch (both versions are named).
    UserWarning
        When a pickle file was unpickled (``trusted=True``).

    See Also
    --------
    save : Write a model file.
    read_card : Read the card without loading the model.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from mmsk import FusionClassifier
    >>> import mmsk
    >>> X = np.random.RandomState(0).normal(size=(40, 3))
    >>> clf = FusionClassifier(hidden_units=8, max_epochs=2, random_state=0).fit(X, X[:, 0] > 0)
    >>> path = mmsk.save(clf, Path(tempfile.mkdtemp()) / "clf.skops")
    >>> again = mmsk.load(path)
    >>> bool(np.array_equal(again.predict_proba(X), clf.predict_proba(X)))
    True
    >>> again.model_card_["fusion"][0]["modalities"]
    {'input': 3}
    """
    model, card = load_with_card(
        path, trusted=trusted, map_location=map_location, architectures=architectures
    )
    if card is not None:
        _attach_card(model, card)
    return model


def load_with_card(
    path: str | os.PathLike[str],
    *,
    trusted: bool = False,
    map_location: Any = "cpu",
    architectures: Mapping[str, Any] | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """Load a model file as :func:`load` does; return the estimator and its card.

    For the command line and the server, which read the card's columns,
    task and target. The card of a pickle is made from the object (and
    from the metadata of an old ``mmsk fit`` file); None when the pickle
    holds no estimator.

    Parameters
    ----------
    path : str or path-like
        The model file.
    trusted : bool, default=False
        Allow a pickle or joblib file.
    map_location : str or torch.device, default="cpu"
        Device for the fusion nets.
    architectures : dict or None, default=None
        Image backbones given at fit as Python objects, by block name.

    Returns
    -------
    estimator : object
        The saved estimator.
    card : dict or None
        Its model card.
    """
    if architectures is not None and not isinstance(architectures, Mapping):
        raise ValueError(
            "architectures must be None or a dict of block name -> torch module (or the class "
            f"or function that builds it), got {architectures!r}"
        )
    file = _existing(path)
    kind = _sniff(file)
    if kind == "pickle":
        return _load_pickle(file, path, trusted)
    _check_kind(kind, path)
    device = _check_device(map_location)
    data = file.read_bytes()  # read once: what is checked is what is loaded
    with _open_zip(io.BytesIO(data), path) as archive:
        card = _card_of(archive, path)
        if "schema.json" not in archive.namelist():
            raise ModelFileError(f"{path} is damaged: its card is there, its model is not")
        try:
            schema = json.loads(archive.read("schema.json"))
        except (ValueError, zipfile.BadZipFile, OSError) as exc:
            raise ModelFileError(f"{path} is damaged: {_reason(exc)}") from exc
    _warn_versions(card, path)
    return _load_skops(data, path, schema, device, architectures), card


def _load_skops(data: bytes, path: Any, schema: Any, device: Any, architectures: Any = None) -> Any:
    import skops.io as sio

    from . import _portable

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - whatever a damaged schema raises
        raise ModelFileError(f"{path} is damaged: {_reason(exc)}") from exc
    refused = refused_types(untrusted, schema)
    if refused:
        raise UntrustedModelError(
            f"{path} holds {', '.join(refused)}: types outside mmsk's allow-list, which "
            "loading could turn into running code; it was not written by mmsk.save, or was "
            "edited since; it is not loaded"
        )
    try:
        with _portable.loading(device, architectures):
            return sio.loads(data, trusted=untrusted)
    except _portable.ArchitectureNeededError as exc:
        raise _portable.ArchitectureNeededError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises
        raise ModelFileError(f"{path} is damaged: {_reason(exc)}") from exc


def _load_pickle(file: Path, path: Any, trusted: bool) -> tuple[Any, dict[str, Any] | None]:
    if not trusted:
        raise UntrustedModelError(
            f"{path} is a pickle (joblib) file: unpickling it runs any code it holds; if you "
            "trust its source, load it with trusted=True (command line: --trust-pickle), "
            "then save it again with mmsk.save"
        )
    import joblib
    from sklearn.base import BaseEstimator

    try:
        obj = joblib.load(file)
    except Exception as exc:  # noqa: BLE001 - whatever unpickling raises
        raise ModelFileError(f"{path} is a damaged pickle file: {_reason(exc)}") from exc
    warnings.warn(
        f"{path} was unpickled (trusted=True), which runs any code a pickle holds; "
        "save it again with mmsk.save for a file that loads safely",
        UserWarning,
        stacklevel=4,
    )
    if isinstance(obj, dict) and obj.get("format") == FORMAT:  # written by the old `mmsk fit`
        if obj.get("format_version") != 1 or "pipeline" not in obj:
            raise ModelFileError(f"{path}: an mmsk pickle of unknown layout; refit it")
        model = obj["pipeline"]
        card = make_card(
            model,
            {"roles": obj.get("columns"), "target": obj.get("target"), "task": obj.get("task")},
        )
        card["versions"] = {
            "mmsk": obj.get("mmsk_version"),
            "scikit-learn": obj.get("sklearn_version"),
        }
        card["created"] = obj.get("created")
        _warn_versions(card, path)
        return model, card
    if isinstance(obj, BaseEstimator):
        card = make_card(obj, {})
        card["versions"], card["created"] = {}, None  # unknown
        return obj, card
    return obj, None


def _attach_card(model: Any, card: dict[str, Any]) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except (NotFittedError, TypeError):
        return  # a trailing-underscore attribute would make it look fitted
    try:
        model.model_card_ = card
    except AttributeError:
        pass


def _existing(path: Any) -> Path:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    return file


def _not_ours(path: Any) -> str:
    return f"{path} is not an mmsk model file (neither a file of mmsk.save nor a pickle)"


def _check_kind(kind: str, path: Any) -> None:
    if kind == "empty":
        raise ModelFileError(f"{path} is empty, not an mmsk model file")
    if kind != "zip":
        raise ModelFileError(_not_ours(path))


def _reason(exc: BaseException) -> str:
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _sniff(file: Path) -> str:
    """Tell "zip", "pickle" or "unknown" from the first bytes, never unpickling anything."""
    with open(file, "rb") as handle:
        head = handle.read(4096)
    if not head:
        return "empty"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if _is_pickle(head) or _is_pickle(_decompressed_head(head)):  # joblib compresses
        return "pickle"
    return "unknown"


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # PROTO opcode


def _decompressed_head(head: bytes) -> bytes:
    """Decompress the start of a gzip, zlib, bz2, xz or lzma stream (joblib's ``compress``)."""
    try:
        if head.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16)
        if head[:1] == b"x" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            return zlib.decompressobj().decompress(head, 16)
        if head.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(head, max_length=16)
        if head.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00")):
            return lzma.LZMADecompressor().decompress(head, max_length=16)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
        pass
    return b""


def _open_zip(file: Path | io.BytesIO, path: Any) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelFileError(f"{path} is a damaged or truncated zip file ({exc})") from exc


def _card_of(archive: zipfile.ZipFile, path: Any) -> dict[str, Any]:
    if CARD_NAME not in archive.namelist():
        raise ModelFileError(f"{path} is a zip file but not an mmsk model file (no model card)")
    try:
        card = json.loads(archive.read(CARD_NAME))
    except (ValueError, zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path} has a damaged model card: {_reason(exc)}") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ModelFileError(f"{path} has a model card that mmsk did not write")
    version = card.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path} has a model card of unknown format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format {version}, newer than this mmsk reads ({FORMAT_VERSION}; "
            f"mmsk {versions()['mmsk']}): upgrade mmsk to load it"
        )
    if not isinstance(card.get("versions"), dict):
        raise ModelFileError(f"{path} has a damaged model card: no versions")
    return card


def _warn_versions(card: dict[str, Any], path: Any) -> None:
    saved, here = card.get("versions") or {}, versions()
    names = ("mmsk", "scikit-learn", "torch")
    if all(saved.get(name) in (None, here[name]) for name in names):
        return
    shown = [name for name in names if saved.get(name) is not None]
    then = ", ".join(f"{name} {saved[name]}" for name in shown)
    now = ", ".join(f"{name} {here[name]}" for name in shown)
    warnings.warn(
        f"{path} was written with {then}; this is {now}: predictions may differ; "
        "refit the model, or load it with the versions that wrote it",
        ModelVersionWarning,
        stacklevel=4,
    )


def _check_device(map_location: Any) -> Any:
    if isinstance(map_location, str) and map_location == "cpu":
        return "cpu"
    from ._torch import resolve_device

    device = resolve_device(map_location)
    import torch

    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location={map_location!r}, but no CUDA device is available")
    return device
