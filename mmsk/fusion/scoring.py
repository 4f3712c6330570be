"""Retrieval scorers: recall@k and mean reciprocal rank, for ``GridSearchCV(scoring=...)``.

Called as ``scorer(estimator, X, y=None)`` on a fitted
:class:`~mmsk.fusion.retrieval.CrossModalRetriever` (or a Pipeline that
ends with one): the queries are the ``query_`` blocks of the rows of ``X``,
the gallery their ``target_`` blocks, and relevance is the same label (``y``
given) or the same row.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d

from mmsk.fusion.contrastive import ranking_metrics

__all__ = ["mean_reciprocal_rank", "recall_at_k"]


def _ranks(estimator: Any, X: Any, y: Any) -> np.ndarray:
    """Ranks of the first relevant target for every query row of ``X``."""
    if hasattr(estimator, "steps"):  # a Pipeline: features first, the retriever last
        X = estimator[:-1].transform(X)
        estimator = estimator[-1]
    if not isinstance(getattr(type(estimator), "_retrieval_space", None), bool):
        raise TypeError(
            "retrieval scorers need a CrossModalRetriever (or a Pipeline that ends with "
            f"one), got {type(estimator).__name__}"
        )
    check_is_fitted(estimator)
    queries = estimator.transform(X, modality=estimator.query_)
    gallery = estimator.transform(X, modality=estimator.target_)
    labels = np.arange(len(queries)) if y is None else column_or_1d(y)
    check_consistent_length(queries, labels)
    return ranking_metrics(queries, gallery, labels, labels)


class _RecallAtK:
    """Picklable scorer ``(estimator, X, y=None) -> recall@k``."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, estimator: Any, X: Any, y: Any = None) -> float:
        ranks = _ranks(estimator, X, y)
        if self.k > len(ranks):
            raise ValueError(f"recall@{self.k} needs a gallery of at least {self.k} rows")
        return float(np.mean(ranks <= self.k))

    def __repr__(self) -> str:
        return f"recall_at_k(k={self.k})"


def recall_at_k(k: int = 1) -> _RecallAtK:
    """Make a scorer of recall@k for a fitted :class:`CrossModalRetriever`.

    The scorer, called as ``scorer(estimator, X, y=None)`` (what
    ``GridSearchCV(scoring=...)`` and ``cross_val_score`` do), maps the
    ``query_`` blocks of the rows of ``X`` and their ``target_`` blocks
    into the space, ranks the whole target set for every query and returns
    the share of queries with a relevant item among their ``k`` best
    matches: one with the same label when ``y`` is given, else the query's
    own partner. The estimator may be a Pipeline ending with the retriever.

    Parameters
    ----------
    k : int, default=1
        Matches looked at.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float`` in [0, 1], greater is better.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.model_selection import GridSearchCV
    >>> from mmsk import CrossModalRetriever
    >>> from mmsk.fusion.scoring import recall_at_k
    >>> columns = ["a__0", "a__1", "a__2", "b__0", "b__1"]
    >>> X = pd.DataFrame(np.random.RandomState(0).normal(size=(60, 5)), columns=columns)
    >>> search = GridSearchCV(CrossModalRetriever(hidden_units=8, max_epochs=2),
    ...                       {"embed_dim": [2, 4]}, scoring=recall_at_k(5), cv=2)
    >>> sorted(search.fit(X).best_params_)
    ['embed_dim']
    """
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    return _RecallAtK(int(k))


def mean_reciprocal_rank(estimator: Any, X: Any, y: Any = None) -> float:
    """Score a fitted :class:`CrossModalRetriever` by mean reciprocal rank.

    The mean over the query rows of ``X`` of ``1 / rank`` of the first
    relevant target (same label when ``y`` is given, else the row's own
    partner) when the whole target set is ranked; see :func:`recall_at_k`.

    Parameters
    ----------
    estimator : CrossModalRetriever or Pipeline
        Fitted; a Pipeline must end with the retriever.
    X : dict, DataFrame, array-like or sparse matrix
        Paired rows.
    y : array-like of shape (n_samples,) or None, default=None
        Labels that define relevance.

    Returns
    -------
    score : float
        In (0, 1], greater is better.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import CrossModalRetriever
    >>> from mmsk.fusion.scoring import mean_reciprocal_rank
    >>> X = {"a": np.random.RandomState(0).normal(size=(40, 3)), "b": np.ones((40, 2))}
    >>> ret = CrossModalRetriever(hidden_units=8, max_epochs=2).fit(X)
    >>> 0 < mean_reciprocal_rank(ret, X) <= 1
    True
    """
    return float(np.mean(1.0 / _ranks(estimator, X, y)))
