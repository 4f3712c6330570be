"""Validation scoring, early stopping and learning-rate schedules for the fusion nets.

skorch records ``valid_loss`` by itself. :class:`ValidationScore` adds the
score of any scikit-learn scorer (``scoring="f1_macro"``, ``"roc_auc"``, a
callable) on the held-out rows at every epoch, as ``valid_score`` in the
history, computed on the predictions in the units of the estimator's own
``predict`` (original labels, unscaled targets), so a scorer sees exactly
what it would see on the fitted estimator. :func:`training_callbacks` puts
together what the estimators add to skorch's loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, check_scoring
from skorch.callbacks import Callback, EarlyStopping, LRScheduler

from mmsk.fusion._weights import SAMPLE_WEIGHT

__all__ = ["LR_SCHEDULES", "ClassWeightedAccuracy", "ValidationScore", "training_callbacks"]

#: The values of ``lr_schedule``.
LR_SCHEDULES = (None, "plateau", "cosine")


class _OutputsClassifier(ClassifierMixin, BaseEstimator):
    """A stand-in classifier whose predictions are fixed outputs (for scorers)."""

    def __init__(self, classes: np.ndarray, proba: np.ndarray) -> None:
        self.classes = classes
        self.proba = proba
        self.classes_ = classes

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.proba

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.proba, axis=1)]


class _OutputsRegressor(RegressorMixin, BaseEstimator):
    """A stand-in regressor whose predictions are fixed outputs (for scorers)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def predict(self, X: Any) -> np.ndarray:
        return self.values


class ValidationScore(Callback):
    """Score the held-out rows with a scikit-learn scorer after every epoch.

    Records ``valid_score`` (greater is better, scikit-learn's convention)
    in the net's history, and ``valid_score_best`` (whether it is the best
    so far). Nothing is recorded in an epoch without
    validation rows. When the rows carry weights (``fit(...,
    sample_weight=w)``), the scorer gets the held-out rows' weights.

    Parameters
    ----------
    scorer : callable
        A scorer ``scorer(estimator, X, y)``, e.g. from
        :func:`sklearn.metrics.get_scorer`.
    decode : callable
        ``decode(outputs, y_encoded) -> (stand_in_estimator, y_true)``:
        turns the net's outputs on the validation rows and their encoded
        targets into an estimator whose ``predict``/``predict_proba`` return
        them in the user's units, and the true targets in those units.

    Examples
    --------
    >>> from sklearn.metrics import get_scorer
    >>> from mmsk.fusion._training import ValidationScore
    >>> ValidationScore(get_scorer("accuracy"), decode=None).scorer._score_func.__name__
    'accuracy_score'
    """

    def __init__(self, scorer: Callable[..., float], decode: Callable[..., Any]) -> None:
        self.scorer = scorer
        self.decode = decode

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        """Forget the best score of an earlier fit."""
        self.best_score_ = -np.inf

    def on_epoch_end(self, net: Any, dataset_valid: Any = None, **kwargs: Any) -> None:
        """Predict the validation rows and record their score."""
        if dataset_valid is None or len(dataset_valid) == 0:
            return
        outputs = np.asarray(net.predict_proba(dataset_valid), dtype=np.float64)
        indices = getattr(dataset_valid, "indices", None)
        base = getattr(dataset_valid, "dataset", dataset_valid)
        y = np.asarray(base.y)
        y = y if indices is None else y[np.asarray(indices)]
        estimator, y_true = self.decode(outputs, y)
        dummy = np.zeros((len(y_true), 1))
        weight = getattr(base, "X", None)
        weight = weight.get(SAMPLE_WEIGHT) if isinstance(weight, dict) else None
        if weight is None:
            score = float(self.scorer(estimator, dummy, y_true))
        else:  # the held-out rows' weights
            weight = np.asarray(weight, dtype=np.float64)
            weight = weight if indices is None else weight[np.asarray(indices)]
            score = float(self.scorer(estimator, dummy, y_true, sample_weight=weight))
        is_best = score > self.best_score_
        self.best_score_ = max(score, self.best_score_)
        net.history.record("valid_score", score)
        net.history.record("valid_score_best", is_best)


class ClassWeightedAccuracy:
    """The accuracy with each row weighted by its class's weight: what a class-weighted fit watches.

    With ``class_weight="balanced"`` this is the balanced accuracy (the
    mean of the per-class recalls); with a dict of weights, the accuracy
    that counts each row as often as its class weight says. The rows'
    ``sample_weight`` multiplies in, as in the training loss. A scorer
    ``scorer(estimator, X, y, sample_weight=None)``, greater is better.

    Parameters
    ----------
    classes : ndarray
        The estimator's ``classes_`` (sorted, as :func:`numpy.unique` gives them).
    weights : ndarray
        The weight of each class, in the order of ``classes``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> from mmsk.fusion._training import ClassWeightedAccuracy
    >>> y = np.array([0, 0, 0, 1])
    >>> always_0 = DummyClassifier(strategy="most_frequent").fit(np.zeros((4, 1)), y)
    >>> scorer = ClassWeightedAccuracy(np.array([0, 1]), np.array([4 / 6, 4 / 2]))
    >>> float(scorer(always_0, np.zeros((4, 1)), y))  # the balanced accuracy
    0.5
    """

    def __init__(self, classes: np.ndarray, weights: np.ndarray) -> None:
        self.classes = classes
        self.weights = weights

    def __call__(
        self, estimator: Any, X: Any, y: Any, sample_weight: np.ndarray | None = None
    ) -> float:
        y = np.asarray(y)
        weight = np.asarray(self.weights, dtype=np.float64)[np.searchsorted(self.classes, y)]
        if sample_weight is not None:
            weight = weight * np.asarray(sample_weight, dtype=np.float64)
        return float(accuracy_score(y, estimator.predict(X), sample_weight=weight))


