"""The column transformer of the pipelines (:class:`mmsk.compose.MultimodalColumnTransformer`).

One-row ``transform`` of a column transformer with wide blocks (thousands of
pixel columns) costs more in scikit-learn's and pandas' bookkeeping than in
the work: every call names each block's columns (a pandas ``Index`` of
thousands of strings, built from an object array), joins the blocks, and
names the joined frame again. The class lives here (and is public in
:mod:`mmsk.compose`) with its per-call path:

- the joined frame's column ``Index`` is built once and kept while the
  output names stay the same (:func:`output_index`); the output is named
  with it (:func:`wrap_output`), by the same pandas call as
  ``set_output``'s;
- with a DataFrame input, pandas output and no parallel jobs,
  :func:`lean_transform` calls each fitted transformer on its column
  itself, and an mmsk extractor's block is left unnamed (the joined frame
  is named once): the same transformers, inputs, checks and output as
  :meth:`sklearn.compose.ColumnTransformer.transform`. Any other input goes
  the parent's way, with its checks and messages.
"""

from __future__ import annotations

import sys
from itertools import chain
from typing import Any

import joblib
import numpy as np
from scipy.sparse import issparse
from sklearn.compose import ColumnTransformer
from sklearn.utils._set_output import ADAPTERS_MANAGER, _get_output_config, _safe_set_output
from sklearn.utils.validation import check_is_fitted

from ._base import ItemTransformer

__all__ = [
    "MultimodalColumnTransformer",
    "lean_transform",
    "output_index",
    "set_output_of",
    "wrap_output",
]


def set_output_of(ct: Any, transform: str | None) -> Any:
    """Do what :meth:`ColumnTransformer.set_output` does, for a class that wraps its own output.

    The output kind is stored where scikit-learn reads it
    (``_sklearn_output_config``), and set on every transformer, fitted or
    not, and on the remainder.
    """
    if transform is not None:
        ct.__dict__.setdefault("_sklearn_output_config", {})["transform"] = transform
    for _, trans, _ in chain(ct.transformers, getattr(ct, "transformers_", [])):
        if not (isinstance(trans, str) and trans in ("passthrough", "drop")):
            _safe_set_output(trans, transform=transform)
    if not (isinstance(ct.remainder, str) and ct.remainder in ("passthrough", "drop")):
        _safe_set_output(ct.remainder, transform=transform)
    return ct


def output_index(ct: Any) -> Any:
    """Return the output column names as a pandas ``Index``, built once per set of names.

    None where the names cannot be had (a transformer without
    ``get_feature_names_out``): the caller then names nothing, as
    ``set_output`` does.
    """
    try:
        names = ct.get_feature_names_out()
    except Exception:  # noqa: BLE001 - set_output names nothing then, so do we
        return None
    import pandas as pd

    token = ct.__dict__.get("_names_out_memo")  # a new object whenever the names change
    if token is None:
        return pd.Index(names)
    memo = ct.__dict__.get("_names_index_memo")
    if memo is not None and memo[0] is token:
        return memo[1]
    index = pd.Index(names)
    ct._names_index_memo = (token, index)
    return index


def wrap_output(ct: Any, data: Any, X: Any) -> Any:
    """Wrap ``data`` as ``set_output`` would (its error, its container, its names).

    The pandas output is named with :func:`output_index`, so that the
    ``Index`` of the names is not built again at every call.
    """
    dense = _get_output_config("transform", ct)["dense"]
    if dense == "default":
        return data
    if issparse(data):
        raise ValueError(
            "The transformer outputs a scipy sparse matrix. "
            "Try to set the transformer output to a dense array or disable "
            f"{dense.capitalize()} output with set_output(transform='default')."
        )
    columns: Any = ct.get_feature_names_out
    if dense == "pandas":
        index = output_index(ct)
        if index is None:
            return ADAPTERS_MANAGER.adapters[dense].create_container(data, X, columns=None)
        columns = index
    return ADAPTERS_MANAGER.adapters[dense].create_container(data, X, columns=columns)


def _plan(ct: Any, X: Any) -> list[tuple[Any, Any]] | None:
    """Return the ``(transformer, column key)`` pairs of a lean transform (None: not lean)."""
    if not X.columns.is_unique or X.columns.inferred_type != "string":
        return None  # duplicate or non-str names: the parent's checks and messages
    present = set(X.columns)
    plan = []
    for _, trans, key, weight in ct._iter(
        fitted=True, column_as_labels=True, skip_drop=True, skip_empty_columns=True
    ):
        if weight is not None or isinstance(trans, str):
            return None
        if isinstance(key, np.ndarray) and key.ndim == 1:
            key = key.tolist()  # (the fitted selection of a list of names)
        keys = [key] if isinstance(key, str) else key
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            return None
        if not present.issuperset(keys):
            return None  # the parent names the missing columns
        plan.append((trans, key))
    return plan or None


