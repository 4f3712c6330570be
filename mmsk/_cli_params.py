"""The ``--params`` file of ``mmsk fit``, and the "did you mean" of its errors.

:func:`read_params` reads a JSON or TOML file of
:func:`~mmsk.compose.make_multimodal_pipeline` arguments and pipeline
``set_params`` keys; :func:`roles_with_params` and :func:`given_task` take
the roles and the task from it where no flag gives them. :func:`did_you_mean`
suggests the close matches of unknown names (columns, keys, roles). Used by
:mod:`mmsk.cli` and :mod:`mmsk._cli_fit`; see ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["did_you_mean", "given_task", "read_params", "roles_with_params"]

ROLES = ("image", "audio", "text", "numeric", "categorical")
#: Keys of a params file that go to ``make_multimodal_pipeline`` itself, besides the roles.
PIPELINE_ARGS = ("task", "fusion", "memory", "n_jobs", "random_state")


# -- messages --------------------------------------------------------------------------
def did_you_mean(names: Iterable[str], choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the close matches of ``names``, or ``""``.

    Parameters
    ----------
    names : iterable of str
        The unknown names.
    choices : iterable of str
        The valid names; a match ignores case first, then uses :mod:`difflib`.

    Returns
    -------
    str
        The hint, to append to an error message.

    Examples
    --------
    >>> from mmsk._cli_params import did_you_mean
    >>> did_you_mean(["labl"], ["image", "label"])
    "; did you mean 'label'?"
    >>> did_you_mean(["Image", "xyz"], ["image", "label"])
    "; did you mean 'image' for 'Image'?"
    >>> did_you_mean(["labl", "imag"], ["image", "label"])
    "; did you mean 'label' for 'labl', 'image' for 'imag'?"
    >>> did_you_mean(["xyz"], ["image", "label"])
    ''
    """
    names, choices = [str(n) for n in names], [str(c) for c in choices]
    lower = {c.lower(): c for c in reversed(choices)}
    found = {}
    for name in names:
        match = lower.get(name.lower())
        if match is None:
            close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
            match = close[0] if close else None
        if match is not None:
            found[name] = match
    if not found:
        return ""
    if len(names) == 1:
        return f"; did you mean {found[names[0]]!r}?"
    return "; did you mean " + ", ".join(f"{m!r} for {n!r}" for n, m in found.items()) + "?"


def _unknown(what: str, names: Sequence[str], choices: Sequence[str]) -> ValueError:
    quoted = ", ".join(map(repr, names))
    return ValueError(
        f"unknown {what}{'s' * (len(names) > 1)} {quoted}{did_you_mean(names, choices)} "
        f"(valid: {', '.join(choices)})"
    )


# -- the params file ---------------------------------------------------------------------
def read_params(path: str) -> dict[str, Any]:
    """Read a ``--params`` file: a JSON object or a TOML table of keys and values.

    Parameters
    ----------
    path : str
        A ``.json`` or ``.toml`` file.

    Returns
    -------
    dict
        Its keys and values (lists where the file has arrays).

    Raises
    ------
    ValueError
        If the file is missing, not valid JSON or TOML, not a table of
        keys, or holds a value that is not JSON data (a TOML date).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from mmsk._cli_params import read_params
    >>> path = Path(tempfile.mkdtemp()) / "params.json"
    >>> _ = path.write_text(json.dumps({"fusion__hidden_units": 32}))
    >>> read_params(str(path))
    {'fusion__hidden_units': 32}
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such params file: {path}")
    kind = file.suffix.lower()
    if kind not in (".json", ".toml"):
        raise ValueError(f"params file {path} must end in .json or .toml")
    text = file.read_text(encoding="utf-8")
    try:
        if kind == ".json":
            params = json.loads(text)
        else:
            params = _toml().loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise ValueError(f"cannot read params file {path} as {kind[1:].upper()}: {exc}") from exc
    if not isinstance(params, dict):
        raise ValueError(
            f"params file {path} must hold an object of keys and values, "
            f"not a {type(params).__name__}"
        )
    for key, value in params.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"params file {path}: {key!r} holds {value!r}, which is not a number, string, "
                "boolean, list or table"
            ) from exc
    return params


def _toml() -> Any:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as exc:
            raise ImportError(
                "reading a TOML params file needs Python 3.11+ or the tomli package "
                "(pip install tomli); or write it as JSON"
            ) from exc
    return tomllib


def roles_with_params(roles: dict[str, list[str]], params: dict[str, Any]) -> dict[str, list[str]]:
    """Return the roles of the flags, and of the params file for the roles no flag gives.

    Parameters
    ----------
    roles : dict of str to list of str
        The columns of each role flag (an empty list when not given).
    params : dict
        The params file's keys.

    Returns
    -------
    dict of str to list of str
        One list per role.

    Examples
    --------
    >>> from mmsk._cli_params import roles_with_params
    >>> roles = {"image": ["img"], "audio": [], "text": [], "numeric": [], "categorical": []}
    >>> roles_with_params(roles, {"image": "photo", "numeric": ["age"]})["numeric"]
    ['age']
    """
    from .fusion import FusionClassifier, FusionRegressor

    known = {*ROLES, *PIPELINE_ARGS}
    for estimator in (FusionClassifier, FusionRegressor):
        known.update(estimator().get_params(deep=False))
    for key in params:  # a misspelt role is told as such, before the columns are checked
        if "__" not in key and key not in known and did_you_mean([key], ROLES):
            raise _unknown("role", [key], ROLES)
    merged = dict(roles)
    for role in ROLES:
        if role in params and not roles.get(role):
            value = params[role]
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise ValueError(
                    f"params file: {role!r} must be a column name or a list of them, "
                    f"got {params[role]!r}"
                )
            merged[role] = list(value)
    return merged


def given_task(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """Return ``--task`` if given, else the params file's ``task``, else ``"auto"``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``fit`` arguments.
    params : dict
        The params file's keys.

    Returns
    -------
    str
        ``"auto"``, ``"classification"`` or ``"regression"``.

    Examples
    --------
    >>> import argparse
    >>> from mmsk._cli_params import given_task
    >>> given_task(argparse.Namespace(task="auto"), {"task": "regression"})
    'regression'
    """
    if "task" in _given(args) or "task" not in params:
        return args.task
    task = params["task"]
    choices = ("auto", "classification", "regression")
    if task not in choices:
        raise ValueError(
            f"params file: task must be one of {', '.join(choices)}, got {task!r}"
            + did_you_mean([str(task)], choices)
        )
    return task


def _given(args: argparse.Namespace) -> set[str]:
    return set(getattr(args, "given", None) or ())
