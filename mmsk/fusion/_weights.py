"""Sample weights and groups in ``fit``: checks, weighted statistics, loss and split.

``fit(X, y, sample_weight=w)`` puts the weights into the prepared dict
under :data:`SAMPLE_WEIGHT` (skorch's documented way: the weights travel
with the rows through the split and the batches), and the net is a
:class:`WeightedNetClassifier` or :class:`WeightedNetRegressor`, whose
``get_loss`` takes the weighted mean of the per-row losses and whose
``infer`` keeps the weights away from the module. The input and target
standardisation use weighted moments (:func:`weighted_moments`), so a
weighted fit is a fit on repeated rows wherever the optimisation allows
(see ``docs/fusion.md``).

``fit(X, y, groups=g)`` holds out whole groups (:class:`GroupValidSplit`),
so early stopping measures how the net does on groups it has not seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.model_selection import GroupShuffleSplit
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import _check_sample_weight
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.utils import to_tensor
from torch.utils.data import Subset

__all__ = [
    "SAMPLE_WEIGHT",
    "GroupValidSplit",
    "WeightedNetClassifier",
    "WeightedNetRegressor",
    "check_fit_groups",
    "check_fit_sample_weight",
    "weighted_moments",
]

#: The key of the weights in the prepared dict (never a block: blocks are ``x{i}``).
SAMPLE_WEIGHT = "sample_weight"


def check_fit_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """Validate ``sample_weight``; None where it changes nothing.

    Weights are checked by scikit-learn's ``_check_sample_weight``: 1-D,
    one per row, finite, non-negative and not all zero. Zero weights are
    allowed (the row then counts for nothing in the loss and the
    statistics). Uniform weights give the unweighted fit, since the loss
    is a weighted *mean*; they are returned as None, so that such a fit is
    exactly the fit without weights.

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,), float or None
        The weights given to ``fit``.
    n_samples : int
        The number of rows of ``X``.

    Returns
    -------
    sample_weight : ndarray of float64 of shape (n_samples,) or None
        The checked weights, or None for no or uniform weights.

    Examples
    --------
    >>> from mmsk.fusion._weights import check_fit_sample_weight
    >>> check_fit_sample_weight([1, 0, 2], 3).tolist()
    [1.0, 0.0, 2.0]
    >>> check_fit_sample_weight([2, 2, 2], 3) is None
    True
    """
    if sample_weight is None:
        return None
    weight = _check_sample_weight(
        sample_weight, np.empty((n_samples, 0)), dtype=np.float64, ensure_non_negative=True
    )
    if np.all(weight == weight[0]):
        return None
    return weight


def check_fit_groups(groups: Any, n_samples: int) -> np.ndarray | None:
    """Validate ``groups``: 1-D, one label per row, no missing label.

    Parameters
    ----------
    groups : array-like of shape (n_samples,) or None
        Group labels (speaker, patient, site, ...).
    n_samples : int
        The number of rows of ``X``.

    Returns
    -------
    groups : ndarray of shape (n_samples,) or None
        The labels as an array.

    Examples
    --------
    >>> from mmsk.fusion._weights import check_fit_groups
    >>> check_fit_groups(["a", "a", "b"], 3).tolist()
    ['a', 'a', 'b']
    """
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n_samples:
        raise ValueError(
            f"groups must be 1-D with one label per row of X ({n_samples}), "
            f"got shape {groups.shape}"
        )
    if groups.dtype.kind == "f" and np.isnan(groups).any():
        row = int(np.flatnonzero(np.isnan(groups))[0])
        raise ValueError(f"groups: row {row} has no group (NaN)")
    if groups.dtype == object and any(g is None for g in groups):
        row = next(i for i, g in enumerate(groups) if g is None)
        raise ValueError(f"groups: row {row} has no group (None)")
    return groups


def weighted_moments(block: Any, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted per-column mean and variance of a dense or sparse block.

    Parameters
    ----------
    block : ndarray or sparse matrix of shape (n, d)
        The rows.
    weight : ndarray of shape (n,)
        Their non-negative weights, with a positive sum.

    Returns
    -------
    mean, var : ndarray of float64 of shape (d,)
        What the unweighted moments of the rows repeated ``weight`` times
        would be (for integer weights).

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._weights import weighted_moments
    >>> mean, var = weighted_moments(np.array([[0.0], [3.0]]), np.array([2.0, 1.0]))
    >>> mean.tolist(), var.tolist()
    ([1.0], [2.0])
    """
    weight = np.asarray(weight, dtype=np.float64)
    if sparse.issparse(block):
        return mean_variance_axis(sparse.csr_matrix(block, dtype=np.float64), 0, weights=weight)
    block = np.asarray(block, dtype=np.float64)
    mean = np.average(block, axis=0, weights=weight)
    var = np.average(np.square(block - mean), axis=0, weights=weight)
    return mean, var


