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

A block's column names also tell the shape of one row where an mmsk
extractor made them (:func:`infer_shape`): the trainable towers read it
from there, and :func:`resolve_towers` turns the estimators' ``towers``
parameter into one checked tower choice per block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from mmsk.fusion.encoders import SEQUENCE_KINDS, check_tower

__all__ = [
    "BlockLayout",
    "find_layout",
    "infer_shape",
    "is_dict",
    "prefix_blocks",
    "resolve_towers",
]

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


# -- shapes and towers ---------------------------------------------------------------------

# The column names of mmsk's extractors (after any ``name__`` prefixes):
# ImagePixels ``px_{row}_{col}_{band}`` (band by band, then row-major),
# LogMelSpectrogram ``logmel_{mel}_{frame}`` (mel-major), TokenSequences ``tok_{i}``.
_PIXEL = re.compile(r"px_(\d+)_(\d+)_(\w+)")
_LOGMEL = re.compile(r"logmel_(\d+)_(\d+)")
_TOKEN = re.compile(r"tok_(\d+)")


def infer_shape(feature_names: Sequence[Any] | None) -> tuple[str, tuple[int, ...]] | None:
    """Read the shape of one row of a block from the column names mmsk's extractors give.

    Any ``name__`` prefixes (a ColumnTransformer's) are ignored. The names
    must be the extractor's complete set, in its order:

    - ``px_{row}_{col}_{band}`` (``ImagePixels``: band by band, each
      row-major) -> ``("image", (C, H, W))``, the bands in order of
      appearance;
    - ``logmel_{mel}_{frame}`` (``LogMelSpectrogram``, mel-major) ->
      ``("image", (1, n_mels, n_frames))``;
    - ``tok_{i}`` (``TokenSequences``) -> ``("tokens", (max_len,))``.

    Parameters
    ----------
    feature_names : sequence of str or None
        The block's column names.

    Returns
    -------
    (kind, shape) or None
        ``kind`` is ``"image"`` or ``"tokens"``; None when the names are not
        such a complete set (or there are none).

    Examples
    --------
    >>> from mmsk.fusion.blocks import infer_shape
    >>> names = [f"image__px_{r}_{c}_{b}" for b in "RGB" for r in range(2) for c in range(3)]
    >>> infer_shape(names)
    ('image', (3, 2, 3))
    >>> infer_shape(["logmel_00_000", "logmel_00_001", "logmel_01_000", "logmel_01_001"])
    ('image', (1, 2, 2))
    >>> infer_shape(["text__tok_000", "text__tok_001"])
    ('tokens', (2,))
    >>> infer_shape(["audio__mfcc_00_mean"]) is None
    True
    """
    if feature_names is None or len(feature_names) == 0:
        return None
    names = [str(name).rpartition("__")[2] for name in feature_names]
    for pattern in (_PIXEL, _LOGMEL, _TOKEN):
        matches = [pattern.fullmatch(name) for name in names]
        if not all(matches):
            continue
        groups = [m.groups() for m in matches if m is not None]
        if pattern is _TOKEN:
            ok = [int(g[0]) for g in groups] == list(range(len(groups)))
            return ("tokens", (len(groups),)) if ok else None
        n_rows = max(int(g[0]) for g in groups) + 1
        n_cols = max(int(g[1]) for g in groups) + 1
        if pattern is _LOGMEL:
            found = [(int(m), int(f)) for m, f in groups]
            expected = [(m, f) for m in range(n_rows) for f in range(n_cols)]
            return ("image", (1, n_rows, n_cols)) if found == expected else None
        bands = list(dict.fromkeys(g[2] for g in groups))
        found_px = [(b, int(r), int(c)) for r, c, b in groups]
        expected_px = [(b, r, c) for b in bands for r in range(n_rows) for c in range(n_cols)]
        return ("image", (len(bands), n_rows, n_cols)) if found_px == expected_px else None
    return None


def _show(feature_names: Sequence[Any] | None) -> str:
    if feature_names is None or len(feature_names) == 0:
        return "X has no column names"
    return f"columns like {str(feature_names[0])!r}"


