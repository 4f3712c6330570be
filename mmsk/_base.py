"""The extractor base class: item input, batched parallel extraction, caching, errors.

Every per-modality extractor subclasses :class:`ItemTransformer` and writes
three small hooks: ``_check_params`` (validate its parameters, in ``fit``),
``_feature_names`` (the output names) and ``_extract`` (one decoded item to
one 1-D vector). Everything else — accepting 1-D or one-column input,
missing values, the error policy, joblib batches, the tqdm bar and the
content-addressed cache — lives here once.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import joblib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._cache import FeatureCache, cache_location
from ._files import MAX_FILE_BYTES, FilePolicy, allowed_roots, check_max_bytes
from ._items import (
    ON_ERROR_CHOICES,
    BadItem,
    ItemError,
    as_items,
    describe_item,
    index_labels,
    is_missing,
    item_fingerprint,
    item_source,
    row_name,
)

__all__ = ["BadItem", "ItemTransformer", "ItemWarning"]

#: Largest number of items one joblib task handles.
MAX_BATCH = 256


class ItemWarning(UserWarning):
    """Some items could not be read and became NaN rows (``on_error="nan"``)."""


#: Parameters that never change an extractor's output (left out of the cache key).
_NOT_OUTPUT = (
    "on_error",
    "n_jobs",
    "memory",
    "verbose",
    "max_file_bytes",
    "allowed_dirs",
    "max_duration",
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, BadItem):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    text = str(exc).strip() or "no message"
    if isinstance(exc, MemoryError):
        return f"ran out of memory processing it ({text}); see docs/security.md for the limits"
    return f"cannot be read ({type(exc).__name__}: {text})"


def _label(labels: Sequence[Any] | None, row: int) -> Any:
    return None if labels is None else labels[row]


def _is_path(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike))


@contextlib.contextmanager
def opened(item: Any, policy: FilePolicy | None) -> Iterator[Any]:
    """Yield what a decoder reads for ``item``: a path opened under ``policy``, else the item.

    With a policy (the extractors that read files), a path item is opened
    by :meth:`FilePolicy.open` (regular files only, size limit, allowed
    directories) and closed after the block; any other item passes through.
    """
    if policy is None or not _is_path(item):
        yield item
        return
    with policy.open(item) as fh:
        yield fh


def _versions(modules: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in ("mmsk", "numpy", *modules):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "?"
    return found


def _extract_batch(
    est: ItemTransformer,
    items: Sequence[Any],
    start: int,
    column: str | None,
    cache: FeatureCache,
    n_out: int,
    labels: Sequence[Any] | None = None,
    policy: FilePolicy | None = None,
) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Extract one batch of items; return its rows and the failures.

    A failure is ``(row name, item description, reason)``; ``labels`` are
    the batch's index labels (None: rows are named by position).
    """
    dtype = est._output_dtype
    out = np.full((len(items), n_out), np.nan, dtype=dtype)
    failures: list[tuple[str, str, str]] = []
    extract, text, cached = est._extract, est._text_items, cache.enabled
    for i, item in enumerate(items):
        if is_missing(item, text=text):
            continue
        try:
            with opened(item, policy) as given:
                key = None
                if cached:
                    key, source = item_fingerprint(given, text=text)
                    hit = None if key is None else cache.get(key)
                    if hit is not None and hit.shape == (n_out,):
                        out[i] = hit
                        continue
                else:
                    source = given if text else item_source(given)
                vector = extract(source)
            if not (isinstance(vector, np.ndarray) and vector.ndim == 1 and vector.dtype == dtype):
                vector = np.asarray(vector, dtype=dtype).reshape(-1)
            if vector.shape[0] != n_out:
                raise BadItem(f"gave {vector.shape[0]} features, expected {n_out}")
            if key is not None:
                cache.put(key, vector)
            out[i] = vector
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - every item failure (MemoryError too): one policy
            reason = _reason(exc)
            label = _label(labels, i)
            if est.on_error == "raise":
                raise ItemError(column, start + i, describe_item(item), reason, label) from exc
            failures.append((row_name(start + i, label), describe_item(item), reason))
    return out, failures