class GroupValidSplit:
    """Hold out whole groups: skorch's ``train_split`` for ``fit(..., groups=g)``.

    The validation rows are the rows of a random ``fraction`` of the
    groups (:class:`~sklearn.model_selection.GroupShuffleSplit`: the
    number of held-out groups is ``ceil(fraction * n_groups)``), so the
    validation loss (and early stopping) measures how the net does on
    groups it has never seen, e.g. a new speaker. The split is not
    stratified by class.

    Parameters
    ----------
    fraction : float in (0, 1)
        Fraction of the groups held out.
    groups : ndarray of shape (n_samples,)
        One group label per row.
    random_state : int
        Seeds the choice of the groups.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._weights import GroupValidSplit
    >>> split = GroupValidSplit(0.5, np.array([0, 0, 1, 1]), random_state=0)
    >>> train, valid = split(np.arange(4))
    >>> train.indices.tolist(), valid.indices.tolist()
    ([0, 1], [2, 3])
    """

    def __init__(self, fraction: float, groups: np.ndarray, random_state: int) -> None:
        self.fraction = fraction
        self.groups = groups
        self.random_state = random_state

    @staticmethod
    def check(fraction: float, groups: np.ndarray) -> str | None:
        """Return why no grouped split of ``fraction`` exists, or None if one does."""
        n_groups = len(np.unique(groups))
        n_valid = int(np.ceil(fraction * n_groups))
        if n_groups < 2 or n_valid >= n_groups:
            return (
                f"groups has {n_groups} distinct group(s); a grouped validation split of "
                f"{fraction} of the groups needs at least "
                f"{max(2, int(np.ceil(1 / (1 - fraction) - 1e-9)))} groups, so that whole "
                "groups are held out and others left to train on"
            )
        return None

    def __call__(
        self, dataset: Any, y: Any = None, **kwargs: Any
    ) -> tuple[Subset[Any], Subset[Any]]:
        """Split ``dataset`` into the rows of the training and the held-out groups."""
        reason = self.check(self.fraction, self.groups)
        if reason is not None:
            raise ValueError(reason)
        splitter = GroupShuffleSplit(
            n_splits=1, test_size=self.fraction, random_state=self.random_state
        )
        train, valid = next(splitter.split(np.zeros((len(self.groups), 1)), groups=self.groups))
        return Subset(dataset, train), Subset(dataset, valid)


class _WeightedLoss:
    """A skorch net whose loss is the weighted mean of the per-row losses.

    The weights arrive in each batch's dict under :data:`SAMPLE_WEIGHT`;
    the criterion is built with ``reduction="none"``. The weighted mean
    divides by the sum of the weights, times the class weights for a loss
    that has them (``CrossEntropyLoss(weight=...)``, as torch's own mean
    does), so per-sample and class weights multiply as in scikit-learn,
    and integer weights give the loss of repeated rows.
    """

    def infer(self, x: Any, **fit_params: Any) -> Any:
        """Run the module on a batch, without the weights."""
        if isinstance(x, Mapping) and SAMPLE_WEIGHT in x:
            x = {key: value for key, value in x.items() if key != SAMPLE_WEIGHT}
        return super().infer(x, **fit_params)  # type: ignore[misc]

    def get_loss(
        self, y_pred: torch.Tensor, y_true: Any, X: Any = None, training: bool = False
    ) -> torch.Tensor:
        """Return the weighted mean of the batch's per-row losses."""
        losses = super().get_loss(y_pred, y_true, X=X, training=training)  # type: ignore[misc]
        if isinstance(X, Mapping) and SAMPLE_WEIGHT in X:
            weight = to_tensor(X[SAMPLE_WEIGHT], device=self.device)  # type: ignore[attr-defined]
            weight = weight.to(losses.dtype)
        else:  # (e.g. a later partial_fit without weights)
            weight = losses.new_ones(len(losses))
        if losses.ndim > 1:  # e.g. MSE per output: the mean over the outputs of a row
            losses = losses.reshape(len(losses), -1).mean(dim=1)
        total = weight
        class_weight = getattr(self.criterion_, "weight", None)  # type: ignore[attr-defined]
        y_true = to_tensor(y_true, device=self.device)  # type: ignore[attr-defined]
        if isinstance(class_weight, torch.Tensor) and not y_true.is_floating_point():
            total = weight * class_weight[y_true.long()].to(losses.dtype)
        return (weight * losses).sum() / total.sum().clamp_min(torch.finfo(losses.dtype).tiny)


class WeightedNetClassifier(_WeightedLoss, NeuralNetClassifier):
    """skorch's :class:`~skorch.classifier.NeuralNetClassifier` with per-row weights.

    Examples
    --------
    >>> from mmsk.fusion._weights import WeightedNetClassifier
    >>> WeightedNetClassifier.__mro__[2].__name__
    'NeuralNetClassifier'
    """


class WeightedNetRegressor(_WeightedLoss, NeuralNetRegressor):
    """skorch's :class:`~skorch.regressor.NeuralNetRegressor` with per-row weights.

    Examples
    --------
    >>> from mmsk.fusion._weights import WeightedNetRegressor
    >>> WeightedNetRegressor.__mro__[2].__name__
    'NeuralNetRegressor'
    """
