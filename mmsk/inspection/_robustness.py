"""Robustness reports: scores under graded corruptions, MultiBench's robustness measures.

MultiBench (Liang et al., 2021, "MultiBench: Multiscale Benchmarks for
Multimodal Representation Learning", NeurIPS Datasets and Benchmarks,
arXiv:2107.07502; code: ``pliang279/MultiBench``,
``eval_scripts/robustness.py``) scores a model at imperfection levels
``k = 0..K`` (``k = 0`` clean), evenly spaced on [0, 1], and defines

- relative robustness: the area under the performance-imperfection curve,
  by the trapezoidal rule, ``sum_k (f_k + f_{k+1}) / 2 * 1/K``;
- effective robustness: the performance above a baseline's curve moved to
  start at the model's clean score, ``sum_k f_k - (b_k + f_0 - b_0)``
  (their baseline is late fusion).

MultiBench then min-max normalises both across the methods it compares;
these functions return the raw values, on the scale of the score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.utils import Bunch, check_random_state

from ._common import Modality, check_X, find_modalities, make_scorer_dict, select
from ._corruptions import DEFAULTS, Corruption, get_corruption

__all__ = [
    "effective_robustness",
    "make_robustness_scorer",
    "relative_robustness",
    "robustness_report",
]

SUMMARIES = ("relative_robustness", "mean", "worst")


def relative_robustness(scores: Sequence[float]) -> float:
    """Compute MultiBench's relative robustness: the normalised area under the score curve.

    ``scores`` are the scores at severity ``0, 1/K, ..., 1`` (the clean
    score first, then one per level, mild to severe); the result is the
    trapezoidal area under that curve over [0, 1]:
    ``sum_{k<K} (f_k + f_{k+1}) / (2 K)``. A model whose score does not
    move gets its clean score; one that falls to 0 at once gets about
    ``f_0 / (2 K)``.

    Parameters
    ----------
    scores : sequence of float
        Scores from clean to most severe (at least one).

    Returns
    -------
    float
        The area, on the score's scale.

    Examples
    --------
    >>> from mmsk.inspection import relative_robustness
    >>> relative_robustness([0.9, 0.9, 0.9])
    0.9
    >>> round(relative_robustness([1.0, 0.5, 0.0]), 3)
    0.5
    """
    f = np.asarray(scores, dtype=float)
    if f.ndim != 1 or f.size == 0:
        raise ValueError("scores must be a non-empty 1-D sequence")
    if f.size == 1:
        return float(f[0])
    return float(np.sum((f[:-1] + f[1:]) / 2.0) / (f.size - 1))


def effective_robustness(scores: Sequence[float], baseline: Sequence[float]) -> float:
    """Compute MultiBench's effective robustness: the score kept above a baseline's curve.

    The baseline's curve ``b`` is moved to start at the model's clean score
    ``f_0``, and the model's curve ``f`` is compared with it level by level:
    ``sum_k f_k - (b_k + f_0 - b_0)``. Positive: the model loses less than
    the baseline as the corruption grows (whatever their clean scores).

    Parameters
    ----------
    scores : sequence of float
        The model's scores, clean first, then mild to severe.
    baseline : sequence of float
        The baseline's scores at the same levels.

    Returns
    -------
    float
        The sum, on the score's scale (0 when both lose alike).

    Examples
    --------
    >>> from mmsk.inspection import effective_robustness
    >>> round(effective_robustness([0.9, 0.8, 0.7], [0.95, 0.75, 0.55]), 3)
    0.3
    """
    f = np.asarray(scores, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if f.shape != b.shape or f.ndim != 1 or f.size == 0:
        raise ValueError(
            f"scores and baseline must be 1-D and of the same length, got {f.shape} and {b.shape}"
        )
    return float(np.sum(f - (b + f[0] - b[0])))


def _levels_for(name: Any, levels: Any) -> Any:
    if levels is None or isinstance(name, Corruption):
        return None
    if isinstance(levels, Mapping):
        return levels.get(name)
    return levels


def _plan(
    found: list[Modality], corruptions: Any, levels: Any
) -> list[tuple[Modality, Corruption]]:
    """List the (modality, corruption) pairs to evaluate, levels checked."""
    if corruptions is None:
        spec = {m.name: list(DEFAULTS.get(m.kind, ("missing",))) for m in found}
    elif isinstance(corruptions, (str, Corruption)):
        spec = {m.name: [corruptions] for m in found}
    elif isinstance(corruptions, Mapping):
        select(found, list(corruptions))  # unknown modality names raise here
        spec = dict(corruptions)
    else:
        raise ValueError(
            "corruptions must be None, a corruption (name or Corruption) or a dict of "
            f"modality -> corruption(s), got {corruptions!r}"
        )
    by_name = {m.name: m for m in found}
    plan = []
    for name, items in spec.items():
        items = [items] if isinstance(items, (str, Corruption)) else list(items)
        for item in items:
            modality = by_name[name]
            try:
                corruption = get_corruption(item, modality.kind, _levels_for(item, levels))
            except ValueError as exc:
                raise ValueError(f"modality {name!r}: {exc}") from None
            plan.append((modality, corruption))
    names = [(m.name, c.name) for m, c in plan]
    dupes = {pair for pair in names if names.count(pair) > 1}
    if dupes:
        raise ValueError(f"a corruption is given twice for a modality: {sorted(dupes)}")
    return plan


def _score_corrupted(
    estimators: list[Any],
    X: Any,
    y: Any,
    modality: Modality,
    corruption: Corruption,
    level: float,
    seed: int,
    score: Any,
) -> list[dict[str, float]]:
    corrupted = corruption.apply(X, modality.columns, level, random_state=seed)
    return [score(est, corrupted, y) for est in estimators]


def _baseline_table(baseline: Any) -> pd.DataFrame | None:
    if baseline is None:
        return None
    table = baseline.get("scores") if isinstance(baseline, Mapping) else baseline
    if isinstance(table, pd.DataFrame) and {"modality", "corruption", "level", "score"} <= set(
        table.columns
    ):
        return table
    return None


def robustness_report(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    corruptions: Any = None,
    levels: Any = None,
    modalities: dict[str, Any] | None = None,
    scoring: Any = None,
    n_repeats: int = 1,
    baseline: Any = None,
    random_state: Any = None,
    n_jobs: int | None = None,
) -> Bunch:
    """Score a fitted model with one modality corrupted at graded levels.

    For each modality and corruption, the input is corrupted at each level
    (mild to severe) and the model scored; the clean score comes first
    (severity 0). The corruptions act on the raw items (see
    :mod:`mmsk.inspection` for the classes): audio noise at given SNRs,
    image blur, occlusion and noise, text token drop, and, for any
    modality, missing in a given fraction of rows. Each curve is summarised
    by MultiBench's relative robustness (the area under it, see
    :func:`relative_robustness`) and, against a ``baseline`` model, its
    effective robustness (:func:`effective_robustness`).

    The random draws depend only on ``random_state``, the modality, the
    corruption and the repeat, so two models reported with the same
    ``random_state`` see exactly the same corrupted inputs; within a curve
    the draws are shared across levels (the rows missing at 25 % are
    among those missing at 50 %; noise only grows in scale).

    Parameters
    ----------
    estimator : estimator
        A fitted estimator, fed raw items (a Pipeline that starts with a
        ColumnTransformer) or feature blocks (``block__*`` columns; only
        ``"missing"`` applies to those).
    X : DataFrame or 2-D array
        The data to score on, as ``estimator`` takes it.
    y : array-like
        The targets.
    corruptions : None, str, Corruption or dict, default=None
        What to apply. None: for every modality, the defaults of its kind
        (audio: ``"noise"``, ``"missing"``; image: ``"blur"``,
        ``"occlusion"``, ``"noise"``, ``"missing"``; text:
        ``"token_drop"``, ``"missing"``; others: ``"missing"``). A name or a
        :class:`Corruption`: that one, for every modality. A dict: modality
        -> a name, a Corruption or a list of them.
    levels : sequence of float, dict of str to sequence, or None, default=None
        Levels for the corruptions given by name (a Corruption instance
        keeps its own): one sequence for all, or name -> sequence.
        None: each corruption's default levels.
    modalities : dict of str to (label or list of labels) or None, default=None
        Explicit modalities, name -> columns of X, as in
        :func:`modality_importance`.
    scoring : None, str, callable, list, tuple or dict, default=None
        As in :func:`sklearn.metrics.check_scoring`; several metrics give
        rows per metric.
    n_repeats : int, default=1
        Random draws per level, averaged.
    baseline : estimator, report or None, default=None
        The reference for effective robustness: a fitted estimator (scored
        on the same corrupted inputs) or an earlier report (its Bunch or
        its ``scores`` table) with the same modalities, corruptions and levels.
    random_state : int, RandomState instance or None, default=None
        Seed of the corruptions.
    n_jobs : int or None, default=None
        Levels scored in parallel by joblib.

    Returns
    -------
    report : :class:`~sklearn.utils.Bunch`
        ``scores``: a DataFrame, one row per modality, corruption, level and
        metric, with columns ``modality``, ``corruption``, ``unit``,
        ``level``, ``severity`` (``k / K``), ``metric``, ``score``,
        ``score_std`` (over repeats), ``n_repeats`` and, with a baseline,
        ``baseline_score``. ``summary``: one row per modality, corruption
        and metric, with ``clean_score``, ``worst_score`` (at the most
        severe level), ``relative_robustness``, ``effective_robustness``
        (NaN without a baseline) and ``baseline_relative_robustness``.

    Raises
    ------
    ValueError
        For an unknown modality or corruption, a corruption that does not
        apply to a modality's kind, a bad level, or a baseline report that
        lacks a level.

    See Also
    --------
    make_robustness_scorer : One summary of one curve, as a scorer for a search.
    modality_importance : Permutation and ablation importance of each modality.
    mmsk.plotting.plot_robustness : The curves.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.impute import SimpleImputer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from mmsk.inspection import robustness_report
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a__0", "b__0"])
    >>> y = (X["a__0"] > 0).astype(int)
    >>> model = make_pipeline(SimpleImputer(), LogisticRegression()).fit(X, y)
    >>> report = robustness_report(model, X, y, corruptions={"a": "missing"},
    ...                            levels=[0.5, 1.0], random_state=0)
    >>> report.scores[["level", "score"]].round(1).to_dict("list")
    {'level': [0.0, 0.5, 1.0], 'score': [1.0, 0.8, 0.5]}
    """
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, Integral) or n_repeats < 1:
        raise ValueError(f"n_repeats must be an int >= 1, got {n_repeats!r}")
    X = check_X(X)
    found = find_modalities(estimator, X, modalities)
    plan = _plan(found, corruptions, levels)
    score, metrics = make_scorer_dict(estimator, scoring)
    base_table = _baseline_table(baseline)
    if baseline is not None and base_table is None and not hasattr(baseline, "predict"):
        raise ValueError(
            "baseline must be a fitted estimator or a robustness report (or its scores "
            f"table), got {type(baseline).__name__}"
        )
    estimators = (
        [estimator] if baseline is None or base_table is not None else [estimator, baseline]
    )
    clean = [score(est, X, y) for est in estimators]

    rng = check_random_state(random_state)
    jobs, keys = [], []
    for modality, corruption in plan:
        seeds = rng.randint(np.iinfo(np.int32).max, size=n_repeats)
        for k, level in enumerate(corruption.checked_levels(), start=1):
            for r, seed in enumerate(seeds):
                keys.append((modality.name, corruption.name, k, level, r))
                jobs.append(
                    delayed(_score_corrupted)(
                        estimators, X, y, modality, corruption, level, int(seed), score
                    )
                )
    results = dict(zip(keys, Parallel(n_jobs=n_jobs)(jobs), strict=True))

    rows, summary = [], []
    for modality, corruption in plan:
        points = [(0, corruption.clean_level)] + list(
            enumerate(corruption.checked_levels(), start=1)
        )
        n_levels = len(points) - 1
        for metric in metrics:
            curve, base_curve = [], []
            for k, level in points:
                if k == 0:
                    per_est = [[c[metric]] for c in clean]
                else:
                    draws = [
                        results[(modality.name, corruption.name, k, level, r)]
                        for r in range(n_repeats)
                    ]
                    per_est = [[d[i][metric] for d in draws] for i in range(len(estimators))]
                values = np.array(per_est[0])
                row = {
                    "modality": modality.name,
                    "corruption": corruption.name,
                    "unit": corruption.unit,
                    "level": level,
                    "severity": k / n_levels,
                    "metric": metric,
                    "score": float(values.mean()),
                    "score_std": float(values.std()),
                    "n_repeats": len(values),
                }
                curve.append(row["score"])
                if len(estimators) == 2:
                    row["baseline_score"] = float(np.mean(per_est[1]))
                elif base_table is not None:
                    row["baseline_score"] = _lookup(base_table, row)
                if "baseline_score" in row:
                    base_curve.append(row["baseline_score"])
                rows.append(row)
            summary.append(
                {
                    "modality": modality.name,
                    "corruption": corruption.name,
                    "metric": metric,
                    "clean_score": curve[0],
                    "worst_score": curve[-1],
                    "relative_robustness": relative_robustness(curve),
                    "effective_robustness": effective_robustness(curve, base_curve)
                    if base_curve
                    else math.nan,
                    "baseline_relative_robustness": relative_robustness(base_curve)
                    if base_curve
                    else math.nan,
                }
            )
    return Bunch(scores=pd.DataFrame(rows), summary=pd.DataFrame(summary))


def _lookup(table: pd.DataFrame, row: dict[str, Any]) -> float:
    """Find the baseline report's score at the row's modality, corruption, level, metric."""
    levels = table["level"].astype(float).to_numpy()
    same_level = (levels == row["level"]) | np.isclose(levels, row["level"])
    match = (
        (table["modality"] == row["modality"]).to_numpy()
        & (table["corruption"] == row["corruption"]).to_numpy()
        & same_level
    )
    if "metric" in table:
        match &= (table["metric"] == row["metric"]).to_numpy()
    found = table.loc[match, "score"]
    if found.empty:
        raise ValueError(
            f"the baseline report has no score for modality {row['modality']!r}, corruption "
            f"{row['corruption']!r}, level {row['level']!r}, metric {row['metric']!r}; report "
            "both models with the same corruptions and levels"
        )
    return float(found.iloc[0])


class _RobustnessScorer:
    """A scorer ``(estimator, X, y) -> float``: one summary of one robustness curve."""

    def __init__(self, modality: str, corruption: Any, levels: Any, options: dict[str, Any]):
        self.modality = modality
        self.corruption = corruption
        self.levels = levels
        self.options = options

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        opts = dict(self.options)
        summary = opts.pop("summary")
        report = robustness_report(
            estimator,
            X,
            y,
            corruptions={self.modality: self.corruption},
            levels=self.levels,
            **opts,
        )
        if summary == "relative_robustness":
            return float(report.summary["relative_robustness"].iloc[0])
        corrupted = report.scores.loc[report.scores["severity"] > 0, "score"]
        return float(corrupted.mean() if summary == "mean" else corrupted.iloc[-1])

    def __repr__(self) -> str:
        name = getattr(self.corruption, "name", self.corruption)
        return (
            f"make_robustness_scorer({self.modality!r}, {name!r}, levels={self.levels!r}, "
            f"summary={self.options['summary']!r})"
        )


def make_robustness_scorer(
    modality: str,
    corruption: str | Corruption,
    levels: Sequence[float] | None = None,
    *,
    scoring: Any = None,
    summary: str = "relative_robustness",
    modalities: dict[str, Any] | None = None,
    n_repeats: int = 1,
    random_state: Any = 0,
) -> _RobustnessScorer:
    """Make a scorer that rates a model by its robustness to one corruption.

    The scorer runs :func:`robustness_report` for one modality and one
    corruption and returns one number, greater is better, so it serves as
    ``GridSearchCV(scoring=...)`` (alone, or in a dict next to accuracy
    with ``refit=`` naming one).

    Parameters
    ----------
    modality : str
        The modality to corrupt.
    corruption : str or Corruption
        The corruption (name, or instance with its levels).
    levels : sequence of float or None, default=None
        Levels for a corruption given by name; None: its defaults.
    scoring : None, str or callable, default=None
        One metric, as in :func:`sklearn.metrics.check_scoring`.
    summary : {"relative_robustness", "mean", "worst"}, default="relative_robustness"
        What to return: the area under the curve (clean score included), the
        mean score over the corrupted levels, or the score at the most
        severe level.
    modalities : dict or None, default=None
        Explicit modalities, as in :func:`robustness_report`.
    n_repeats : int, default=1
        Random draws per level.
    random_state : int or None, default=0
        Seed of the corruptions; fixed by default, so every candidate of a
        search is scored on the same corrupted inputs.

    Returns
    -------
    callable
        ``scorer(estimator, X, y) -> float``.

    Raises
    ------
    ValueError
        For an unknown ``summary``, several metrics, or a bad corruption or level.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.impute import SimpleImputer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.pipeline import make_pipeline
    >>> from mmsk.inspection import make_robustness_scorer
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a__0", "b__0"])
    >>> y = (X["a__0"] + X["b__0"] > 0).astype(int)
    >>> scorer = make_robustness_scorer("a", "missing", [0.5, 1.0])
    >>> model = make_pipeline(SimpleImputer(), LogisticRegression())
    >>> search = GridSearchCV(model, {"logisticregression__C": [0.01, 1.0]}, scoring=scorer, cv=3)
    >>> bool(0.5 < search.fit(X, y).best_score_ <= 1.0)
    True
    """
    if summary not in SUMMARIES:
        raise ValueError(f"summary must be one of {SUMMARIES}, got {summary!r}")
    if isinstance(scoring, (list, tuple, set, dict)):
        raise ValueError("a robustness scorer returns one number: give one metric in scoring")
    _check_early(corruption, levels)
    options = dict(
        scoring=scoring,
        summary=summary,
        modalities=modalities,
        n_repeats=n_repeats,
        random_state=random_state,
    )
    return _RobustnessScorer(
        modality, corruption, None if levels is None else list(levels), options
    )


def _check_early(corruption: Any, levels: Any) -> None:
    """Check a scorer's corruption and levels when they do not depend on the modality."""
    from ._corruptions import _BY_NAME

    if isinstance(corruption, Corruption):
        get_corruption(corruption, None, levels)
        return
    choices = _BY_NAME.get(corruption) if isinstance(corruption, str) else None
    if choices is None:
        get_corruption(corruption)  # raises the unknown-name error
    elif len(choices) == 1:  # "noise" means audio or image noise: checked on use
        get_corruption(corruption, next(iter(choices)), levels)
