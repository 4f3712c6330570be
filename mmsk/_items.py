"""Turning a column into items, describing one item, and the error policy.

An *item* is what one cell of a modality column holds: a path (``str`` or
:class:`pathlib.Path`), raw ``bytes``, an in-memory object (a numpy array, a
PIL image) or a missing value (``None``, ``NaN``, ``pd.NA``). Everything here
is modality-agnostic; decoding lives in the modality modules.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BadItem",
    "ItemError",
    "as_items",
    "describe_item",
    "is_missing",
    "item_fingerprint",
    "item_source",
]

ON_ERROR_CHOICES = ("raise", "nan")


class BadItem(ValueError):
    """Raised by a decoder for an item it cannot use; the message is the reason.

    The extractors turn it into an :class:`ItemError` that adds the column,
    the row and the item.

    Examples
    --------
    >>> from mmsk._items import BadItem
    >>> str(BadItem("empty audio (0 samples)"))
    'empty audio (0 samples)'
    """


class ItemError(ValueError):
    """One item of a column could not be read or processed.

    The message names the column (when known), the row and the item, for
    example ``audio: row 17 ('clips/x.wav'): file not found``.

    Parameters
    ----------
    column : str or None
        Name of the column the item came from, if known.
    row : int
        Position of the item in the column (0-based).
    item : str
        Short description of the item, see :func:`describe_item`.
    reason : str
        What went wrong.

    Examples
    --------
    >>> from mmsk._items import ItemError
    >>> str(ItemError("audio", 17, "'clips/x.wav'", "file not found"))
    "audio: row 17 ('clips/x.wav'): file not found"
    """

    def __init__(self, column: str | None, row: int, item: str, reason: str):
        self.column = column
        self.row = row
        self.item = item
        self.reason = reason
        prefix = f"{column}: " if column is not None else ""
        super().__init__(f"{prefix}row {row} ({item}): {reason}")

    def __reduce__(self):
        return (type(self), (self.column, self.row, self.item, self.reason))


def is_missing(item: Any) -> bool:
    """Tell whether ``item`` is a missing value (None, NaN, pd.NA, NaT).

    Examples
    --------
    >>> from mmsk._items import is_missing
    >>> [is_missing(v) for v in (None, float("nan"), "a.wav", 0.0)]
    [True, True, False, False]
    """
    if item is None:
        return True
    if isinstance(item, (float, np.floating)):
        return math.isnan(item)
    name = type(item).__name__
    return name in ("NAType", "NaTType")


def describe_item(item: Any, width: int = 60) -> str:
    """Return a short, readable description of ``item`` for error messages.

    Examples
    --------
    >>> from mmsk._items import describe_item
    >>> describe_item("clips/x.wav")
    "'clips/x.wav'"
    >>> describe_item(b"RIFF....")
    '<8 bytes>'
    """
    if isinstance(item, Path):
        item = str(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<ndarray shape={item.shape} dtype={item.dtype}>"
    if hasattr(item, "mode") and hasattr(item, "size") and hasattr(item, "getbands"):
        return f"<PIL image mode={item.mode} size={item.size}>"
    text = repr(item)
    if len(text) > width:
        if isinstance(item, str):  # keep the file name: elide the middle
            half = (width - 3) // 2
            text = text[:half] + "..." + text[-(width - 3 - half) :]
        else:
            text = text[: width - 3] + "..."
    return text


def _column_name(X: Any) -> str | None:
    if hasattr(X, "columns"):  # (a DataFrame's .name would look for a column "name")
        name = X.columns[0] if len(X.columns) == 1 else None
    else:
        name = getattr(X, "name", None)
    return None if name is None else str(name)


def as_items(X: Any, *, what: str = "items") -> tuple[Sequence[Any], str | None]:
    """Turn ``X`` into a sequence of items and the column name, if known.

    Accepts what scikit-learn's text vectorizers accept, plus a one-column
    2-D input: a list or tuple, a 1-D array, a :class:`pandas.Series`, a
    one-column :class:`pandas.DataFrame` or a ``(n, 1)`` array. A numeric
    array of more dimensions is read as a stack of in-memory items along its
    first axis (``(n, samples)`` waveforms, ``(n, H, W)`` images).

    Parameters
    ----------
    X : array-like
        The column.
    what : str, default="items"
        Word used in error messages ("audio items", "texts", ...).

    Returns
    -------
    items : sequence
        One entry per row.
    column : str or None
        The column's name when ``X`` carries one (Series, DataFrame).

    Raises
    ------
    ValueError
        If ``X`` is a single string or bytes, or has more than one column.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk._items import as_items
    >>> as_items(pd.Series(["a.wav", "b.wav"], name="audio"))
    (['a.wav', 'b.wav'], 'audio')
    >>> as_items([["a.png"], ["b.png"]])
    (['a.png', 'b.png'], None)
    """
    if isinstance(X, (str, bytes, Path)):
        raise ValueError(
            f"Iterable over {what} expected, {type(X).__name__} object received. "
            "Pass a list, a 1-D array, a pandas Series or a one-column DataFrame."
        )
    column = _column_name(X)
    if hasattr(X, "iloc"):  # pandas
        if getattr(X, "ndim", 1) == 2:
            if X.shape[1] != 1:
                raise ValueError(
                    f"Expected one column of {what}, got a DataFrame with {X.shape[1]} "
                    f"columns {list(X.columns)[:5]}. Select one column, e.g. X['{X.columns[0]}'], "
                    "or give a ColumnTransformer a scalar column name."
                )
            X = X.iloc[:, 0]
        return X.tolist(), column
    if isinstance(X, np.ndarray):
        if X.ndim == 0:
            raise ValueError(f"Iterable over {what} expected, got a 0-d array.")
        if X.ndim == 1:
            return list(X), column
        if X.dtype == object or X.dtype.kind in "USO":
            if X.ndim == 2 and X.shape[1] == 1:
                return list(X[:, 0]), column
            raise ValueError(f"Expected one column of {what}, got an array of shape {X.shape}.")
        if X.ndim == 2 and X.shape[1] == 1:
            return list(X[:, 0]), column
        return [X[i] for i in range(X.shape[0])], column
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise ValueError(f"Expected a column of {what}, got a sparse matrix.")
    try:
        items = list(X)
    except TypeError as exc:
        raise ValueError(
            f"Iterable over {what} expected, {type(X).__name__} object received."
        ) from exc
    first = items[0] if items else None
    if isinstance(first, (list, tuple)) and len(first) == 1:
        if any(not isinstance(row, (list, tuple)) or len(row) != 1 for row in items):
            raise ValueError(
                f"Expected one column of {what}: rows of a 2-D list must have length 1."
            )
        items = [row[0] for row in items]
    return items, column


def item_source(item: Any) -> Any:
    """Normalise a path-like or bytes item for decoders.

    Paths become ``str``; ``bytes``-like become a :class:`io.BytesIO`; other
    items are returned unchanged.

    Raises
    ------
    BadItem
        For empty bytes.

    Examples
    --------
    >>> from mmsk._items import item_source
    >>> type(item_source(b"abc")).__name__
    'BytesIO'
    """
    if isinstance(item, (str, Path, os.PathLike)):
        return os.fspath(item)  # opening it says whether it exists: no stat per item
    if isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise BadItem("empty bytes")
        return io.BytesIO(bytes(item))
    return item


def item_fingerprint(item: Any, *, text: bool = False) -> tuple[str | None, Any]:
    """Hash an item's content for the feature cache.

    A path is hashed by the bytes of its file (so a renamed or copied file
    hits the cache, and an edited file misses it); bytes by themselves; an
    array by its dtype, shape and data; a PIL image by its mode, size and
    pixels. The file is read once, and the bytes returned so that the caller
    can decode them without reading the file again.

    Parameters
    ----------
    item : object
        The item.
    text : bool, default=False
        Treat a ``str`` item as text to hash, not as a path.

    Returns
    -------
    key : str or None
        Hex digest of the content; None for an item of a kind it does not
        know (the decoder then says what is wrong with it).
    source : object
        What a decoder should read: a :class:`io.BytesIO` for paths and
        bytes, the item itself otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk._items import item_fingerprint
    >>> item_fingerprint(np.zeros(3))[0] == item_fingerprint(np.zeros(3))[0]
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    if text and isinstance(item, str):
        digest.update(b"text")
        digest.update(item.encode("utf-8", "surrogatepass"))
        return digest.hexdigest(), item
    if isinstance(item, (str, Path, os.PathLike)):
        with open(os.fspath(item), "rb") as fh:
            data = fh.read()
        digest.update(b"bytes")
        digest.update(data)
        return digest.hexdigest(), io.BytesIO(data)
    if isinstance(item, (bytes, bytearray, memoryview)):
        source = item_source(item)
        digest.update(b"bytes")
        digest.update(source.getbuffer())
        return digest.hexdigest(), source
    if isinstance(item, np.ndarray):
        arr = np.ascontiguousarray(item)
        digest.update(f"ndarray{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.view(np.uint8).reshape(-1) if arr.size else b"")
        return digest.hexdigest(), item
    if hasattr(item, "tobytes") and hasattr(item, "mode") and hasattr(item, "size"):
        digest.update(f"pil{item.mode}{item.size}".encode())
        digest.update(item.tobytes())
        return digest.hexdigest(), item
    return None, item
