"""Input checks and missing-modality masks: any input -> the *prepared* dict.

The estimators turn any input into a prepared dict: one float32 block per
modality under the keys ``"x0"``, ``"x1"``, ... (a C-contiguous array, or a
CSR matrix for a sparse block; int64 token ids for a sequence tower) and a
boolean ``"mask"`` of shape ``(n_samples, n_modalities)`` that is False
where a row lacks the modality (its block was all-NaN, or all padding for
token ids; those rows are zero-filled). :func:`check_block` validates one
block, :func:`mask_blocks` builds the dict; a NaN inside a present block,
or a token id out of range, is an error naming the modality, row and column.
The names' home is :mod:`mmsk.fusion._data`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.utils import check_array

from mmsk._items import row_name

__all__ = ["MASK", "MAX_TOKEN_ID", "block_key", "check_block", "mask_blocks"]

MASK = "mask"


def block_key(i: int) -> str:
    """Return the prepared-dict key of block ``i`` (``"x0"``, ``"x1"``, ...)."""
    return f"x{i}"


def check_block(block: Any, input_name: str) -> np.ndarray | sparse.csr_matrix:
    """Validate one 2-D block: numeric, finite or NaN, float32, dense or CSR.

    Parameters
    ----------
    block : array-like or sparse matrix of shape (n_samples, n_features)
        One modality's block.
    input_name : str
        Name used in error messages, e.g. ``"X['audio']"``.

    Returns
    -------
    block : ndarray or csr_matrix of dtype float32
        The validated block.

    Examples
    --------
    >>> from mmsk.fusion._data import check_block
    >>> check_block([[1, 2], [3, 4]], "X").dtype
    dtype('float32')
    """
    return check_array(
        block,
        accept_sparse="csr",
        dtype=np.float32,
        ensure_all_finite="allow-nan",
        input_name=input_name,
    )


def _column_label(labels: Sequence[Any] | None, j: int) -> str:
    label = j if labels is None else labels[j]
    return repr(label) if isinstance(label, str) else str(int(label))


def mask_blocks(
    blocks: Sequence[Any],
    names: Sequence[str],
    labels: Sequence[Sequence[Any] | None],
    tokens: Sequence[bool] | None = None,
    rows: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Turn validated blocks into the prepared dict, with the missing-modality mask.

    A row whose block is all-NaN lacks that modality: its mask entry is
    False and its block row is zero-filled (in a copy; the input is never
    written to). A block of token ids (``tokens``) is made dense int64, and
    its all-padding rows (all 0) lack the modality too.

    Parameters
    ----------
    blocks : sequence of ndarray or csr_matrix
        Blocks of float32, one per modality, with the same number of rows.
    names : sequence of str
        Modality names, for error messages.
    labels : sequence of (sequence or None)
        Per block, the column names to show in errors (None: positions).
    tokens : sequence of bool or None, default=None
        Per block, whether it holds token ids for a sequence tower
        (non-negative integers, 0 = padding); None: no block does.
    rows : sequence or None, default=None
        The input's index labels, to name rows in errors by label (None:
        by position).

    Returns
    -------
    prepared : dict
        ``{"x0": block0, ..., "mask": mask}``.

    Raises
    ------
    ValueError
        If a present block has a NaN (naming the modality, column and row),
        a row lacks every modality (naming the row), or a token block holds
        something other than non-negative integers.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._data import mask_blocks
    >>> a = np.array([[1.0, 2.0], [np.nan, np.nan]], dtype="float32")
    >>> b = np.ones((2, 1), dtype="float32")
    >>> prepared = mask_blocks([a, b], ["a", "b"], [None, None])
    >>> prepared["mask"].tolist()
    [[True, True], [False, True]]
    >>> prepared["x0"].tolist()
    [[1.0, 2.0], [0.0, 0.0]]
    """
    n = blocks[0].shape[0]
    mask = np.ones((n, len(blocks)), dtype=bool)
    tokens = [False] * len(blocks) if tokens is None else list(tokens)
    prepared: dict[str, Any] = {}
    for i, (block, name, cols) in enumerate(zip(blocks, names, labels, strict=True)):
        if tokens[i]:
            block = _mask_dense(
                block.toarray() if sparse.issparse(block) else block, i, name, cols, mask, rows
            )
            block = _token_ids(block, name, cols, rows)
            mask[~block.any(axis=1), i] = False
        elif sparse.issparse(block):
            block = _mask_sparse(block, i, name, cols, mask, rows)
        else:
            block = _mask_dense(block, i, name, cols, mask, rows)
        prepared[block_key(i)] = block
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        how = "all-NaN (or all-padding, for token ids)" if any(tokens) else "all-NaN"
        raise ValueError(
            f"row {_row(rows, int(empty[0]))} has no modality: every block of it is {how} "
            f"({empty.size} such row(s)); each row needs at least one of {list(names)}"
        )
    prepared[MASK] = mask
    return prepared


