"""What the inspection functions share: finding modalities, scoring, table edits.

The functions only call an estimator's public methods (``score`` or a
scorer's ``predict``/``predict_proba``), on inputs they change: the
modalities are read from the fitted :class:`~sklearn.compose.ColumnTransformer`
that opens a pipeline (its branches' names and input columns), from the
``name__`` prefixes of the input's columns (the fusion estimators'
convention), or from an explicit ``modalities=`` mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.metrics import check_scoring

__all__ = ["Modality", "check_X", "find_modalities", "make_scorer_dict", "permuted", "select"]


@dataclass(frozen=True)
class Modality:
    """One modality of the input: its name, its input columns, its kind.

    Parameters
    ----------
    name : str
        The modality's name (the ColumnTransformer branch, the ``name__``
        prefix, or the key of ``modalities=``).
    columns : tuple
        Its columns in the input: labels for a DataFrame, positions for an array.
    kind : {"image", "audio", "text", "tabular", "features"}
        What the columns hold: raw items of a modality (read from the
        branch's extractor), numbers for a tabular branch, or extracted
        feature columns (``block__*``) fed to an estimator directly.

    Examples
    --------
    >>> from mmsk.inspection._common import Modality
    >>> Modality("audio", ("clip",), "audio").columns
    ('clip',)
    """

    name: str
    columns: tuple
    kind: str


def check_X(X: Any) -> Any:
    """Accept a DataFrame or a 2-D array (a list of rows becomes an array).

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_samples, n_columns)
        The input.

    Returns
    -------
    DataFrame or ndarray
        ``X`` itself, or as an array.

    Raises
    ------
    ValueError
        If ``X`` is not two-dimensional.

    Examples
    --------
    >>> from mmsk.inspection._common import check_X
    >>> check_X([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 2:
        return X
    arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if arr.ndim != 2:
        raise ValueError(
            "X must be a DataFrame or a 2-D array (rows x columns), "
            f"got {type(X).__name__} with {arr.ndim} dimension(s)"
        )
    return arr


def _unwrap(estimator: Any) -> Any:
    """Return a search's ``best_estimator_``, else the estimator itself."""
    best = getattr(estimator, "best_estimator_", None)
    return best if best is not None else estimator


def _column_transformer(estimator: Any) -> Any:
    """Return the fitted ColumnTransformer that first sees X (a Pipeline's first step)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    est = _unwrap(estimator)
    while isinstance(est, Pipeline):
        steps = [step for _, step in est.steps if step not in (None, "passthrough")]
        if not steps:
            return None
        est = _unwrap(steps[0])
    if isinstance(est, ColumnTransformer) and hasattr(est, "transformers_"):
        return est
    return None


def _kind(transformer: Any) -> str:
    """Tell the modality kind of a ColumnTransformer branch from its extractor's class."""
    from sklearn.pipeline import Pipeline

    if isinstance(transformer, Pipeline):
        kinds = [_kind(step) for _, step in transformer.steps if step not in (None, "passthrough")]
        return next((k for k in kinds if k != "tabular"), "tabular")
    if isinstance(transformer, str):
        return "tabular"
    module, name = type(transformer).__module__, type(transformer).__name__
    if module.startswith("mmsk.image") or name.startswith("Image"):
        return "image"
    if module.startswith("mmsk.audio") or name.startswith("Audio"):
        return "audio"
    text_names = ("TfidfSVD", "TokenSequences", "SentenceEmbedder")
    if module.startswith(("mmsk.text", "sklearn.feature_extraction.text")) or name in text_names:
        return "text"
    return "tabular"


def _labels(spec: Any, X: Any, ct: Any) -> list:
    """Resolve a ColumnTransformer column spec to labels of X (positions for arrays)."""
    names = getattr(ct, "feature_names_in_", None)
    if callable(spec):
        spec = spec(X)
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, slice):
        spec = list(range(ct.n_features_in_))[spec]
    values = list(np.atleast_1d(np.asarray(spec, dtype=object)))
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        values = [i for i, keep in enumerate(values) if keep]
    if values and all(isinstance(v, Integral) for v in values):
        return (
            [str(names[int(v)]) for v in values] if names is not None else [int(v) for v in values]
        )
    return [v if not isinstance(v, np.str_) else str(v) for v in values]


def _check_columns(name: str, columns: Sequence[Any], X: Any) -> tuple:
    if hasattr(X, "columns"):
        unknown = [c for c in columns if c not in X.columns]
        if unknown:
            raise ValueError(
                f"modality {name!r}: column {unknown[0]!r} is not in X; "
                f"X's columns are {list(X.columns)}"
            )
    else:
        bad = [c for c in columns if not isinstance(c, Integral) or not 0 <= c < X.shape[1]]
        if bad:
            raise ValueError(
                f"modality {name!r}: {bad[0]!r} is not a column position of X, which has "
                f"{X.shape[1]} columns (an array's columns are given by position)"
            )
    if not columns:
        raise ValueError(f"modality {name!r} has no column")
    return tuple(columns)


def find_modalities(estimator: Any, X: Any, modalities: Any = None) -> list[Modality]:
    """Find the modalities of ``X`` for ``estimator``, with their input columns.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator: a Pipeline (or a search) whose first step is a
        :class:`~sklearn.compose.ColumnTransformer`, or any estimator fed
        ``name__`` prefixed feature columns.
    X : DataFrame or 2-D ndarray
        The input the estimator is scored on.
    modalities : dict of str to (label or list of labels) or None, default=None
        Explicit modalities: name -> the columns of ``X`` (labels for a
        DataFrame, positions for an array).

    Returns
    -------
    list of Modality
        In the order of the branches, the prefixes or the mapping.

    Raises
    ------
    ValueError
        If no modality can be found, or ``modalities`` names columns X lacks.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from mmsk.inspection._common import find_modalities
    >>> X = pd.DataFrame({"image__a": [0.0, 1], "audio__b": [1.0, 0]})
    >>> [(m.name, m.columns) for m in find_modalities(LogisticRegression(), X)]
    [('image', ('image__a',)), ('audio', ('audio__b',))]
    """
    ct = _column_transformer(estimator)
    branches: list[Modality] = []
    if ct is not None:
        for name, transformer, spec in ct.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            columns = _labels(spec, X, ct)
            if columns:
                branches.append(Modality(str(name), tuple(columns), _kind(transformer)))
    if modalities is not None:
        if not isinstance(modalities, Mapping) or not modalities:
            raise ValueError(
                "modalities must be None or a non-empty dict of name -> columns of X, "
                f"got {modalities!r}"
            )
        out = []
        for name, cols in modalities.items():
            cols = [cols] if isinstance(cols, (str, Integral)) else list(cols)
            cols = _check_columns(str(name), cols, X)
            kinds = {b.kind for b in branches if set(b.columns) & set(cols)}
            out.append(Modality(str(name), cols, kinds.pop() if len(kinds) == 1 else "features"))
        return out
    if branches:
        return branches
    if hasattr(X, "columns"):
        from ..fusion.blocks import OTHER, prefix_blocks

        blocks = prefix_blocks([str(c) for c in X.columns])
        if blocks and set(blocks) != {OTHER}:
            return [
                Modality(name, tuple(X.columns[i] for i in cols), "features")
                for name, cols in blocks.items()
            ]
    raise ValueError(
        f"cannot find the modalities of X for {type(_unwrap(estimator)).__name__}: it is not "
        "a Pipeline that starts with a fitted ColumnTransformer, and X has no 'name__' "
        "prefixed columns; pass modalities={'name': [columns], ...}"
    )


def select(found: list[Modality], names: Any, what: str = "modality") -> list[Modality]:
    """Keep the modalities called ``names`` (all when None), checking they exist.

    Parameters
    ----------
    found : list of Modality
        The modalities of the input.
    names : str, sequence of str or None
        The names wanted.
    what : str, default="modality"
        Word for the error message.

    Returns
    -------
    list of Modality
        The modalities wanted, in the order asked.

    Raises
    ------
    ValueError
        For a name that is not a modality.

    Examples
    --------
    >>> from mmsk.inspection._common import Modality, select
    >>> found = [Modality("a", ("x",), "tabular"), Modality("b", ("y",), "tabular")]
    >>> [m.name for m in select(found, "b")]
    ['b']
    """
    if names is None:
        return list(found)
    names = [names] if isinstance(names, str) else list(names)
    by_name = {m.name: m for m in found}
    for name in names:
        if name not in by_name:
            raise ValueError(
                f"unknown {what} {name!r}; the modalities are {list(by_name)} "
                "(pass modalities= to name them yourself)"
            )
    return [by_name[name] for name in names]


def permuted(X: Any, columns: Sequence[Any], order: np.ndarray) -> Any:
    """Return a copy of ``X`` whose ``columns`` are shuffled together by ``order``.

    Parameters
    ----------
    X : DataFrame or 2-D ndarray
        The table; not modified.
    columns : sequence
        Labels or positions of the columns to move together.
    order : ndarray of int
        A permutation of the rows.

    Returns
    -------
    DataFrame or ndarray
        The copy: row ``i`` of these columns holds row ``order[i]`` of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.inspection._common import permuted
    >>> permuted(np.arange(6).reshape(3, 2), [0], np.array([2, 0, 1]))[:, 0].tolist()
    [4, 0, 2]
    """
    out = X.copy()
    if hasattr(out, "iloc"):
        for col in columns:
            out[col] = X[col].iloc[order].set_axis(X.index)
    else:
        cols = list(columns)
        out[:, cols] = X[np.ix_(order, cols)]
    return out


def make_scorer_dict(
    estimator: Any, scoring: Any
) -> tuple[Callable[[Any, Any, Any], dict[str, float]], list[str]]:
    """Make a scorer that returns a dict metric -> score, from ``scoring`` as sklearn takes it.

    Parameters
    ----------
    estimator : estimator
        The fitted estimator.
    scoring : None, str, callable, list, tuple or dict
        As for :func:`sklearn.metrics.check_scoring` (None: ``estimator.score``).

    Returns
    -------
    score : callable
        ``score(estimator, X, y)`` -> ``{metric: value}``.
    names : list of str
        The metric names, in order.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> from mmsk.inspection._common import make_scorer_dict
    >>> clf = DummyClassifier().fit([[0], [1]], [0, 1])
    >>> score, names = make_scorer_dict(clf, ["accuracy", "f1"])
    >>> names, score(clf, [[0], [1]], [0, 1])["accuracy"]
    (['accuracy', 'f1'], 0.5)
    """
    scorer = check_scoring(estimator, scoring=scoring)
    if isinstance(scoring, (list, tuple, set, dict)):
        names = list(scoring)

        def score(est: Any, X: Any, y: Any) -> dict[str, float]:
            values = scorer(est, X, y)
            return {name: float(values[name]) for name in names}

        return score, names
    if scoring is None:
        name = "score"
    elif isinstance(scoring, str):
        name = scoring
    else:
        name = getattr(scoring, "__name__", None) or getattr(
            getattr(scoring, "_score_func", None), "__name__", "score"
        )

    def score_one(est: Any, X: Any, y: Any) -> dict[str, float]:
        return {name: float(scorer(est, X, y))}

    return score_one, [name]
