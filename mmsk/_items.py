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
    "index_labels",
    "is_missing",
    "item_fingerprint",
    "item_source",
    "valid_text",
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
    example ``audio: row 17 ('clips/x.wav'): file not found``. The row is the
    input's index label when it has one (a pandas input whose index is not
    ``0 .. n-1``, such as a cross-validation fold), else the position.

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
    label : object or None, default=None
        The row's index label, shown instead of the position when given.

    Examples
    --------
    >>> from mmsk._items import ItemError
    >>> str(ItemError("audio", 17, "'clips/x.wav'", "file not found"))
    "audio: row 17 ('clips/x.wav'): file not found"
    >>> str(ItemError("audio", 2, "'x.wav'", "file not found", label="clip-9"))
    "audio: row 'clip-9' ('x.wav'): file not found"
    """

    def __init__(self, column: str | None, row: int, item: str, reason: str, label: Any = None):
        self.column = column
        self.row = row
        self.item = item
        self.reason = reason
        self.label = label
        prefix = f"{column}: " if column is not None else ""
        super().__init__(f"{prefix}row {row_name(row, label)} ({item}): {reason}")

    def __reduce__(self):
        return (type(self), (self.column, self.row, self.item, self.reason, self.label))


def row_name(row: int, label: Any = None) -> str:
    """How a message names a row: its index label when there is one, else its position.

    Examples
    --------
    >>> from mmsk._items import row_name
    >>> row_name(3), row_name(3, 15), row_name(3, "b")
    ('3', '15', "'b'")
    """
    if label is None:
        return str(row)
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return str(int(label))
    return describe_item(label.item() if isinstance(label, np.generic) else label, width=40)


def index_labels(X: Any) -> list[Any] | None:
    """Return the index labels of a pandas input, or None when they are the positions.

    None for anything that is not pandas, and for a default index
    (``0 .. n-1``), where a label and a position are the same.

    Examples
    --------
    >>> import pandas as pd
    >>> from mmsk._items import index_labels
    >>> index_labels(pd.Series(["a", "b"])) is None
    True
    >>> index_labels(pd.Series(["a", "b"], index=[10, 11]))
    [10, 11]
    """
    index = getattr(X, "index", None)
    if index is None or not hasattr(X, "iloc"):
        return None
    n = len(index)
    if n == 0 or (type(index).__name__ == "RangeIndex" and index.start == 0 and index.step == 1):
        return None
    labels = index.tolist()
    if labels == list(range(n)):
        return None
    return labels


def is_missing(item: Any, *, text: bool = False) -> bool:
    """Tell whether ``item`` is a missing value (None, NaN, pd.NA, NaT, "").

    The empty string is missing for every extractor (an empty CSV cell, a
    path or a text left out). For text extractors (``text=True``) empty
    bytes are missing too; for media, empty bytes are an empty file, an
    error.

    Examples
    --------
    >>> from mmsk._items import is_missing
    >>> [is_missing(v) for v in (None, float("nan"), "", "a.wav", 0.0, b"")]
    [True, True, True, False, False, False]
    >>> is_missing(b"", text=True)
    True
    """
    if item is None:
        return True
    if isinstance(item, str):
        return not item
    if isinstance(item, (bytes, bytearray)):
        return text and not item
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


def valid_text(text: str) -> str:
    r"""Return ``text`` if it is valid Unicode, else raise :class:`BadItem`.

    A Python ``str`` can hold lone surrogates (``"\ud800"``, from
    ``surrogateescape`` decoding or broken JSON) that no UTF-8 file, JSON
    writer or tokenizer accepts; every text extractor refuses them as an
    item error, the same way.

    Examples
    --------
    >>> from mmsk._items import valid_text
    >>> valid_text("ok")
    'ok'
    >>> valid_text("bad \ud800 text")
    Traceback (most recent call last):
    ...
    mmsk._items.BadItem: not valid Unicode text: a lone surrogate '\ud800' at character 4
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a character"
        raise BadItem(f"not valid Unicode text: {kind} {char!r} at character {exc.start}") from None
    return text


def item_fingerprint(item: Any, *, text: bool = False) -> tuple[str | None, Any]:
    """Hash an item's content for the feature cache.

    A path (or an open binary file) is hashed by the bytes of its file (so
    a renamed or copied file hits the cache, and an edited file misses it);
    a path is read as :func:`mmsk._files.read_regular` reads it (a regular
    file of at most its default size); bytes by themselves; an
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
    if isinstance(item, (str, Path, os.PathLike)) or hasattr(item, "read"):
        if hasattr(item, "read"):
            data = item.read()
        else:
            from ._files import read_regular  # (it imports this module)

            data = read_regular(os.fspath(item))
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
