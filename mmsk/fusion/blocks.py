"""Find the modality blocks of the input, learn their layout, find it again.

A *block* is the group of columns that one modality contributes, e.g. the
784 pixel columns of an image and the 40 MFCC statistics of a clip. The
fusion estimators find the blocks by themselves, in this order:

1. an explicit ``modalities=`` mapping, name -> columns (names, a prefix,
   a slice or integer indices);
2. the keys of a dict of 2-D arrays;
3. the ``name__`` prefixes of a DataFrame's columns, which is what
   ``ColumnTransformer(...).set_output(transform="pandas")`` produces;
   columns without a ``__`` go together into one more block, ``"other"``;
4. else the whole input is one block, ``"input"``.

:func:`find_layout` runs in ``fit`` and returns a :class:`BlockLayout`;
:meth:`BlockLayout.split` cuts any later input by that layout and raises a
clear error when the input does not have it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

__all__ = ["BlockLayout", "find_layout", "is_dict", "prefix_blocks"]

#: Name of the block that holds a DataFrame's columns without ``name__`` prefix.
OTHER = "other"
#: Name of the only block of an input with no block structure.
SINGLE = "input"


def is_dict(X: Any) -> bool:
    """Tell a dict of blocks from other input (a DOK sparse matrix is a dict too).

    Parameters
    ----------
    X : object
        Any input.

    Returns
    -------
    bool
        True for a mapping that is not a sparse matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion.blocks import is_dict
    >>> is_dict({"a": np.zeros((2, 2))}), is_dict(np.zeros((2, 2)))
    (True, False)
    """
    return isinstance(X, Mapping) and not sparse.issparse(X)


@dataclass
class BlockLayout:
    """Where each modality's columns are, learned in ``fit``.

    Parameters
    ----------
    names : list of str
        Modality names, in the order of the towers.
    dims : list of int
        Width (number of features) of each block.
    columns : list of ndarray or None
        For a 2-D input: the integer column indices of each block. ``None``
        for a dict input, whose keys are the names.
    source : {"dict", "modalities", "prefix", "single"}
        How the blocks were found.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion.blocks import find_layout
    >>> layout = find_layout(np.zeros((2, 5)), None, {"a": [0, 1], "b": slice(2, 5)})
    >>> layout.names, layout.dims
    (['a', 'b'], [2, 3])
    >>> [block.shape for block in layout.split(np.ones((4, 5)))]
    [(4, 2), (4, 3)]
    """

    names: list[str]
    dims: list[int]
    columns: list[np.ndarray] | None
    source: str

    def split(self, X: Any) -> list[Any]:
        """Cut validated input into its blocks, checking that it has this layout.

        Parameters
        ----------
        X : ndarray, sparse matrix or dict of 2-D arrays
            Input already validated by the estimator: a 2-D array or CSR
            matrix with ``sum(dims)`` columns, or a dict with these names.

        Returns
        -------
        blocks : list of ndarray or sparse matrix
            One 2-D block per modality, in the order of :attr:`names`.

        Raises
        ------
        ValueError
            If a dict lacks a modality, has an unknown one or a block of
            another width, or if a dict is given to a layout learned from a
            2-D input and vice versa.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion.blocks import find_layout
        >>> layout = find_layout({"a": np.zeros((2, 3))}, None, None)
        >>> layout.split({"a": np.ones((5, 3))})[0].shape
        (5, 3)
        """
        if self.columns is None:
            if not is_dict(X):
                raise ValueError(
                    f"this estimator was fitted on a dict of blocks {self.names}; "
                    f"pass a dict with the same keys, not {type(X).__name__}"
                )
            missing = [name for name in self.names if name not in X]
            unknown = [str(key) for key in X if key not in self.names]
            if missing or unknown:
                raise ValueError(
                    f"the dict's keys must be the fitted modalities {self.names}; "
                    f"missing: {missing}, unknown: {unknown}"
                )
            blocks = [X[name] for name in self.names]
            for name, block, dim in zip(self.names, blocks, self.dims, strict=True):
                if block.shape[1] != dim:
                    raise ValueError(
                        f"modality {name!r} has {block.shape[1]} features, but the "
                        f"estimator was fitted with {dim} features for it"
                    )
            return blocks
        if is_dict(X):
            raise ValueError(
                "this estimator was fitted on a 2-D input, not on a dict of blocks; "
                f"pass the same kind of input (its blocks were {self.names})"
            )
        out = []
        for cols in self.columns:
            if len(cols) == cols[-1] - cols[0] + 1 and np.all(np.diff(cols) == 1):
                out.append(X[:, int(cols[0]) : int(cols[-1]) + 1])
            else:
                out.append(X[:, cols])
        return out


def prefix_blocks(feature_names: Sequence[str]) -> dict[str, list[int]]:
    """Group column names by their ``name__`` prefix (text before the first ``__``).

    Columns without ``__`` go together into one block named ``"other"``
    (``"other_"``, ``"other__"``, ... if a prefix already has that name).
    Blocks come in the order of their first column.

    Parameters
    ----------
    feature_names : sequence of str
        Column names, e.g. ``["image__px_0", "audio__mfcc_00_mean"]``.

    Returns
    -------
    blocks : dict of str to list of int
        Block name -> column positions. Empty when no name has a ``__``.

    Examples
    --------
    >>> from mmsk.fusion.blocks import prefix_blocks
    >>> prefix_blocks(["image__px_0", "audio__mfcc_0", "image__px_1", "age"])
    {'image': [0, 2], 'audio': [1], 'other': [3]}
    """
    groups: dict[str, list[int]] = {}
    plain: list[int] = []
    for i, name in enumerate(feature_names):
        prefix, sep, _ = str(name).partition("__")
        if sep and prefix:
            groups.setdefault(prefix, []).append(i)
        else:
            plain.append(i)
    if not groups:
        return {}
    if plain:
        other = OTHER
        while other in groups:
            other += "_"
        # keep the order of first appearance
        groups[other] = plain
        groups = dict(sorted(groups.items(), key=lambda item: item[1][0]))
    return groups


def _select(
    name: str, selector: Any, n_features: int, feature_names: np.ndarray | None
) -> np.ndarray | None:
    """Column positions selected by one entry of ``modalities=``; None if empty slice."""
    if isinstance(selector, slice):
        cols = np.arange(n_features)[selector]
        return cols if len(cols) else None
    if isinstance(selector, str):
        if feature_names is None:
            raise ValueError(
                f"modalities[{name!r}] is the prefix {selector!r}, but X has no column "
                "names; pass a DataFrame or select columns by position"
            )
        cols = np.flatnonzero([str(f).startswith(selector) for f in feature_names])
        if not len(cols):
            raise ValueError(f"modalities[{name!r}]: no column name starts with {selector!r}")
        return cols
    values = np.asarray(selector)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"modalities[{name!r}] must be a prefix, a slice or a non-empty list of "
            f"column names or positions, got {selector!r}"
        )
    if values.dtype == bool:
        if values.size != n_features:
            raise ValueError(
                f"modalities[{name!r}] is a boolean mask of length {values.size}, "
                f"but X has {n_features} features"
            )
        return np.flatnonzero(values)
    if values.dtype.kind in "iu":
        bad = values[(values < -n_features) | (values >= n_features)]
        if bad.size:
            raise ValueError(
                f"modalities[{name!r}]: column position {bad[0]} is out of range for "
                f"X with {n_features} features"
            )
        return values % n_features
    if feature_names is None:
        raise ValueError(
            f"modalities[{name!r}] selects columns by name, but X has no column names; "
            "pass a DataFrame or select columns by position"
        )
    where = {str(f): i for i, f in enumerate(feature_names)}
    unknown = [str(v) for v in values if str(v) not in where]
    if unknown:
        raise ValueError(f"modalities[{name!r}]: no column named {unknown[0]!r} in X")
    return np.array([where[str(v)] for v in values], dtype=np.intp)


def _explicit(
    modalities: Any, n_features: int, feature_names: np.ndarray | None
) -> dict[str, np.ndarray]:
    if not isinstance(modalities, Mapping) or not modalities:
        raise ValueError(
            "modalities must be None or a non-empty dict of name -> columns "
            f"(names, a prefix, a slice or positions), got {modalities!r}"
        )
    blocks: dict[str, np.ndarray] = {}
    owner = np.full(n_features, -1)
    for k, (name, selector) in enumerate(modalities.items()):
        cols = _select(str(name), selector, n_features, feature_names)
        if cols is None:  # an empty slice, e.g. a dropped remainder in output_indices_
            continue
        if len(np.unique(cols)) != len(cols):
            raise ValueError(f"modalities[{name!r}] selects a column twice")
        taken = cols[owner[cols] >= 0]
        if taken.size:
            col = feature_names[taken[0]] if feature_names is not None else taken[0]
            other = list(modalities)[owner[taken[0]]]
            raise ValueError(f"column {col!r} is in two modalities, {other!r} and {name!r}")
        owner[cols] = k
        blocks[str(name)] = np.asarray(cols, dtype=np.intp)
    if not blocks:
        raise ValueError("modalities selects no column at all")
    unused = np.flatnonzero(owner < 0)
    if unused.size:
        shown = [feature_names[i] if feature_names is not None else int(i) for i in unused[:5]]
        raise ValueError(
            f"{unused.size} column(s) of X are in no modality, e.g. {shown}; add them to "
            "modalities= or drop them before the estimator"
        )
    return blocks


def find_layout(X: Any, feature_names: np.ndarray | None, modalities: Any = None) -> BlockLayout:
    """Find the modality blocks of a validated training input.

    Parameters
    ----------
    X : ndarray, sparse matrix or dict of 2-D arrays
        The validated training input.
    feature_names : ndarray of str or None
        Column names of a DataFrame input (``feature_names_in_``), else None.
    modalities : dict or None, default=None
        The estimator's ``modalities`` parameter: name -> a list of column
        names, a name prefix (str), a slice, integer positions or a boolean
        mask. An empty slice is skipped, so a ColumnTransformer's
        ``output_indices_`` can be passed as it is.

    Returns
    -------
    layout : BlockLayout
        Names, widths and columns of the blocks.

    Raises
    ------
    ValueError
        If ``modalities`` is malformed, selects unknown, overlapping or too
        few columns, or is given together with a dict input.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion.blocks import find_layout
    >>> names = np.array(["image__a", "image__b", "audio__c"], dtype=object)
    >>> find_layout(np.zeros((2, 3)), names).names
    ['image', 'audio']
    >>> find_layout(np.zeros((2, 3)), None).names
    ['input']
    """
    if is_dict(X):
        if modalities is not None:
            raise ValueError(
                "modalities= selects columns of a 2-D input; with a dict input the "
                "keys are the modalities already, so leave modalities=None"
            )
        names = list(X)
        return BlockLayout(names, [X[name].shape[1] for name in names], None, "dict")
    n_features = X.shape[1]
    if modalities is not None:
        blocks = _explicit(modalities, n_features, feature_names)
        source = "modalities"
    elif feature_names is not None and (blocks := prefix_blocks(list(feature_names))):
        blocks = {name: np.asarray(cols, dtype=np.intp) for name, cols in blocks.items()}
        source = "prefix"
    else:
        blocks = {SINGLE: np.arange(n_features)}
        source = "single"
    return BlockLayout(
        list(blocks), [len(c) for c in blocks.values()], list(blocks.values()), source
    )