def lean_transform(ct: Any, X: Any) -> Any:
    """Transform a DataFrame as the parent would, with less per-call bookkeeping; None if not lean.

    Lean where the transformer is fitted on a DataFrame, ``X`` is a
    DataFrame with unique ``str`` column names holding every column that a
    fitted transformer reads, the output is pandas and dense, there are no
    transformer weights and the transformers run in this thread
    (``n_jobs`` 1). Each transformer gets the same input as in the parent
    (``X[column]``: a Series for a name, a DataFrame for a list) and its
    output the same check (two-dimensional) and the same join.
    """
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(X, pd.DataFrame) or X.shape[0] == 0:
        return None
    if _get_output_config("transform", ct)["dense"] != "pandas":
        return None
    if "transformers_" not in ct.__dict__:
        check_is_fitted(ct)  # its NotFittedError
    if getattr(ct, "sparse_output_", True) or not hasattr(ct, "feature_names_in_"):
        return None
    if joblib.effective_n_jobs(ct.n_jobs) != 1:
        return None
    plan = _plan(ct, X)
    if plan is None:
        return None
    Xs: list[Any] = []
    for trans, key in plan:
        part = X[key]
        raw = (
            isinstance(trans, ItemTransformer)
            and type(trans).transform is ItemTransformer.transform
            and _get_output_config("transform", trans)["dense"] == "pandas"
        )
        # an mmsk extractor's block: its array (named once, on the joined frame)
        Xs.append(trans._transform_values(part) if raw else trans.transform(part))
    n = X.shape[0]
    arrays = [x for x in Xs if isinstance(x, np.ndarray)]
    if len(arrays) == len(Xs) and all(
        a.ndim == 2 and a.shape[0] == n and a.dtype == arrays[0].dtype for a in arrays
    ):  # one dtype: one array, what joining the blocks' frames would hold
        return pd.DataFrame(np.hstack(arrays), index=X.index, copy=False)
    Xs = [
        pd.DataFrame(x, index=X.index, copy=False) if isinstance(x, np.ndarray) else x for x in Xs
    ]
    ct._validate_output(Xs)
    return ct._hstack(Xs, n_samples=n)