#: Token ids must be below this to pass float32 exactly (the estimators cast X to float32).
MAX_TOKEN_ID = 2**24


def _row(rows: Sequence[Any] | None, row: int) -> str:
    """Name a row in a message: its index label when the input had one, else its position."""
    return row_name(row, None if rows is None else rows[row])


def _token_ids(block: np.ndarray, name: str, cols: Any, rows: Any = None) -> np.ndarray:
    """Check that a (masked, dense) block holds token ids and return it as int64."""
    bad = (block < 0) | (block >= MAX_TOKEN_ID) | (block != np.floor(block))
    if bad.any():
        row, col = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(
            f"modality {name!r}: row {_row(rows, row)} has {float(block[row, col])!r} in column "
            f"{_column_label(cols, col)}; its sequence tower needs token ids, integers in "
            f"[0, {MAX_TOKEN_ID}) (0 = padding, 1 = out of vocabulary), as TokenSequences "
            "gives them"
        )
    return block.astype(np.int64)


def _partial_nan_error(name: str, cols: Any, row: str, col: int) -> ValueError:
    return ValueError(
        f"modality {name!r}: row {row} has NaN in column {_column_label(cols, col)} but "
        "other values present; a missing modality must be all-NaN, so impute NaN "
        "inside a present block first"
    )


def _mask_dense(
    block: np.ndarray, i: int, name: str, cols: Any, mask: np.ndarray, rows: Any = None
) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        suspect = np.flatnonzero(np.isnan(block.sum(axis=1)))
    if suspect.size:
        nan = np.isnan(block[suspect])
        full = nan.all(axis=1)
        if not full.all():
            k = int(np.flatnonzero(~full)[0])
            row = _row(rows, int(suspect[k]))
            raise _partial_nan_error(name, cols, row, int(np.flatnonzero(nan[k])[0]))
        mask[suspect, i] = False
        block = np.array(block, dtype=np.float32, order="C", copy=True)
        block[suspect] = 0.0
    block = np.ascontiguousarray(block, dtype=np.float32)
    if not block.flags.writeable:  # torch.from_numpy warns on read-only memory
        block = block.copy()
    return block


def _mask_sparse(
    block: sparse.csr_matrix, i: int, name: str, cols: Any, mask: np.ndarray, labels: Any = None
) -> sparse.csr_matrix:
    block = sparse.csr_matrix(block, dtype=np.float32)
    nan = np.isnan(block.data)
    if nan.any():
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        counts = np.bincount(rows[nan], minlength=block.shape[0])
        partial = np.flatnonzero((counts > 0) & (counts < block.shape[1]))
        if partial.size:
            row = int(partial[0])
            entry = np.flatnonzero(nan & (rows == row))[0]
            raise _partial_nan_error(name, cols, _row(labels, row), int(block.indices[entry]))
        missing = counts == block.shape[1]
        mask[missing, i] = False
        block = block.copy()
        block.data[missing[rows]] = 0.0
        block.eliminate_zeros()
    return block
