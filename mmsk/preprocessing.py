"""Scaling within groups: features standardised per speaker, camera, site, ...

A modality often carries badly to new data because each *group* (a speaker,
a recording device, a hospital) shifts and scales its features: audio
statistics of a new voice sit away from those of the training voices, and a
fused network that learned to trust audio is misled. Standardising each
group's features with that group's own mean and spread removes the shift
(cepstral mean and variance normalisation, in speech terms). At predict
time this uses the *unlabelled* rows of the group being predicted: the
statistics of a new speaker come from that speaker's clips. That is a
transductive step; say so when reporting results, and give the scaler
enough rows of a group (``min_group_size``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["GroupStandardScaler"]


class GroupStandardScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardise features within each group, using the rows of that group.

    ``fit`` learns the overall mean and standard deviation of each feature
    (and those of each training group). ``transform(X, groups=g)``
    standardises the rows of every group in ``g`` with the mean and standard
    deviation *of those rows* when the group has at least
    ``min_group_size`` rows in the call; a smaller group uses its statistics
    from ``fit`` if it was seen there, else the overall ones. Without
    ``groups`` every row gets the overall statistics, like a
    :class:`~sklearn.preprocessing.StandardScaler`.

    NaN are ignored in the statistics and kept in the output, so an all-NaN
    row (a missing modality, for the fusion estimators) stays all-NaN.

    ``groups`` reach the scaler inside a :class:`~sklearn.pipeline.Pipeline`
    or :class:`~sklearn.compose.ColumnTransformer` through scikit-learn's
    metadata routing: ``sklearn.set_config(enable_metadata_routing=True)``,
    then ``model.fit(X, y, groups=g)`` and ``model.predict(X, groups=g)``.
    The scaler requests ``groups`` in ``fit`` and ``transform`` by default.

    Parameters
    ----------
    min_group_size : int, default=10
        Fewest rows of a group in one ``transform`` call for their own
        statistics to be used.
    with_mean : bool, default=True
        Subtract the mean.
    with_std : bool, default=True
        Divide by the standard deviation (a constant feature is divided by 1).

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_features_in_,)
        The overall statistics of the training rows.
    group_stats_ : dict
        Group label -> ``(mean, scale)`` of the training rows of that group
        (empty if ``fit`` got no ``groups``).
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : The same without groups.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import GroupStandardScaler
    >>> X = np.array([[1.0], [3.0], [10.0], [30.0]])
    >>> groups = ["a", "a", "b", "b"]
    >>> GroupStandardScaler(min_group_size=2).fit_transform(X, groups=groups).ravel()
    array([-1.,  1., -1.,  1.])
    >>> scaler = GroupStandardScaler(min_group_size=2).fit(X, groups=groups)
    >>> scaler.transform([[100.0], [300.0]], groups=["new", "new"]).ravel()
    array([-1.,  1.])
    """

    __metadata_request__fit = {"groups": True}
    __metadata_request__transform = {"groups": True}

    def __init__(
        self, *, min_group_size: int = 10, with_mean: bool = True, with_std: bool = True
    ) -> None:
        self.min_group_size = min_group_size
        self.with_mean = with_mean
        self.with_std = with_std

    def _stats(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        present = ~np.isnan(X).all(axis=1)
        rows = X[present]
        n = X.shape[1]
        if not len(rows):
            return np.zeros(n), np.ones(n)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            mean = np.nanmean(rows, axis=0) if self.with_mean else np.zeros(n)
            scale = np.nanstd(rows, axis=0) if self.with_std else np.ones(n)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
        return mean, scale

    def _check_groups(self, groups: Any, n: int) -> np.ndarray | None:
        if groups is None:
            return None
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) != n:
            raise ValueError(
                f"groups must be 1-D with one label per row of X ({n}), got shape {groups.shape}"
            )
        return groups

    def fit(self, X: Any, y: Any = None, groups: Any = None) -> GroupStandardScaler:
        """Learn the overall and the per-group statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows; NaN are ignored.
        y : None
            Ignored.
        groups : array-like of shape (n_samples,) or None, default=None
            Group label of each row.

        Returns
        -------
        self : GroupStandardScaler
            The fitted scaler.

        Examples
        --------
        >>> from mmsk import GroupStandardScaler
        >>> GroupStandardScaler().fit([[0.0], [2.0]]).mean_
        array([1.])
        """
        if (
            isinstance(self.min_group_size, bool)
            or not isinstance(self.min_group_size, int | np.integer)
            or self.min_group_size < 2
        ):
            raise ValueError(f"min_group_size must be an int >= 2, got {self.min_group_size!r}")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=True)
        groups = self._check_groups(groups, X.shape[0])
        self.mean_, self.scale_ = self._stats(X)
        self.group_stats_ = {}
        if groups is not None:
            for label in np.unique(groups):
                self.group_stats_[label] = self._stats(X[groups == label])
        return self

    def transform(self, X: Any, groups: Any = None) -> np.ndarray:
        """Standardise each group's rows with that group's statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to scale; NaN stay NaN.
        groups : array-like of shape (n_samples,) or None, default=None
            Group label of each row; None: the overall training statistics
            for every row.

        Returns
        -------
        X_scaled : ndarray of shape (n_samples, n_features)
            The scaled rows.

        Examples
        --------
        >>> from mmsk import GroupStandardScaler
        >>> scaler = GroupStandardScaler().fit([[0.0], [2.0]])
        >>> scaler.transform([[4.0]]).ravel()
        array([3.])
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        groups = self._check_groups(groups, X.shape[0])
        out = (X - self.mean_) / self.scale_
        if groups is None:
            return out
        for label in np.unique(groups):
            rows = groups == label
            if rows.sum() >= self.min_group_size:
                mean, scale = self._stats(X[rows])
            else:
                mean, scale = self.group_stats_.get(label, (self.mean_, self.scale_))
            out[rows] = (X[rows] - mean) / scale
        return out

    def fit_transform(self, X: Any, y: Any = None, groups: Any = None) -> np.ndarray:
        """Fit, then scale the training rows group by group.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : None
            Ignored.
        groups : array-like of shape (n_samples,) or None, default=None
            Group label of each row.

        Returns
        -------
        X_scaled : ndarray of shape (n_samples, n_features)
            The scaled rows.

        Examples
        --------
        >>> from mmsk import GroupStandardScaler
        >>> GroupStandardScaler().fit_transform([[0.0], [2.0]]).ravel()
        array([-1.,  1.])
        """
        return self.fit(X, groups=groups).transform(X, groups=groups)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
