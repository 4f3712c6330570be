"""The extractor base class: item input, batched parallel extraction, caching, errors.

Every per-modality extractor subclasses :class:`ItemTransformer` and writes
three small hooks: ``_check_params`` (validate its parameters, in ``fit``),
``_feature_names`` (the output names) and ``_extract`` (one decoded item to
one 1-D vector). Everything else — accepting 1-D or one-column input,
missing values, the error policy, joblib batches, the tqdm bar and the
content-addressed cache — lives here once.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import joblib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._batching import MAX_BATCH, batch_size
from ._cache import PATH_KEYS, FeatureCache, cache_location, cache_token
from ._extract import (  # noqa: F401 (re-exported for _embed and the text extractors)
    _extract_batch,
    _extract_keyed_batch,
    _extract_wire_batch,
    _is_path,
    _label,
    _param_names,
    _reason,
    _same_params,
    keyed_path,
    known_key,
    opened,
    path_key,
)
from ._files import MAX_FILE_BYTES, FilePolicy, allowed_roots, check_max_bytes
from ._items import (
    ON_ERROR_CHOICES,
    BadItem,
    as_items,
    index_labels,
    is_missing,
)

__all__ = ["MAX_BATCH", "BadItem", "ItemTransformer", "ItemWarning"]


@functools.cache
def _sends_wire_rows(cls: type) -> bool:
    """Whether workers of ``cls`` send rows in its ``_wire_dtype``.

    Only if the class that defines the ``_extract`` in use also defines
    ``_extract_wire``: a subclass that overrides ``_extract`` alone gets its
    own rows, not those of its parent's wire form.
    """
    if getattr(cls, "_wire_dtype", None) is None:
        return False
    owner = next(klass for klass in cls.__mro__ if "_extract" in vars(klass))
    return "_extract_wire" in vars(owner) and "_from_wire" in vars(owner)


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
    #: BLAS threads while a batch is extracted (set once per batch); None leaves BLAS alone.
    _blas_threads: int | None = None
    #: Path items reach ``_extract`` as their bytes in memory (one read), not as open files.
    _whole_files = False
    #: A smaller dtype in which joblib workers send rows back and the cache stores them
    #: (None: the output dtype): the subclass's ``_extract_wire`` gives a row in it,
    #: ``_from_wire(rows, out=None)`` maps rows to the output exactly as ``_extract``
    #: would have computed them.
    _wire_dtype: Any = None

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
        roots = allowed_roots(getattr(self, "allowed_dirs", None))
        return FilePolicy(max_bytes, roots, whole=self._whole_files)

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
        n_jobs = self._n_jobs()
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
        return self._transform_values(X)

    def _transform_values(self, X: Any) -> np.ndarray:
        """Return what :meth:`transform` returns before ``set_output`` wraps it (an ndarray).

        :class:`~mmsk.compose.MultimodalColumnTransformer` calls this
        directly where it joins the blocks itself (it names the columns once,
        for all blocks).
        """
        if "n_features_out_" not in self.__dict__:  # set by fit: fitted (checked in microseconds)
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
        if "n_features_out_" not in self.__dict__:  # set by fit: fitted
            check_is_fitted(self)
        return self._names_out().copy()

    def _names_out(self) -> np.ndarray:
        """Return the output names (object array), remembered while the parameters stay equal.

        Building the names (thousands of strings for an image) is most of
        what one-row ``get_feature_names_out`` costs; the names depend only on
        the parameters and the fitted attributes, so they are built again
        only when one of those changes (or cannot be compared).
        """
        state = self.__dict__
        params = tuple(state.get(name) for name in _param_names(type(self)))
        params += tuple(
            (k, v) for k, v in state.items() if k.endswith("_") and not k.startswith("_")
        )
        memo = self.__dict__.get("_names_memo")
        if memo is not None and _same_params(memo[0], params):
            return memo[1]
        names = np.asarray(self._feature_names(), dtype=object)
        self._names_memo = (params, names)
        return names

    def __getstate__(self) -> dict[str, Any]:
        """Leave the remembered names out of the pickled state."""
        state = super().__getstate__()
        state.pop("_names_memo", None)
        return state

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

    def _n_out(self) -> int:
        n_out = self.__dict__.get("n_features_out_")
        return len(self._feature_names()) if n_out is None else int(n_out)

    def _stored_dtype(self) -> np.dtype:
        """Return the dtype of the rows the cache holds: the wire dtype where there is one.

        8-bit pixels are a quarter of their float32 output: a quarter of the
        bytes to read, check and hold per hit; ``_from_wire`` maps them to
        the output exactly as an extraction would.
        """
        wire = _sends_wire_rows(type(self))
        return np.dtype(self._wire_dtype if wire else self._output_dtype)

    def _cache_token(self, n_out: int) -> str:
        """Hash of what makes the output: class, parameters, library versions, stored layout."""
        layout = (n_out, self._stored_dtype().str)
        return cache_token(type(self).__name__, self._cache_params(), self._versioned, layout)

    def _cache(self, n_out: int) -> FeatureCache | None:
        """Return the feature cache of this setting; None (and no work) when memory is None."""
        if self.memory is None:
            return None
        location = cache_location(self.memory)
        if location is None:
            return None
        return FeatureCache(location, type(self).__name__, self._cache_token(n_out))

    def _n_jobs(self) -> int | None:
        """Return the ``n_jobs`` parameter; 1 for an extractor without one (SentenceEmbedder)."""
        return getattr(self, "n_jobs", 1)

    def _in_process(self, n_tasks: int) -> bool:
        """Tell whether ``n_tasks`` tasks run here, one after the other (not via joblib)."""
        return n_tasks <= 1 or joblib.effective_n_jobs(self._n_jobs()) == 1

    def _run(self, function: Any, tasks: list[tuple[Any, ...]]) -> Any:
        """Yield ``function(*task)`` per task: via joblib when it can run them in parallel.

        An extractor without an ``n_jobs`` parameter (:class:`~mmsk.SentenceEmbedder`:
        its model batches the texts itself) runs its tasks in this process.
        The tasks are batches already, so joblib sends them one by one
        (``batch_size=1``), in order, as workers become free.
        """
        if self._in_process(len(tasks)):
            return (function(*task) for task in tasks)
        call = joblib.delayed(function)
        parallel = joblib.Parallel(n_jobs=self._n_jobs(), batch_size=1, return_as="generator")
        return parallel(call(*task) for task in tasks)

    def _batch_size(self, n: int) -> int:
        return batch_size(n, joblib.effective_n_jobs(self._n_jobs()))

    def _extract_all(
        self, items: Sequence[Any], column: str | None, labels: Sequence[Any] | None = None
    ) -> np.ndarray:
        n = len(items)
        n_out = self._n_out()
        out = np.full((n, n_out), np.nan, dtype=self._output_dtype)
        if n == 0:
            return out
        bar = None
        if self.verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, unit="item", desc=type(self).__name__)
        failures: list[tuple[str, str, str]] = []
        policy = self._file_policy()
        cache = self._cache(n_out)
        size = self._batch_size(n)
        if cache is None and self._in_process(math.ceil(n / size)):
            # One pass here, rows written in place, the bar moved per item.
            progress = None if bar is None else bar.update
            args = (self, items, 0, column, n_out, labels, policy, out, progress)
            failures.extend(_extract_batch(*args)[1])
        elif cache is None:
            starts = range(0, n, size)
            tasks = [
                (
                    self,
                    items[s : s + size],
                    s,
                    column,
                    n_out,
                    None if labels is None else labels[s : s + size],
                    policy,
                )
                for s in starts
            ]
            wire = _sends_wire_rows(type(self))
            results = self._run(_extract_wire_batch if wire else _extract_batch, tasks)
            for start, (rows, failed, *skipped) in zip(starts, results, strict=True):
                block = out[start : start + rows.shape[0]]
                if wire:  # the rows came as the wire dtype, mapped in place; skipped ones NaN
                    self._from_wire(rows, out=block)
                    block[skipped[0]] = np.nan
                else:
                    block[...] = rows
                failures.extend(failed)
                if bar is not None:
                    bar.update(rows.shape[0])
        else:
            pending = self._cached_rows(items, cache, out, policy)
            if bar is not None:
                bar.update(n - len(pending))
            size = self._batch_size(len(pending))
            batches = [pending[s : s + size] for s in range(0, len(pending), size)]
            # Here: the bar moves per item; in joblib workers: per batch, as each one ends.
            progress = bar.update if bar is not None and self._in_process(len(batches)) else None
            tasks = [
                (
                    self,
                    batch,
                    column,
                    cache,
                    n_out,
                    None if labels is None else [labels[row] for row, _, _ in batch],
                    policy,
                    progress,
                )
                for batch in batches
            ]
            results = self._run(_extract_keyed_batch, tasks) if tasks else ()
            read: list[Any] = []  # path-key records of the files read
            for batch, (rows, failed, keys, records, bad) in zip(batches, results, strict=True):
                kept = [j for j, key in enumerate(keys) if key is not None]
                cache.remember([keys[j] for j in kept], rows[kept])  # as stored (wire dtype)
                if rows.dtype != out.dtype:
                    rows = self._from_wire(rows)
                    rows[bad] = np.nan
                out[[row for row, _, _ in batch]] = rows
                failures.extend(failed)
                read.extend(records)
                if bar is not None and progress is None:
                    bar.update(len(batch))
            cache.remember_paths(read)
        if bar is not None:
            bar.close()
        self._warn_failures(failures, n, column)
        return out

    def _cached_rows(
        self,
        items: Sequence[Any],
        cache: FeatureCache,
        out: np.ndarray,
        policy: FilePolicy | None = None,
    ) -> list[tuple[int, Any, str | None]]:
        """Fill ``out`` with the rows the cache holds; return the others as ``(row, item, key)``.

        A remembered path is served only if it passes ``policy`` now
        (:func:`known_key`); else it is read (and refused) where it is extracted.
        Paths this process does not know are looked up once in the path keys
        stored at the cache's location (one ``stat`` each instead of a read).
        """
        text = self._text_items
        if not text and (policy is None or policy.roots is None):
            if all(type(item) is str and item for item in items):  # paths: the common case
                return self._cached_path_rows(items, cache, out, policy)
        rows, keys, pending = [], [], []
        load = not text  # stored path keys: looked up at the first path this process does not know
        for i, item in enumerate(items):
            if type(item) is str and not text:  # a path, the common case: one stat
                if not item:
                    continue  # "" is missing
                key = path_key(item, policy)
            elif is_missing(item, text=text):
                continue
            else:
                key = known_key(item, text, policy)
            if key is None and load and _is_path(item) and item not in PATH_KEYS:
                cache.load_paths()
                load = False
                key = known_key(item, text, policy)
            if key is None:
                pending.append((i, item, None))
            else:
                rows.append(i)
                keys.append(key)
        return self._fill_hits(items, cache, out, rows, keys, pending)

    def _cached_path_rows(
        self,
        items: Sequence[str],
        cache: FeatureCache,
        out: np.ndarray,
        policy: FilePolicy | None,
    ) -> list[tuple[int, Any, str | None]]:
        """:meth:`_cached_rows` for a column of paths without allowed directories: one pass."""
        max_bytes = None if policy is None else policy.max_bytes
        found = PATH_KEYS.lookup_many(items, max_bytes)
        unknown = [i for i, key in enumerate(found) if key is None]
        if unknown and any(items[i] not in PATH_KEYS for i in unknown):
            cache.load_paths()  # stored path keys, once, at the first path this process lacks
            again = PATH_KEYS.lookup_many([items[i] for i in unknown], max_bytes)
            for i, key in zip(unknown, again, strict=True):
                found[i] = key
        rows = [i for i, key in enumerate(found) if key is not None]
        keys = [found[i] for i in rows]
        pending = [(i, items[i], None) for i, key in enumerate(found) if key is None]
        return self._fill_hits(items, cache, out, rows, keys, pending)

    def _fill_hits(
        self,
        items: Sequence[Any],
        cache: FeatureCache,
        out: np.ndarray,
        rows: list[int],
        keys: list[str],
        pending: list[tuple[int, Any, str | None]],
    ) -> list[tuple[int, Any, str | None]]:
        """Write the cache's rows for ``keys`` into ``out``; return ``pending`` and the misses.

        Rows stored in the wire dtype are mapped to the output with one
        ``_from_wire`` call for all the hits.
        """
        if not keys:
            return pending
        stored = self._stored_dtype()
        hits = cache.get_many(keys, out.shape[1], stored)
        wire = stored != out.dtype
        if len(rows) == len(out) and out.flags.c_contiguous and all(h is not None for h in hits):
            if wire:  # every row held (rows 0..n-1): one copy and one mapping
                self._from_wire(np.stack(hits), out=out)
            else:  # one copy
                np.concatenate(hits, out=out.reshape(-1))
            return []
        found, held = [], []
        for i, key, hit in zip(rows, keys, hits, strict=True):
            if hit is None:
                pending.append((i, items[i], key))
            else:
                found.append(i)
                held.append(hit)
        if held:
            out[found] = self._from_wire(np.stack(held)) if wire else np.stack(held)
        pending.sort(key=lambda entry: entry[0])
        return pending