def resolve_towers(
    towers: Any,
    names: Sequence[str],
    dims: Sequence[int],
    feature_names: Sequence[Sequence[Any] | None],
    *,
    hidden_units: int,
    n_layers: int,
) -> list[tuple[str, dict[str, Any]]]:
    """Turn the estimators' ``towers`` parameter into a checked tower per block.

    Parameters
    ----------
    towers : None, str, (str, dict) or dict
        None: an MLP for every block. A kind (``"mlp"``, ``"conv"``,
        ``"gru"``, ``"lstm"``, ``"transformer"``) or a ``(kind, options)``
        pair: that tower for every block. A dict: block name -> a kind or a
        ``(kind, options)`` pair; blocks not in it get an MLP.
    names : sequence of str
        The block names, in tower order.
    dims : sequence of int
        The width of each block.
    feature_names : sequence of (sequence of str or None)
        Each block's column names (None when unknown), read by
        :func:`infer_shape`.
    hidden_units, n_layers : int
        The estimator's sizes, the defaults of the MLP options (and of a
        recurrent tower's ``hidden_units``).

    Returns
    -------
    list of (str, dict)
        Per block, the kind and all its options. A conv tower's ``shape``
        is set (given, or read from the names); a sequence tower's
        ``vocab_size`` stays None unless given (``fit`` reads it from the
        data).

    Raises
    ------
    ValueError
        For a malformed ``towers``, an unknown block name or kind, a conv
        tower whose block shape is unknown or does not fit, a conv tower on
        token ids or a sequence tower on an image-like block.

    Examples
    --------
    >>> from mmsk.fusion.blocks import resolve_towers
    >>> pixels = [f"px_{r}_{c}_L" for r in range(4) for c in range(4)]
    >>> specs = resolve_towers({"image": "conv"}, ["image", "audio"], [16, 5],
    ...                        [pixels, None], hidden_units=8, n_layers=1)
    >>> specs[0]
    ('conv', {'shape': (1, 4, 4), 'depth': 2, 'width': 16, 'kernel_size': 3})
    >>> specs[1]
    ('mlp', {'hidden_units': 8, 'n_layers': 1})
    """
    if towers is None:
        chosen: dict[str, Any] = dict.fromkeys(names, "mlp")
    elif isinstance(towers, str | tuple | list):
        chosen = dict.fromkeys(names, towers)
    elif isinstance(towers, Mapping):
        unknown = [key for key in towers if key not in names]
        if unknown:
            raise ValueError(
                f"towers has an entry for {unknown[0]!r}, but X has no block of that "
                f"name; its blocks are {list(names)}"
            )
        chosen = {name: towers.get(name, "mlp") for name in names}
    else:
        raise ValueError(
            "towers must be None, a tower kind (str), a (kind, options) pair or a dict of "
            f"block name -> kind or (kind, options), got {towers!r}"
        )
    out = []
    for name, dim, cols in zip(names, dims, feature_names, strict=True):
        where = f"towers[{name!r}]" if isinstance(towers, Mapping) else f"towers={towers!r}"
        kind, options = check_tower(chosen[name], where)
        for key, default in (("hidden_units", hidden_units), ("n_layers", n_layers)):
            if options.get(key, 0) is None:
                options[key] = default
        found = infer_shape(cols)
        if kind == "conv":
            if options["shape"] is None:
                if found is None or found[0] != "image":
                    what = (
                        f"holds token ids ({_show(cols)}); use 'gru', 'lstm' or 'transformer'"
                        if found is not None
                        else f"has no shape that can be read from its column names "
                        f"({_show(cols)}); conv towers read the complete names of ImagePixels "
                        f"(px_{{row}}_{{col}}_{{band}}) and LogMelSpectrogram "
                        f"(logmel_{{mel}}_{{frame}}), else pass the shape: "
                        f"towers={{{name!r}: ('conv', {{'shape': (C, H, W)}})}}"
                    )
                    raise ValueError(
                        f"{where}: a conv tower needs an image-like block; block {name!r} {what}"
                    )
                options["shape"] = found[1]
            size = int(np.prod(options["shape"]))
            if size != dim:
                raise ValueError(
                    f"{where}: shape {options['shape']} holds {size} values per row, but "
                    f"block {name!r} has {dim} columns"
                )
        elif kind == "pretrained":
            _check_pretrained_block(name, dim, cols, where)
        elif kind == "pretrained_image":
            from mmsk.fusion.pretrained_image import check_image_block

            check_image_block(options, name, dim, found, where, _show(cols))
        elif kind in SEQUENCE_KINDS and found is not None and found[0] == "image":
            raise ValueError(
                f"{where}: a {kind!r} tower reads token ids, but block {name!r} is an "
                f"image-like grid ({_show(cols)}); use 'conv' or 'mlp' for it"
            )
        out.append((kind, options))
    return out


def _check_pretrained_block(name: str, dim: int, cols: Sequence[Any] | None, where: str) -> None:
    """Check that a pretrained tower's block is ``ids_000 ... mask_000 ...`` (PretrainedTokens)."""
    half = dim // 2
    width = max(3, len(str(half - 1)))
    expected = [f"{part}_{i:0{width}d}" for part in ("ids", "mask") for i in range(half)]
    names = None if cols is None else [str(c).rpartition("__")[2] for c in cols]
    if dim % 2 or (names is not None and names != expected):
        got = _show(cols) if cols is not None else f"{dim} columns"
        raise ValueError(
            f"{where}: a 'pretrained' tower reads the token ids and attention mask that "
            f"PretrainedTokens makes (columns ids_000 ... then mask_000 ...), but block "
            f"{name!r} has {got}"
        )