class ItemTransformer(TransformerMixin, BaseEstimator):
    """Base class of the per-item extractors (not public).

    Subclasses define ``_check_params``, ``_feature_names`` and ``_extract``,
    and may override ``_fit_items`` (learn from the training items) and
    ``_cache_params`` (the parameters that change the output).
    """

    #: Word for the items in messages.
    _what = "items"
    #: Third-party packages whose versions key the cache.
    _versioned = ()
    #: Items are text (``str`` is content, not a path).
    _text_items = False
    _output_dtype = np.float32

    # -- hooks ---------------------------------------------------------------
    def _check_params(self) -> None:
        """Validate the subclass's own parameters (called by ``fit``)."""

    def _fit_items(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> None:
        """Learn from the training items (most extractors learn nothing).

        ``labels`` are the input's index labels (None: rows are positions),
        for errors that name a row.
        """

    def _feature_names(self) -> list[str]:
        raise NotImplementedError

    def _extract(self, source: Any) -> np.ndarray:
        raise NotImplementedError

    def _cache_params(self) -> dict[str, Any]:
        params = self.get_params(deep=False)
        for name in _NOT_OUTPUT:
            params.pop(name, None)
        return params

    def _file_policy(self) -> FilePolicy | None:
        """How path items are opened (None for text extractors, which open no file)."""
        if self._text_items:
            return None
        max_bytes = getattr(self, "max_file_bytes", MAX_FILE_BYTES)
        return FilePolicy(max_bytes, allowed_roots(getattr(self, "allowed_dirs", None)))

    # -- scikit-learn API ----------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> ItemTransformer:
        """Check the parameters and learn the output layout.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The training column.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        self._check_common_params()
        self._check_params()
        items, column = self._fit_input(X)
        self._fit_items(items, column, index_labels(X))
        self.n_features_out_ = len(self._feature_names())
        return self

    def _check_common_params(self) -> None:
        """Validate ``on_error`` and, where the extractor has them, ``n_jobs`` and ``memory``."""
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")
        n_jobs = getattr(self, "n_jobs", None)
        if n_jobs is not None and not isinstance(n_jobs, (int, np.integer)):
            raise ValueError(f"n_jobs must be an int or None, got {n_jobs!r}")
        cache_location(getattr(self, "memory", None))  # validates the type
        check_max_bytes(getattr(self, "max_file_bytes", None))
        allowed_roots(getattr(self, "allowed_dirs", None))  # each must be a directory

    def _fit_input(self, X: Any) -> tuple[Sequence[Any], str | None]:
        """Read the training column; set ``n_features_in_`` and ``feature_names_in_``."""
        items, column = as_items(X, what=self._what)
        self.n_features_in_ = 1
        if hasattr(X, "columns"):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return items, column

    def transform(self, X: Any) -> np.ndarray:
        """Extract features from every item.

        Parameters
        ----------
        X : sequence of items or one-column 2-D input
            The column to transform.

        Returns
        -------
        ndarray of shape (n_items, n_features_out_)
            One row per item, NaN for missing (and, with ``on_error="nan"``,
            unreadable) items.
        """
        check_is_fitted(self)
        items, column = as_items(X, what=self._what)
        if hasattr(X, "columns") and hasattr(self, "feature_names_in_"):
            got = [str(c) for c in X.columns]
            if got != list(self.feature_names_in_):
                raise ValueError(
                    f"{type(self).__name__} was fitted on column {self.feature_names_in_[0]!r}, "
                    f"got column {got[0]!r}."
                )
        if column is None and hasattr(self, "feature_names_in_"):
            column = str(self.feature_names_in_[0])
        return self._extract_all(items, column, index_labels(X))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Get the names of the output features.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        ndarray of str objects
            One name per output column.
        """
        check_is_fitted(self)
        return np.asarray(self._feature_names(), dtype=object)

    def __sklearn_tags__(self):
        """Declare item input: 1-D strings or objects, NaN allowed as missing."""
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.input_tags.allow_nan = True
        tags.target_tags.required = False
        return tags

    # -- the work ------------------------------------------------------------
    def _warn_failures(
        self,
        failures: Sequence[tuple[Any, str, str]],
        n: int,
        column: str | None,
        became: str = "NaN rows",
    ) -> None:
        """Warn once (``on_error="nan"``) with the count and the first failure.

        A failure is ``(row name, item description, reason)``.
        """
        if not failures:
            return
        row, item, reason = failures[0]
        where = f"{column}: " if column is not None else ""
        warnings.warn(
            f"{where}{len(failures)} of {n} {self._what} could not be read and became "
            f"{became} (first: row {row} ({item}): {reason})",
            ItemWarning,
            stacklevel=5,
        )

    def _cache(self) -> FeatureCache:
        location = cache_location(self.memory)
        token = joblib.hash((type(self).__name__, self._cache_params(), _versions(self._versioned)))
        return FeatureCache(location, type(self).__name__, token)

    def _extract_all(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> np.ndarray:
        n = len(items)
        n_out = len(self._feature_names())
        out = np.full((n, n_out), np.nan, dtype=self._output_dtype)
        if n == 0:
            return out
        workers = joblib.effective_n_jobs(self.n_jobs)
        size = MAX_BATCH if workers == 1 else max(1, min(MAX_BATCH, math.ceil(n / (4 * workers))))
        starts = range(0, n, size)
        cache = self._cache()
        policy = self._file_policy()
        task = joblib.delayed(_extract_batch)
        results = joblib.Parallel(n_jobs=self.n_jobs, return_as="generator")(
            task(
                self,
                items[s : s + size],
                s,
                column,
                cache,
                n_out,
                None if labels is None else labels[s : s + size],
                policy,
            )
            for s in starts
        )
        failures: list[tuple[Any, str, str]] = []
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="item", desc=type(self).__name__)
        for start, (rows, failed) in zip(starts, results, strict=True):
            out[start : start + rows.shape[0]] = rows
            failures.extend(failed)
            if bar is not None:
                bar.update(rows.shape[0])
        if bar is not None:
            bar.close()
        self._warn_failures(failures, n, column)
        return out
