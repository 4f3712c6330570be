"""Helpers of the ``mmsk`` command line: reading the CSV file, its columns and paths, model files.

Kept apart from :mod:`mmsk.cli` (the parser and the commands) by responsibility.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._tables import missing_columns_error

#: Integer-valued numeric targets with at most this many distinct values are classes.
MAX_AUTO_CLASSES = 20
_ROLES = ("image", "audio", "text", "numeric", "categorical")
_PATH_ROLES = ("image", "audio")


# -- data ----------------------------------------------------------------------
def _read_csv(path: str) -> Any:
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        return pd.read_csv(file)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
        raise ValueError(f"cannot read {path} as CSV: {exc}") from exc


def _check_columns(frame: Any, columns: Sequence[str], path: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise missing_columns_error(path, missing, frame.columns)


def _resolve_paths(frame: Any, columns: Sequence[str], base: Path) -> Any:
    """Make relative paths in ``columns`` relative to ``base`` (the CSV file's folder)."""
    frame = frame.copy()
    for col in columns:
        frame[col] = [
            str(base / Path(v).expanduser()) if isinstance(v, str) and v else v for v in frame[col]
        ]
    return frame


def _file_readers(model: Any) -> list[Any]:
    """Every estimator inside ``model`` (fitted or not) that reads item files (``allowed_dirs``)."""
    found: dict[int, Any] = {}

    def walk(est: Any) -> None:
        for attribute in ("transformers", "transformers_"):
            for entry in getattr(est, attribute, None) or ():
                walk(entry[1])
        for _, step in getattr(est, "steps", None) or ():
            walk(step)
        get_params = getattr(est, "get_params", None)
        if callable(get_params) and not isinstance(est, type):
            if "allowed_dirs" in get_params(deep=False):
                found[id(est)] = est

    walk(model)
    return list(found.values())


@contextlib.contextmanager
def _confined(model: Any, dirs: Sequence[str] | None) -> Iterator[None]:
    """Confine the item paths that ``model`` reads to ``dirs`` inside the block (``--allow-dir``).

    The option is the run's, not the model's: the previous values come back
    afterwards (None for the extractors fitted inside the block), so a saved
    model carries no directories of this machine.
    """
    if not dirs:
        yield
        return
    from ._files import allowed_roots

    allowed_roots(dirs, name="--allow-dir")  # each must be a directory: say so before any work
    before = {id(est): est.get_params(deep=False)["allowed_dirs"] for est in _file_readers(model)}
    try:
        for est in _file_readers(model):
            est.set_params(allowed_dirs=list(dirs))
        yield
    finally:
        for est in _file_readers(model):
            est.set_params(allowed_dirs=before.get(id(est)))


def _target(frame: Any, name: str, path: str) -> Any:
    y = frame[name]
    missing = y.isna().to_numpy().nonzero()[0]
    if len(missing):
        rows = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"target column {name!r} of {path} has {len(missing)} missing value(s) "
            f"(data rows {rows}); fill or remove them"
        )
    return y


def _infer_task(y: Any) -> str:
    """Regression for non-integer numbers or many distinct integers, else classification."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "classification"
    values = y.to_numpy(dtype=float)
    if np.all(values == np.round(values)) and y.nunique() <= MAX_AUTO_CLASSES:
        return "classification"
    return "regression"


def _roles(args: argparse.Namespace) -> dict[str, list[str]]:
    return {role: list(getattr(args, role) or []) for role in _ROLES}


# -- model files ---------------------------------------------------------------
def _load_model(path: str, trust_pickle: bool, command: str) -> dict[str, Any]:
    """Load a model file; return its pipeline and what its card says about the data."""
    import warnings

    from .io import ModelFileError, load_with_card

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline, card = load_with_card(path, trusted=trust_pickle)
    for warning in caught:  # one line each; scikit-learn's own version warning repeats ours
        if type(warning.message).__name__ != "InconsistentVersionWarning":
            message = " ".join(str(warning.message).split())
            print(f"mmsk {command}: warning: {message}", file=sys.stderr)
    if card is None:
        raise ModelFileError(f"{path} holds a {type(pipeline).__name__}, not an mmsk model")
    inputs = card.get("inputs") or {}
    roles = inputs.get("roles") or {}
    columns = {role: list(roles.get(role) or []) for role in (*_ROLES, "other")}
    if not roles:
        columns["other"] = list(inputs.get("columns") or [])
    if not any(columns.values()):
        raise ModelFileError(f"{path}: its model card names no input columns")
    if card.get("task") not in ("classification", "regression"):
        raise ModelFileError(
            f"{path} holds a {card.get('estimator')}, neither a classifier nor a regressor"
        )
    return {
        "pipeline": pipeline,
        "task": card["task"],
        "target": card.get("target"),
        "columns": columns,
    }


def _features(model: dict[str, Any], path: str) -> Any:
    """Read ``path`` and return the frame, its feature columns checked, paths resolved."""
    frame = _read_csv(path)
    columns = model["columns"]
    _check_columns(frame, [c for cols in columns.values() for c in cols], path)
    paths = [c for role in _PATH_ROLES for c in columns[role]]
    return _resolve_paths(frame, paths, Path(path).resolve().parent)