class MultimodalColumnTransformer(ColumnTransformer, auto_wrap_output_keys=None):
    """A :class:`~sklearn.compose.ColumnTransformer` that stays fast with wide blocks.

    The same estimator, parameters and output as its parent. What changes is
    for speed where the blocks are wide (an image block has thousands of
    columns) and the batches small (one row in a server):

    - with pandas output, the blocks are joined without first renaming
      their columns to temporary names and reading them back, and the
      joined frame is named with a pandas ``Index`` of the output names
      built once (this class wraps its own output, with the same result
      as ``set_output``'s wrapping);
    - with a DataFrame input, pandas output and ``n_jobs`` 1, ``transform``
      calls the fitted transformers on their columns itself, and leaves an
      mmsk extractor's block unnamed until the join (see
      ``mmsk/_columns.py``);
    - :meth:`get_feature_names_out` remembers its answer while the fitted
      transformers' own output names and ``verbose_feature_names_out`` stay
      the same, instead of prefixing every name again at every
      ``transform``.

    :func:`make_multimodal_pipeline` builds one. Parameters, attributes and
    methods are those of :class:`~sklearn.compose.ColumnTransformer`.

    See Also
    --------
    sklearn.compose.ColumnTransformer : The parent class and its documentation.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.preprocessing import StandardScaler
    >>> from mmsk.compose import MultimodalColumnTransformer
    >>> X = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, 0.0]})
    >>> ct = MultimodalColumnTransformer([("num", StandardScaler(), ["a", "b"])])
    >>> out = ct.set_output(transform="pandas").fit_transform(X)
    >>> list(out.columns)
    ['num__a', 'num__b']
    """

    def set_output(self, *, transform: str | None = None) -> MultimodalColumnTransformer:
        """Set the output container of ``transform`` and ``fit_transform`` (see the parent class).

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None, default=None
            The output container; None leaves it unchanged. Set on every
            transformer as well, as the parent does.

        Returns
        -------
        self : MultimodalColumnTransformer
            This estimator.
        """
        return set_output_of(self, transform)

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> Any:
        """Fit all transformers, transform the data and join the results (see the parent class).

        Parameters
        ----------
        X : {array-like, dataframe} of shape (n_samples, n_features)
            Input data.
        y : array-like or None, default=None
            Targets for supervised transformers.
        **params : dict
            Parameters for the transformers' ``fit`` (metadata routing).

        Returns
        -------
        X_t : {ndarray, sparse matrix, dataframe}
            The joined output, in the container set by :meth:`set_output`.
        """
        return wrap_output(self, super().fit_transform(X, y, **params), X)

    def transform(self, X: Any, **params: Any) -> Any:
        """Transform X by each transformer and join the results (see the parent class).

        Parameters
        ----------
        X : {array-like, dataframe} of shape (n_samples, n_features)
            The data to transform.
        **params : dict
            Parameters for the transformers' ``transform`` (metadata routing).

        Returns
        -------
        X_t : {ndarray, sparse matrix, dataframe}
            The joined output, in the container set by :meth:`set_output`.
        """
        data = None if params else lean_transform(self, X)
        if data is None:
            data = super().transform(X, **params)
        return wrap_output(self, data, X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Get output feature names for transformation (see the parent class).

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input features, as for :class:`~sklearn.compose.ColumnTransformer`.

        Returns
        -------
        feature_names_out : ndarray of str objects
            Transformed feature names.
        """
        if input_features is not None or not hasattr(self, "transformers_"):
            return super().get_feature_names_out(input_features)
        key = self._names_key()
        memo = self.__dict__.get("_names_out_memo")
        if key is not None and memo is not None and _same_names(memo[0], key):
            return memo[1].copy()
        names = super().get_feature_names_out()
        if key is not None:
            self._names_out_memo = (key, names.copy())
        else:
            self.__dict__.pop("_names_out_memo", None)
        return names

    def _names_key(self) -> tuple[Any, ...] | None:
        """Return what the output names depend on; None where it cannot be read cheaply."""
        names_in = getattr(self, "feature_names_in_", None)
        if names_in is None:
            return None
        parts: list[Any] = [self.verbose_feature_names_out]
        for name, trans, *_ in self._iter(
            fitted=True, column_as_labels=False, skip_empty_columns=True, skip_drop=True
        ):
            if not hasattr(trans, "get_feature_names_out"):
                return None
            if isinstance(trans, ItemTransformer) and "n_features_out_" in trans.__dict__:
                names = trans._names_out()  # its remembered array: compared by identity
            else:
                names = self._get_feature_name_out_for_transformer(name, trans, names_in)
            parts.append((name, names))
        return tuple(parts)

    def _hstack(self, Xs: list[Any], *, n_samples: int) -> Any:
        """Stack the blocks; pandas blocks are joined without renaming their columns."""
        pandas_out = _get_output_config("transform", self)["dense"] == "pandas"
        fitted = self._iter(
            fitted=True, column_as_labels=False, skip_empty_columns=True, skip_drop=True
        )
        named = all(hasattr(trans, "get_feature_names_out") for _, trans, *_ in fitted)
        if self.sparse_output_ or not pandas_out or not named or not Xs:
            return super()._hstack(Xs, n_samples=n_samples)
        import pandas as pd

        if not all(isinstance(X, pd.DataFrame) for X in Xs):
            return super()._hstack(Xs, n_samples=n_samples)
        output = pd.concat(Xs, axis=1, ignore_index=True)
        if output.shape[0] != n_samples:
            return super()._hstack(Xs, n_samples=n_samples)  # the parent's error message
        return output

    def __getstate__(self) -> dict[str, Any]:
        """Leave the remembered names out of the pickled state."""
        state = super().__getstate__()
        state.pop("_names_out_memo", None)
        state.pop("_names_index_memo", None)
        return state


def _same_names(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if len(a) != len(b) or a[0] != b[0]:
        return False
    for (name_a, names_a), (name_b, names_b) in zip(a[1:], b[1:], strict=True):
        if name_a != name_b or len(names_a) != len(names_b):
            return False
        if names_a is names_b:
            continue
        if not np.array_equal(np.asarray(names_a, dtype=object), np.asarray(names_b, dtype=object)):
            return False
    return True


# pickles and model files name it by its public place
MultimodalColumnTransformer.__module__ = "mmsk.compose"
