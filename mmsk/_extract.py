"""One batch of items through an extractor: the per-item loop, the error policy, keyed reads.

The module-level half of :mod:`mmsk._base`: what runs per item (in the calling
process or in a joblib worker), kept apart from the :class:`~mmsk._base.ItemTransformer`
class, which plans the batches, the cache and the progress bar.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._batching import blas_threads
from ._cache import PATH_KEYS, FeatureCache
from ._cache_paths import signature_of
from ._files import FilePolicy, confine
from ._items import (
    BadItem,
    ItemError,
    describe_item,
    is_missing,
    item_fingerprint,
    item_source,
    row_name,
)

if TYPE_CHECKING:  # the class that calls these; imported for the annotations only
    from ._base import ItemTransformer


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


def keyed_path(item: Any, policy: FilePolicy | None = None) -> tuple[Any, Any, tuple[Any, ...]]:
    """Read a path item once: its content key, a decodable source, its path-key record.

    The file is opened under ``policy`` (None: the default policy) before a
    byte is hashed: regular files only, the size limit, the allowed
    directories. The record ``(path, signature, key, started_ns)`` — the
    signature from the opened file itself — goes to
    :meth:`mmsk._cache_paths.PathKeys.remember` (here, and in the calling
    process, which stores it at the cache's location) so that the file is
    not read again while it is unchanged.
    """
    path = os.fspath(item)
    started = time.time_ns()
    with (FilePolicy() if policy is None else policy).open_file(path) as fh:
        signature = signature_of(os.fstat(fh.fileno()))
        key, source = item_fingerprint(fh)
    record = (path, signature, key, started)
    PATH_KEYS.remember(*record)
    return key, source, record


def known_key(item: Any, text: bool, policy: FilePolicy | None = None) -> str | None:
    """Return the content key of an item where it comes without reading a file, else None.

    A path's key comes from the path memo (one ``stat``), and only if the
    file passes ``policy`` as it is now: its size within the limit and, with
    allowed directories, its resolved path inside one (an unchanged
    signature vouches that it is still the regular file that was read).
    Bytes, arrays, images and texts are hashed in memory. An item that
    cannot be hashed, or a path the policy refuses, gets None and meets the
    error policy where it is extracted.
    """
    if not text and _is_path(item):
        return path_key(os.fspath(item), policy)
    try:
        return item_fingerprint(item, text=text)[0]
    except Exception:  # noqa: BLE001 - reported with its row by the extraction
        return None


def path_key(path: str, policy: FilePolicy | None = None) -> str | None:
    """Return the remembered key of ``path`` if the file is unchanged and passes ``policy`` now."""
    if policy is None:
        return PATH_KEYS.lookup(path)
    key = PATH_KEYS.lookup(path, max_bytes=policy.max_bytes)
    if key is None or policy.roots is None:
        return key
    try:
        confine(path, policy.roots)
    except BadItem:
        return None
    return key


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    return tuple(cls._get_param_names())


def _same_params(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Tell whether two parameter snapshots are equal (an undecidable comparison: not equal)."""
    try:
        return all(x is y or bool(x == y) for x, y in zip(a, b, strict=True))
    except Exception:  # noqa: BLE001 - e.g. arrays compared elementwise
        return False


def _check_vector(vector: Any, dtype: Any, n_out: int) -> np.ndarray:
    if not (isinstance(vector, np.ndarray) and vector.ndim == 1 and vector.dtype == dtype):
        vector = np.asarray(vector, dtype=dtype).reshape(-1)
    if vector.shape[0] != n_out:
        raise BadItem(f"gave {vector.shape[0]} features, expected {n_out}")
    return vector


def _extract_batch(
    est: ItemTransformer,
    items: Sequence[Any],
    start: int,
    column: str | None,
    n_out: int,
    labels: Sequence[Any] | None = None,
    policy: FilePolicy | None = None,
    out: np.ndarray | None = None,
    progress: Any = None,
    skipped: list[int] | None = None,
) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Extract one batch of items (no cache); return its rows and the failures.

    A failure is ``(row name, item description, reason)``; ``labels`` are
    the batch's index labels (None: rows are named by position). ``out``
    (in the calling process) receives the rows in place; ``progress`` is
    called with 1 after each item. BLAS is limited to the extractor's
    ``_blas_threads`` once, around the whole batch. With a ``skipped``
    list, the rows are the extractor's wire form (``_extract_wire``, zeros
    where nothing was extracted) and the positions of the missing and
    failed items are appended to it.
    """
    wire = skipped is not None
    dtype = est._wire_dtype if wire else est._output_dtype
    if out is None:
        out = (
            np.zeros((len(items), n_out), dtype)
            if wire
            else np.full((len(items), n_out), np.nan, dtype)
        )
    failures: list[tuple[str, str, str]] = []
    extract, text = (est._extract_wire if wire else est._extract), est._text_items
    with blas_threads(est._blas_threads):
        for i, item in enumerate(items):
            if is_missing(item, text=text):
                if skipped is not None:
                    skipped.append(i)
                if progress is not None:
                    progress(1)
                continue
            try:
                if policy is not None and _is_path(item):  # the common case, without `opened`
                    with policy.open(item) as fh:
                        vector = extract(fh)
                else:
                    with opened(item, policy) as given:
                        vector = extract(given if text else item_source(given))
                out[i] = _check_vector(vector, dtype, n_out)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - every item failure (MemoryError too): one policy
                reason = _reason(exc)
                label = _label(labels, i)
                if est.on_error == "raise":
                    raise ItemError(column, start + i, describe_item(item), reason, label) from exc
                failures.append((row_name(start + i, label), describe_item(item), reason))
                if skipped is not None:
                    skipped.append(i)
            if progress is not None:
                progress(1)
    return out, failures


def _extract_wire_batch(
    est: ItemTransformer,
    items: Sequence[Any],
    start: int,
    column: str | None,
    n_out: int,
    labels: Sequence[Any] | None = None,
    policy: FilePolicy | None = None,
) -> tuple[np.ndarray, list[tuple[str, str, str]], list[int]]:
    """:func:`_extract_batch` in a joblib worker, rows in the extractor's wire dtype.

    Less to send back to the calling process (8-bit pixels instead of
    float32); it maps them with ``_from_wire`` and makes the rows in the
    returned list of skipped positions (missing or failed items) NaN.
    """
    skipped: list[int] = []
    rows, failures = _extract_batch(
        est, items, start, column, n_out, labels, policy, skipped=skipped
    )
    return rows, failures, skipped


def _extract_keyed_batch(
    est: ItemTransformer,
    batch: Sequence[tuple[int, Any, str | None]],
    column: str | None,
    cache: FeatureCache,
    n_out: int,
    labels: Sequence[Any] | None = None,
    policy: FilePolicy | None = None,
    progress: Any = None,
) -> tuple[np.ndarray, list[tuple[str, str, str]], list[str | None], list[Any], list[int]]:
    """Extract the cache misses of one batch, ``(row, item, key or None)`` each.

    A path whose key the process does not know yet is read once here,
    through ``policy``: its bytes are hashed, looked up in the store and, on
    a miss, decoded. The computed rows go to the store as one segment.
    ``labels`` are the index labels of the batch's entries (None: rows are
    named by position); ``progress`` (in the calling process) is called
    with 1 per item. BLAS is limited once, around the whole batch. Returns
    the rows, the failures ``(row name, item description, reason)``, each
    row's key (None for failures and unkeyed items), the path-key records
    for the calling process and the positions of the failed items. The rows
    are in the dtype the cache stores (:meth:`ItemTransformer._stored_dtype`):
    an extractor with a wire dtype gives its wire rows, zeros where an item
    failed, and the caller maps them (``_from_wire``) and blanks the failed.
    """
    dtype = est._stored_dtype()
    wire = dtype != est._output_dtype  # rows as the cache stores them; failed: zeros, listed
    out = (
        np.zeros((len(batch), n_out), dtype)
        if wire
        else np.full((len(batch), n_out), np.nan, dtype)
    )
    failures: list[tuple[str, str, str]] = []
    failed: list[int] = []
    keys: list[str | None] = [None] * len(batch)
    records: list[Any] = []
    fresh: dict[str, int] = {}
    extract, text = (est._extract_wire if wire else est._extract), est._text_items
    refresh = True
    with blas_threads(est._blas_threads):
        for j, (row, item, key) in enumerate(batch):
            if progress is not None and j:
                progress(1)  # the item before this one is done (it may have ended in `continue`)
            try:
                if key is None and not text and _is_path(item):
                    key, source, record = keyed_path(item, policy)
                    records.append(record)
                    hit = out[fresh[key]] if key in fresh else None
                    if hit is None:
                        hit = cache.get_many([key], n_out, dtype, refresh=refresh)[0]
                        refresh = False
                    if hit is not None:
                        out[j], keys[j] = hit, key
                        continue
                    vector = extract(source)
                elif key is not None and key in fresh:
                    out[j], keys[j] = out[fresh[key]], key
                    continue
                else:
                    with opened(item, policy) as given:
                        vector = extract(given if text else item_source(given))
                out[j] = _check_vector(vector, dtype, n_out)
                if key is not None:
                    fresh[key], keys[j] = j, key
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - every item failure (MemoryError too): one policy
                reason = _reason(exc)
                label = _label(labels, j)
                if est.on_error == "raise":
                    raise ItemError(column, row, describe_item(item), reason, label) from exc
                failures.append((row_name(row, label), describe_item(item), reason))
                failed.append(j)
        if progress is not None and batch:
            progress(1)
    if fresh:
        cache.put_many(list(fresh), out[list(fresh.values())])
    return out, failures, keys, records, failed
