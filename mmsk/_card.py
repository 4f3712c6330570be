"""The model card of a model file: what the model takes and returns, and how it was made.

:func:`make_card` reads a fitted estimator (its task, classes, input
columns, the column roles of its ColumnTransformer, the blocks and
validation scores of its fusion nets) and adds what the caller knows (the
training data's fingerprint, the target's name). :mod:`mmsk.io` stores the
card as JSON in the model file. Nothing here imports torch.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "data_fingerprint", "make_card", "versions", "walk"]

#: The ``format`` tag of the model card and the layout version this mmsk writes and reads.
FORMAT = "mmsk-model"
FORMAT_VERSION = 1
_ROLES = ("image", "audio", "text", "numeric", "categorical")


def versions() -> dict[str, str | None]:
    """Return the versions of mmsk and the libraries a model file depends on."""
    import sklearn

    from mmsk import __version__

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "mmsk": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "torch": installed("torch"),
        "skorch": installed("skorch"),
        "skops": installed("skops"),
        "safetensors": installed("safetensors"),
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def _plain(value: Any) -> Any:
    """Turn numpy values (e.g. class labels) into JSON data."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def make_card(model: Any, extras: dict[str, Any]) -> dict[str, Any]:
    """Return the model card of ``model``; ``extras`` as :func:`mmsk.save` takes them.

    Parameters
    ----------
    model : estimator
        The estimator to describe.
    extras : dict
        ``X``, ``y``, ``roles``, ``target``, ``task`` (see :func:`mmsk.save`)
        and JSON data for the card's ``extra``; the dict is emptied.

    Returns
    -------
    dict
        The card, JSON data.
    """
    from sklearn.base import is_classifier, is_regressor

    X, y = extras.pop("X", None), extras.pop("y", None)
    roles, source = extras.pop("roles", None), "given"
    if roles is None:
        roles, source = _infer_roles(model), "inferred"
    else:
        roles = _check_roles(roles)
    task = extras.pop("task", None)
    retrievers = _fitted_retrievers(model)
    if task is None:
        task = "classification" if is_classifier(model) else None
        task = "regression" if is_regressor(model) else task
        task = "retrieval" if task is None and retrievers else task
    target = extras.pop("target", None)
    try:
        json.dumps(extras, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the extras of a model card must be JSON data: {exc}") from exc
    columns = getattr(model, "feature_names_in_", None)
    if columns is None and hasattr(X, "columns"):
        columns = list(X.columns)
    classes = getattr(model, "classes_", None)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "task": task,
        "target": None if target is None else str(target),
        "classes": None if classes is None else _plain(np.asarray(classes)),
        "inputs": {
            "columns": None if columns is None else [str(c) for c in columns],
            "n_features": _plain(getattr(model, "n_features_in_", None)),
            "roles": roles,
            "roles_source": None if roles is None else source,
        },
        "fusion": [_fusion_summary(where, est) for where, est in _fitted_fusion(model)],
        "retrieval": [_retrieval_summary(where, est) for where, est in retrievers],
        "training_data": _training_data(X, y),
        "versions": versions(),
        "extra": extras,
    }


def _check_roles(roles: Any) -> dict[str, list[str]]:
    if not isinstance(roles, Mapping):
        raise TypeError(f"roles must be a dict role -> column names, got {roles!r}")
    out = {}
    for role, cols in roles.items():
        cols = [cols] if isinstance(cols, str) else list(cols or [])
        if not isinstance(role, str) or not all(isinstance(c, str) for c in cols):
            raise TypeError(f"roles must map str roles to str column names, got {roles!r}")
        out[role] = cols
    return out