class _ClassDecoder:
    """Outputs -> (stand-in classifier, true labels); a class so that nets pickle."""

    def __init__(self, classes: np.ndarray) -> None:
        self.classes = classes

    def __call__(self, outputs: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
        proba = outputs / outputs.sum(axis=1, keepdims=True)
        return _OutputsClassifier(self.classes, proba), self.classes[y.astype(np.int64)]


class _TargetDecoder:
    """Outputs -> (stand-in regressor, true targets), in the target's units."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, one_d: bool) -> None:
        self.mean, self.scale, self.one_d = mean, scale, one_d

    def __call__(self, outputs: np.ndarray, y: np.ndarray) -> tuple[Any, np.ndarray]:
        values = outputs * self.scale + self.mean
        truth = np.asarray(y, dtype=np.float64).reshape(len(y), -1) * self.scale + self.mean
        if self.one_d:
            values, truth = values.ravel(), truth.ravel()
        return _OutputsRegressor(values), truth


def _decoder(estimator: Any) -> Callable[[np.ndarray, np.ndarray], tuple[Any, np.ndarray]]:
    if hasattr(estimator, "classes_"):
        return _ClassDecoder(estimator.classes_)
    return _TargetDecoder(
        estimator.target_mean_, estimator.target_scale_, estimator._target_ndim == 1
    )


def training_callbacks(
    estimator: Any,
    *,
    validating: bool,
    early_stopping: bool,
    n_iter_no_change: int = 10,
    class_weight: np.ndarray | None = None,
) -> tuple[list[Any], str, bool]:
    """Return the callbacks the estimators add to skorch's loop, in order.

    Parameters
    ----------
    estimator : FusionClassifier or FusionRegressor
        The estimator being fitted (its ``scoring``, ``tol``,
        ``lr_schedule``, ``max_epochs`` and, after target encoding,
        ``classes_`` or the target scaling).
    validating : bool
        Whether rows are held out.
    early_stopping : bool
        Whether to stop early (needs ``validating``).
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping (the plateau schedule
        waits about half as long before it lowers the learning rate).
    class_weight : ndarray or None, default=None
        The classifier's class weights (in the order of ``classes_``), when
        ``class_weight`` is set. Without ``scoring``, the held-out rows are
        then scored by :class:`ClassWeightedAccuracy` and that score is
        watched instead of the validation loss: the class-weighted loss of
        a few rows of a rare class, each weighing many times a common row,
        rises as soon as the network starts to fit them, long before the
        predictions stop improving.

    Returns
    -------
    callbacks : list of (str, Callback)
        ``valid_score`` (when ``scoring`` or ``class_weight`` is set and rows
        are held out),
        the learning-rate scheduler, ``early_stopping``.
    monitor : str
        The history key early stopping and the plateau schedule watch.
    lower_is_better : bool
        Its direction.

    Examples
    --------
    >>> from mmsk import FusionClassifier
    >>> cbs, monitor, _ = training_callbacks(
    ...     FusionClassifier(), validating=True, early_stopping=True)
    >>> [name for name, _ in cbs], monitor
    (['lr_schedule', 'early_stopping'], 'valid_loss')
    """
    callbacks: list[Any] = []
    monitor, lower_is_better = "train_loss", True
    if validating:
        monitor = "valid_loss"
        scorer = None
        if estimator.scoring is not None:
            scorer = check_scoring(estimator, scoring=estimator.scoring)
        elif class_weight is not None:
            scorer = ClassWeightedAccuracy(estimator.classes_, np.asarray(class_weight))
        if scorer is not None:
            callbacks.append(("valid_score", ValidationScore(scorer, _decoder(estimator))))
            monitor, lower_is_better = "valid_score", False
    if estimator.lr_schedule == "plateau":
        patience = max(1, n_iter_no_change // 2 - 1)
        callbacks.append(
            (
                "lr_schedule",
                LRScheduler(
                    policy="ReduceLROnPlateau",
                    monitor=monitor,
                    mode="min" if lower_is_better else "max",
                    factor=0.3,
                    patience=patience,
                ),
            )
        )
    elif estimator.lr_schedule == "cosine":
        callbacks.append(
            ("lr_schedule", LRScheduler(policy="CosineAnnealingLR", T_max=estimator.max_epochs))
        )
    if early_stopping:
        callbacks.append(
            (
                "early_stopping",
                EarlyStopping(
                    monitor=monitor,
                    patience=n_iter_no_change,
                    threshold=estimator.tol,
                    threshold_mode="abs",
                    lower_is_better=lower_is_better,
                    load_best=True,
                ),
            )
        )
    return callbacks, monitor, lower_is_better
