"""Modality importance: grouped permutation and ablation of whole modalities."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.utils import check_random_state

from ._common import Modality, check_X, find_modalities, make_scorer_dict, permuted
from ._missing import set_missing

__all__ = ["modality_importance"]

METHODS = ("permutation", "ablation")
COLUMNS = [
    "modality",
    "method",
    "metric",
    "importance_mean",
    "importance_std",
    "baseline_score",
    "rank",
    "n_repeats",
    "scores",
    "importances",
]


def _check_methods(method: Any) -> list[str]:
    methods = [method] if isinstance(method, str) else list(method)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(
            f"method must be 'permutation', 'ablation' or a sequence of them, got {method!r}"
        )
    return list(dict.fromkeys(methods))


def _permutation_scores(
    estimator: Any, X: Any, y: Any, modality: Modality, score: Any, n_repeats: int, seed: int
) -> list[dict[str, float]]:
    rng = np.random.RandomState(seed)
    return [
        score(estimator, permuted(X, modality.columns, rng.permutation(len(X))), y)
        for _ in range(n_repeats)
    ]


def _ablation_scores(
    estimator: Any, X: Any, y: Any, modality: Modality, score: Any
) -> list[dict[str, float]]:
    try:
        return [score(estimator, set_missing(X, modality.columns), y)]
    except ValueError as exc:
        name = type(estimator).__name__
        raise ValueError(
            f"ablation sets modality {modality.name!r} missing (None items, NaN numbers) in "
            f"every row, and {name} failed on that input: {exc}. Use method='permutation', "
            "or a model with a missing-modality path (mmsk.FusionClassifier or "
            "FusionRegressor, or an imputer in the pipeline)."
        ) from exc


def modality_importance(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    modalities: dict[str, Any] | None = None,
    scoring: Any = None,
    n_repeats: int = 5,
    method: str | Sequence[str] = ("permutation", "ablation"),
    random_state: Any = None,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """How much a fitted model's score relies on each modality.

    Two measures, each the drop of the score from its value on the intact
    input (the *baseline*), so that larger means more important and about
    0 means the model does not use the modality:

    - ``"permutation"``: the modality's input columns are shuffled across
      the rows *together* (one permutation for all of them), ``n_repeats``
      times: the grouped version of
      :func:`sklearn.inspection.permutation_importance`. The model sees a
      modality of the right distribution, unrelated to the target and to
      the other modalities.
    - ``"ablation"``: the modality is removed from every row (items become
      ``None``, numbers ``NaN``), so that mmsk's extractors emit all-NaN
      rows and the fusion net takes its missing-modality path. The drop is
      what the model loses without the modality. This needs a model that
      accepts missing values (the fusion estimators, or an imputer in the
      pipeline); it is deterministic, so it is computed once.

    The modalities are found from the fitted
    :class:`~sklearn.compose.ColumnTransformer` that opens a pipeline (a
    branch is a modality: its name, its input columns, e.g. the ``image``
    column of paths), else from the ``name__`` prefixes of X's columns (the
    feature blocks of a bare fusion estimator), else from ``modalities=``.
    Only the estimator's scorer is called: any estimator works.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator (a Pipeline, a search, a fusion estimator...).
    X : DataFrame or 2-D array
        The data to score on, as ``estimator`` takes it (held-out rows).
    y : array-like
        The targets.
    modalities : dict of str to (label or list of labels) or None, default=None
        Explicit modalities: name -> columns of X (labels for a DataFrame,
        positions for an array). Overrides the discovery.
    scoring : None, str, callable, list, tuple or dict, default=None
        As in :func:`sklearn.metrics.check_scoring`; None uses
        ``estimator.score``. Several metrics give one row per metric.
    n_repeats : int, default=5
        Permutations per modality.
    method : {"permutation", "ablation"} or sequence of them, default=("permutation", "ablation")
        The measures to compute.
    random_state : int, RandomState instance or None, default=None
        Seed of the permutations, drawn per modality as scikit-learn does.
    n_jobs : int or None, default=None
        Modalities scored in parallel by joblib (``None``: one at a time).

    Returns
    -------
    pandas.DataFrame
        One row per modality, method and metric, the most important first
        within each method, with columns ``modality``, ``method``,
        ``metric``, ``importance_mean``, ``importance_std``,
        ``baseline_score``, ``rank`` (1 = most important, per method and
        metric), ``n_repeats``, ``scores`` (the score of each repeat, an
        array) and ``importances`` (``baseline_score - scores``).

    Raises
    ------
    ValueError
        For a bad ``method`` or ``n_repeats``, when no modality is found,
        or when ablation meets a model that cannot take missing values.

    See Also
    --------
    sklearn.inspection.permutation_importance : The same per feature column.
    robustness_report : Scores under graded corruptions of a modality.
    mmsk.plotting.plot_modality_importance : Bar chart of the result.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from mmsk.inspection import modality_importance
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(200, 4)),
    ...                  columns=["image__0", "image__1", "audio__0", "audio__1"])
    >>> y = (X["image__0"] + X["image__1"] > 0).astype(int)
    >>> clf = LogisticRegression().fit(X, y)
    >>> result = modality_importance(clf, X, y, method="permutation", random_state=0)
    >>> result[["modality", "rank"]].to_dict("list")
    {'modality': ['image', 'audio'], 'rank': [1, 2]}
    >>> image, audio = result["importance_mean"]
    >>> bool(image > 0.3), bool(abs(audio) < 0.05)
    (True, True)
    """
    methods = _check_methods(method)
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, Integral) or n_repeats < 1:
        raise ValueError(f"n_repeats must be an int >= 1, got {n_repeats!r}")
    X = check_X(X)
    found = find_modalities(estimator, X, modalities)
    score, metrics = make_scorer_dict(estimator, scoring)
    baseline = score(estimator, X, y)
    rng = check_random_state(random_state)
    seeds = rng.randint(np.iinfo(np.int32).max + 1, size=len(found))

    jobs = []
    for name in methods:
        for modality, seed in zip(found, seeds, strict=True):
            if name == "permutation":
                jobs.append(
                    delayed(_permutation_scores)(
                        estimator, X, y, modality, score, n_repeats, int(seed)
                    )
                )
            else:
                jobs.append(delayed(_ablation_scores)(estimator, X, y, modality, score))
    results = iter(Parallel(n_jobs=n_jobs)(jobs))

    rows = []
    for name in methods:
        for modality in found:
            per_repeat = next(results)
            for metric in metrics:
                scores = np.array([r[metric] for r in per_repeat])
                importances = baseline[metric] - scores
                rows.append(
                    {
                        "modality": modality.name,
                        "method": name,
                        "metric": metric,
                        "importance_mean": float(importances.mean()),
                        "importance_std": float(importances.std()),
                        "baseline_score": baseline[metric],
                        "n_repeats": len(scores),
                        "scores": scores,
                        "importances": importances,
                    }
                )
    table = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(methods)}
    table = table.sort_values(
        ["method", "metric", "importance_mean"],
        key=lambda col: col.map(order) if col.name == "method" else col,
        ascending=[True, True, False],
        kind="stable",
    )
    table["rank"] = (
        table.groupby(["method", "metric"], sort=False).cumcount().astype(int).to_numpy() + 1
    )
    return table[COLUMNS].reset_index(drop=True)