def walk(obj: Any, where: str = "", seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """Yield (attribute path, estimator) for every estimator reachable from ``obj``.

    The paths read like code: ``"steps[1][1]"``, ``"best_estimator_.steps[0][1]"``.
    Estimators are followed through their ``__dict__``, lists, tuples and
    dicts; a fusion estimator's nets are not entered.
    """
    from sklearn.base import BaseEstimator

    if not isinstance(obj, BaseEstimator | list | tuple | dict):
        return
    seen = set() if seen is None else seen
    seen.add(id(obj))
    attributes = isinstance(obj, BaseEstimator)
    if attributes:
        yield where, obj
        if _is_fusion(obj):
            return
        children = vars(obj).items()
    else:
        children = enumerate(obj) if isinstance(obj, list | tuple) else obj.items()
    for key, value in children:  # the path only for containers: a vocabulary costs little
        if isinstance(value, BaseEstimator | list | tuple | dict) and id(value) not in seen:
            path = (f"{where}.{key}" if where else key) if attributes else f"{where}[{key!r}]"
            yield from walk(value, path, seen)


def _is_fusion(obj: Any) -> bool:
    core = sys.modules.get("mmsk.fusion._core")  # no fusion estimator exists before it is imported
    return core is not None and isinstance(obj, core.FusionBase)


def _fitted_fusion(model: Any) -> list[tuple[str, Any]]:
    return [(w, e) for w, e in walk(model) if _is_fusion(e) and "net_" in vars(e)]


def _fusion_summary(where: str, est: Any) -> dict[str, Any]:
    nets = vars(est).get("nets_") or [est.net_]
    return {
        "path": where,
        "estimator": type(est).__name__,
        "fusion": est.fusion,
        "modalities": {str(k): int(v) for k, v in est.modality_dims_.items()},
        "n_estimators": len(nets),
        "device": str(est.device_),
        "early_stopping": bool(getattr(est, "early_stopping_", False)),
        "scoring": est.scoring if isinstance(est.scoring, str) else None,
        "nets": [_best_epoch(net.history) for net in nets],
    }


def _fitted_retrievers(model: Any) -> list[tuple[str, Any]]:
    retrieval = sys.modules.get("mmsk.fusion.retrieval")
    if retrieval is None:
        return []
    kind = retrieval.CrossModalRetriever
    return [(w, e) for w, e in walk(model) if isinstance(e, kind) and "net_" in vars(e)]


def _retrieval_summary(where: str, est: Any) -> dict[str, Any]:
    """Describe what a retriever maps (query, target) into what space, and its training."""
    return {
        "path": where,
        "estimator": type(est).__name__,
        "query": str(est.query_),
        "target": str(est.target_),
        "modalities": {str(k): int(v) for k, v in est.modality_dims_.items()},
        "embed_dim": int(est.embed_dim),
        "temperature": float(est.temperature_),
        "device": str(est.device_),
        "early_stopping": bool(getattr(est, "early_stopping_", False)),
        "net": _best_epoch(est.net_.history),
    }


def _best_epoch(history: Any) -> dict[str, Any]:
    """Return the scores of the epoch whose weights the net kept (the last best one)."""
    epochs = list(history)
    if not epochs:
        return {"epochs": 0}
    best = epochs[-1]
    for flag in ("valid_score_best", "valid_loss_best"):
        flagged = [e for e in epochs if e.get(flag)]
        if flagged:
            best = flagged[-1]
            break
    out: dict[str, Any] = {"epochs": len(epochs), "best_epoch": _plain(best.get("epoch"))}
    for key in ("train_loss", "valid_loss", "valid_score"):
        if key in best and np.isfinite(best[key]):
            out[key] = float(best[key])
    return out


def _training_data(X: Any, y: Any) -> dict[str, Any] | None:
    if X is None and y is None:
        return None
    shape = None if X is None or isinstance(X, Mapping) else getattr(X, "shape", None)
    return {
        "sha256": None if X is None else data_fingerprint(X),
        "target_sha256": None if y is None else data_fingerprint(y),
        "n_rows": None if shape is None else int(shape[0]),
        "n_columns": None if shape is None or len(shape) < 2 else int(shape[1]),
    }


def _infer_roles(model: Any) -> dict[str, list[str]] | None:
    """Read column roles off the first fitted ColumnTransformer (e.g. make_multimodal_pipeline)."""
    from sklearn.compose import ColumnTransformer

    for _, est in walk(model):
        if isinstance(est, ColumnTransformer) and hasattr(est, "transformers_"):
            names = getattr(est, "feature_names_in_", None)
            roles: dict[str, list[str]] = {role: [] for role in _ROLES}
            for name, transformer, cols in est.transformers_:
                if isinstance(transformer, str) and transformer == "drop":
                    continue
                role = "other" if name == "remainder" else _role_of(transformer)
                roles.setdefault(role, []).extend(_column_names(cols, names))
            return roles
    return None


def _role_of(transformer: Any) -> str:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(transformer, Pipeline) and transformer.steps:
        transformer = transformer.steps[0][1]
    module = type(transformer).__module__
    if module in ("mmsk.image", "mmsk.audio"):
        return module.split(".")[1]
    if module in (
        "mmsk.text",
        "mmsk.text_pretrained",
        "mmsk.compose",
        "sklearn.feature_extraction.text",
    ):
        return "text"
    if isinstance(transformer, OneHotEncoder | OrdinalEncoder):
        return "categorical"
    return "numeric"


def _column_names(cols: Any, names: Any) -> list[str]:
    """Return the names of a ColumnTransformer's column selection (names, positions, mask)."""
    if isinstance(cols, str):
        return [cols]
    if callable(cols):
        return []
    try:
        if isinstance(cols, slice):
            return [str(c) for c in np.asarray(names, dtype=object)[cols]]
        values = list(cols)
        if all(isinstance(v, str) for v in values):
            return values
        return [str(c) for c in np.asarray(names, dtype=object)[np.asarray(values)]]
    except (TypeError, IndexError, ValueError):  # no names to look positions up in
        return []


def data_fingerprint(data: Any) -> str:
    """Return a sha256 fingerprint of a data set: column names, dtypes and values.

    Parameters
    ----------
    data : DataFrame, Series, array-like, sparse matrix or dict of these
        The data, e.g. the ``X`` or ``y`` given to ``fit``.

    Returns
    -------
    str
        64 hexadecimal digits; equal data give equal fingerprints, whatever
        the machine, and any changed value, name or dtype changes it.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk.io import data_fingerprint
    >>> df = pd.DataFrame({"text": ["a", None], "x": [1.0, 2.0]})
    >>> data_fingerprint(df) == data_fingerprint(df.copy())
    True
    >>> data_fingerprint(df) == data_fingerprint(df.assign(x=[1.0, 2.5]))
    False
    """
    digest = hashlib.sha256()
    _feed(digest, data)
    return digest.hexdigest()


def _feed(digest: Any, data: Any) -> None:
    from scipy import sparse

    def text(value: str) -> None:
        raw = value.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "little") + raw)

    if isinstance(data, Mapping):
        text(f"dict {len(data)}")
        for key, value in data.items():
            text(str(key))
            _feed(digest, value)
    elif hasattr(data, "columns") and hasattr(data, "dtypes"):  # a DataFrame
        text(f"frame {data.shape}")
        for i, name in enumerate(data.columns):
            text(str(name))
            _feed(digest, data.iloc[:, i])
    elif hasattr(data, "dtype") and hasattr(data, "to_numpy"):  # a Series
        text(f"series {data.dtype}")
        _feed(digest, data.to_numpy())
    elif sparse.issparse(data):
        csr = sparse.csr_matrix(data)
        text(f"sparse {csr.shape}")
        for part in (csr.data, csr.indices, csr.indptr):
            _feed(digest, part)
    else:
        array = np.asarray(data)
        text(f"array {array.dtype.str} {array.shape}")
        if array.dtype.kind in "biufcmM":
            digest.update(np.ascontiguousarray(array).tobytes())
        else:
            for value in array.ravel():
                text(("s" + value) if isinstance(value, str) else ("r" + repr(value)))
