"""Input checks, missing-modality masks, and the fast in-memory data path.

The estimators turn any input into a *prepared* dict: one float32 block per
modality under the keys ``"x0"``, ``"x1"``, ... (a C-contiguous array, or a
CSR matrix for a sparse block; int64 token ids for a sequence tower) and a
boolean ``"mask"`` of shape ``(n_samples, n_modalities)`` that is False
where a row lacks the modality (its block was all-NaN, or all padding for
token ids; those rows are zero-filled). The module's
``forward(mask, x0, x1, ...)`` takes exactly these keys.

:class:`FusionDataset` holds the prepared dict as tensors made once, and
:class:`BatchIterator` yields whole batches from them by index, so training
pays no per-sample Python overhead (skorch's default ``DataLoader`` indexes
and collates row by row). A sparse block is sliced and densified batch by
batch, never whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from scipy import sparse
from sklearn.utils import check_array
from sklearn.utils.sparsefuncs import mean_variance_axis
from skorch.dataset import Dataset
from torch.utils.data import Subset

from mmsk._items import row_name
from mmsk.fusion._transfer import Stager, one_ahead
from mmsk.fusion._weights import weighted_moments

__all__ = [
    "BatchIterator",
    "FusionDataset",
    "SCALINGS",
    "block_stats",
    "channel_stats",
    "check_block",
    "mask_blocks",
    "scaling_rule",
]

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


def channel_stats(
    prepared: dict[str, Any],
    i: int,
    shape: Sequence[int],
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of an image-like block, per feature.

    A conv tower standardises each channel with one mean and one scale (per
    pixel, a border pixel that is nearly constant would be blown up).

    Parameters
    ----------
    prepared : dict
        The prepared dict from :func:`mask_blocks`.
    i : int
        The block.
    shape : (int, int, int)
        ``(C, H, W)`` of one row, channels first.
    sample_weight : ndarray of shape (n_samples,) or None, default=None
        Row weights: weighted moments over the present rows of positive weight.

    Returns
    -------
    mean, scale : ndarray of shape (C * H * W,)
        Each channel's statistics over its present training rows, repeated
        over the channel's ``H * W`` features; a constant channel gets scale 1.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._data import channel_stats
    >>> x = np.array([[0, 2, 10, 10], [2, 4, 10, 10]], dtype="float32")
    >>> mean, scale = channel_stats({"x0": x, "mask": np.ones((2, 1), bool)}, 0, (2, 1, 2))
    >>> mean.tolist(), scale.tolist()
    ([2.0, 2.0, 10.0, 10.0], [1.4142135381698608, 1.4142135381698608, 1.0, 1.0])
    """
    rows = prepared[MASK][:, i]
    if sample_weight is not None:
        rows = rows & (sample_weight > 0)
    block = prepared[block_key(i)][rows]
    n_channels, size = int(shape[0]), int(shape[1]) * int(shape[2])
    if sample_weight is not None:
        mean, var = weighted_moments(block, sample_weight[rows])
        square = var + mean**2
    elif sparse.issparse(block):
        mean, var = mean_variance_axis(block.astype(np.float64), axis=0)
        square = var + mean**2
    else:
        mean = block.mean(axis=0, dtype=np.float64)
        square = np.square(block, dtype=np.float64).mean(axis=0)
    mean = mean.reshape(n_channels, size).mean(axis=1)
    std = np.sqrt(np.maximum(square.reshape(n_channels, size).mean(axis=1) - mean**2, 0.0))
    std[~(std > 1e-6 * np.maximum(np.abs(mean), 1.0))] = 1.0
    return (
        np.repeat(mean, size).astype(np.float32),
        np.repeat(std, size).astype(np.float32),
    )


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


#: The input scaling rules of ``standardize``, per block.
SCALINGS = ("auto", "standard", "none")

#: The fewest columns of a block that ``"auto"`` takes for a normalised embedding.
MIN_EMBEDDING_WIDTH = 8


def _unit_rows(block: Any, present: np.ndarray) -> bool:
    """Whether a dense block is a normalised embedding: wide, every present row of unit norm."""
    if sparse.issparse(block) or block.ndim != 2 or block.shape[1] < MIN_EMBEDDING_WIDTH:
        return False
    rows = block[present] if not present.all() else block
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    return bool(np.all(np.abs(norms - 1.0) <= 1e-3))


def scaling_rule(value: Any, name: str) -> str:
    """Map one ``standardize`` value (bool or rule name) to a rule of :data:`SCALINGS`.

    Parameters
    ----------
    value : bool or str
        ``True`` means ``"standard"``, ``False`` means ``"none"``.
    name : str
        What is being set, for the error message.

    Returns
    -------
    str
        ``"auto"``, ``"standard"`` or ``"none"``.

    Examples
    --------
    >>> from mmsk.fusion._data import scaling_rule
    >>> scaling_rule(True, "standardize"), scaling_rule("auto", "standardize")
    ('standard', 'auto')
    """
    if isinstance(value, bool | np.bool_):
        return "standard" if value else "none"
    if isinstance(value, str) and value in SCALINGS:
        return value
    raise ValueError(f"{name} must be True, False, 'auto', 'standard' or 'none', got {value!r}")


def block_stats(
    prepared: dict[str, Any],
    n_blocks: int,
    rules: Sequence[str] | None = None,
    sample_weight: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-feature shift and scale of each block over its present rows, by rule.

    The rules (one per block, :data:`SCALINGS`):

    - ``"standard"``: every column to zero mean and unit variance;
    - ``"auto"``: a sparse block (TF-IDF, counts, one-hot) keeps its natural
      scale, and so does a *normalised embedding* (a dense block of at
      least :data:`MIN_EMBEDDING_WIDTH` columns whose present rows all have
      unit L2 norm, to within 1e-3: sentence-transformers or CLIP vectors);
      in any other dense block, a *binary* column (every present value 0
      or 1: one-hot codes, indicators) keeps its scale too, and every other
      column is standardised;
    - ``"none"``: the identity.

    A constant column gets scale 1.

    Parameters
    ----------
    prepared : dict
        The prepared dict from :func:`mask_blocks`.
    n_blocks : int
        Number of blocks.
    rules : sequence of str or None, default=None
        One rule per block; None: ``"standard"`` for every block.
    sample_weight : ndarray of shape (n_samples,) or None, default=None
        Row weights: the moments are weighted, over the present rows of
        positive weight (integer weights give the moments of repeated rows).
    names : sequence of str or None, default=None
        The blocks' modality names, for the error message.

    Returns
    -------
    means, scales : list of ndarray
        Vectors of float32, one per block: the input enters as
        ``(x - mean) / scale``.

    Raises
    ------
    ValueError
        If a modality is missing in every row.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._data import block_stats
    >>> x = np.array([[0.0, 1.0], [2.0, 1.0]], dtype="float32")
    >>> means, scales = block_stats({"x0": x, "mask": np.ones((2, 1), bool)}, 1)
    >>> means[0].tolist(), scales[0].tolist()
    ([1.0, 1.0], [1.0, 1.0])
    >>> onehot = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype="float32")
    >>> means, _ = block_stats({"x0": onehot, "mask": np.ones((3, 1), bool)}, 1, ["auto"])
    >>> means[0].tolist()
    [0.0, 0.0]
    """
    mask = prepared[MASK]
    rules = ["standard"] * n_blocks if rules is None else list(rules)
    means, scales = [], []
    for i in range(n_blocks):
        block = prepared[block_key(i)]
        present = mask[:, i]
        if sample_weight is not None:
            present = present & (sample_weight > 0)
        if not present.any():
            what = f"block {i}" if names is None else f"modality {names[i]!r}"
            weighted = "" if sample_weight is None else " of positive sample_weight"
            raise ValueError(
                f"{what} is missing (all-NaN, or all-padding for token ids) in every training "
                f"row{weighted}: there is nothing to learn it from; drop it, or check how its "
                "column was read (every item unreadable with on_error='nan'?)"
            )
        rule = rules[i]
        width = block.shape[1]
        if rule == "none" or (
            rule == "auto" and (sparse.issparse(block) or _unit_rows(block, present))
        ):
            means.append(np.zeros(width, dtype=np.float32))
            scales.append(np.ones(width, dtype=np.float32))
            continue
        if not present.all():
            block = block[present]
        if sample_weight is not None:
            mean, var = weighted_moments(block, sample_weight[present])
            std = np.sqrt(var)
        elif sparse.issparse(block):
            mean, var = mean_variance_axis(block.astype(np.float64), axis=0)
            std = np.sqrt(var)
        else:
            mean = block.mean(axis=0, dtype=np.float64)
            std = block.std(axis=0, dtype=np.float64)
        std[~(std > 1e-12)] = 1.0
        if rule == "auto":
            binary = ((block == 0) | (block == 1)).all(axis=0)
            mean[binary], std[binary] = 0.0, 1.0
        means.append(mean.astype(np.float32))
        scales.append(std.astype(np.float32))
    return means, scales


class FusionDataset(Dataset):
    """A prepared dict and its target, held as tensors made once.

    A :class:`skorch.dataset.Dataset`, so skorch's scoring callbacks find
    ``X`` and ``y``; :meth:`batch` is the fast path.

    Parameters
    ----------
    X : dict
        The prepared dict (``"x0"``, ..., ``"mask"``), see the module docstring.
    y : ndarray or None, default=None
        Encoded target, or None when predicting.
    device : str, torch.device or None, default=None
        The compute device. The dense blocks and the target go there once
        (when they take at most ``max_device_bytes``), so a GPU gathers
        batches without host-to-device copies. None: the CPU.
    max_device_bytes : int, default=2**31
        Above this size the data stay in host memory and each batch is
        gathered into pinned memory and copied without blocking
        (:class:`~mmsk.fusion._transfer.Stager`); :class:`BatchIterator`
        issues the copy of the next batch before the current one is used.

    Attributes
    ----------
    X, y : dict, ndarray or None
        The data as given, for skorch's ``data_from_dataset``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from mmsk.fusion._data import FusionDataset
    >>> X = {"x0": np.ones((3, 2), dtype="float32"), "mask": np.ones((3, 1), bool)}
    >>> ds = FusionDataset(X, np.arange(3))
    >>> xb, yb = ds.batch(torch.tensor([2, 0]))
    >>> xb["x0"].shape, yb.tolist()
    (torch.Size([2, 2]), [2, 0])
    """

    def __init__(
        self,
        X: dict[str, Any],
        y: np.ndarray | None = None,
        device: Any = None,
        max_device_bytes: int = 2**31,
    ) -> None:
        super().__init__(X, y)  # skorch's: X, y for data_from_dataset and scoring
        self._tensors = {
            key: value if sparse.issparse(value) else torch.from_numpy(np.asarray(value))
            for key, value in X.items()
        }
        self._y = None if y is None else torch.from_numpy(np.asarray(y))
        self._n = X[MASK].shape[0]
        self.device = torch.device("cpu")
        dense = [t for t in self._tensors.values() if isinstance(t, torch.Tensor)]
        size = sum(t.numel() * t.element_size() for t in dense)
        device = None if device is None else torch.device(device)
        usable = device is not None and (device.type != "cuda" or torch.cuda.is_available())
        target = device if usable and device.type != "cpu" else self.device
        on_device = target != self.device and size <= max_device_bytes
        self._stager = Stager(target, side_stream=not on_device)
        if on_device:
            self.device = target
            self._tensors = {
                key: t.to(self.device) if isinstance(t, torch.Tensor) else t
                for key, t in self._tensors.items()
            }
            self._y = None if self._y is None else self._y.to(self.device)

    @property
    def staged(self) -> bool:
        """Whether batches travel from host memory to another compute device."""
        return self._stager.target != self.device

    def __len__(self) -> int:
        """Return the number of rows."""
        return self._n

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], Any]:
        """Return one row (the slow path, for a plain ``DataLoader``)."""
        xi = {
            key: torch.from_numpy(value[i].toarray()[0]) if sparse.issparse(value) else value[i]
            for key, value in self._tensors.items()
        }
        return xi, (0 if self._y is None else self._y[i])

    def batch(
        self, index: torch.Tensor | slice, host_index: torch.Tensor | slice | None = None
    ) -> tuple[dict[str, torch.Tensor], Any]:
        """Gather a batch of rows by an index tensor or a slice, on the compute device.

        Parameters
        ----------
        index : LongTensor or slice
            Rows of the batch.
        host_index : LongTensor on the CPU, slice or None, default=None
            The same rows on the host, for the sparse blocks (sliced on the
            host, then densified on the device, see
            :func:`~mmsk.fusion._transfer.densify`); None: from ``index``
            (a device synchronisation when ``index`` is on a GPU).

        Returns
        -------
        X_batch : dict of str to Tensor
            Dense tensors, sparse blocks densified.
        y_batch : Tensor or None
            The batch's target.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion._data import FusionDataset
        >>> X = {"x0": np.ones((4, 2), dtype="float32"), "mask": np.ones((4, 1), bool)}
        >>> FusionDataset(X).batch(slice(1, 3))[0]["x0"].shape
        torch.Size([2, 2])
        """
        out, y, event = self.stage(index, host_index)
        if event is not None:
            self._stager.ready([*out.values(), y], event)
        return out, y

    def stage(
        self, index: torch.Tensor | slice, host_index: torch.Tensor | slice | None = None
    ) -> tuple[dict[str, torch.Tensor], Any, Any]:
        """Gather a batch and issue its copies to the compute device, without waiting.

        Parameters
        ----------
        index : LongTensor or slice
            Rows of the batch (on the storage device, or the host).
        host_index : LongTensor on the CPU, slice or None, default=None
            The same rows on the host, to slice a sparse block without a
            device synchronisation; None: from ``index``.

        Returns
        -------
        X_batch, y_batch
            As :meth:`batch` returns them, not yet safe to use on a CUDA target.
        event : torch.cuda.Event or None
            To pass to the compute stream's wait (:meth:`Stager.ready`).
        """
        if isinstance(index, torch.Tensor) and index.device != self.device:
            index = index.to(self.device)
        if host_index is None:
            host_index = index
        stager = self._stager
        staged = stager.target != self.device
        out = {}
        with stager.copying():  # the copies: on a side stream when the data stay on the host
            for key, value in self._tensors.items():
                if sparse.issparse(value):
                    if isinstance(host_index, torch.Tensor):
                        if host_index.device.type != "cpu":  # (a sync: pass host_index)
                            host_index = host_index.cpu()
                        host_index = host_index.numpy()
                    out[key] = stager.densify(value[host_index])
                elif staged:
                    out[key] = stager.gather(value, index)
                elif isinstance(index, slice):
                    out[key] = value[index]
                else:
                    out[key] = value.index_select(0, index)
            y = self._y
            if y is not None:
                if staged:
                    y = stager.gather(y, index)
                else:
                    y = y[index] if isinstance(index, slice) else y.index_select(0, index)
        return out, y, stager.record()


class BatchIterator:
    """Yield whole batches from a :class:`FusionDataset` (or a Subset of one).

    Drop-in for skorch's ``iterator_train`` / ``iterator_valid``: skorch calls
    ``BatchIterator(dataset, batch_size=..., **iterator_train__kwargs)``.
    A one-row remainder is merged into the previous batch, so batch norm
    never sees a batch of one while training.

    Parameters
    ----------
    dataset : FusionDataset or torch.utils.data.Subset of one
        The data.
    batch_size : int, default=128
        Rows per batch.
    shuffle : bool, default=False
        Draw a new permutation of the rows at each pass.
    seed : int or None, default=None
        Seed of the shuffling generator; None draws one from torch's global
        generator (which the estimators seed from ``random_state``).
    prefetch : bool or None, default=None
        Issue the gathering and copying of batch k+1 before yielding batch
        k (:func:`~mmsk.fusion._transfer.one_ahead`). None: when the data
        stay on the host and batches travel to a GPU.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion._data import BatchIterator, FusionDataset
    >>> X = {"x0": np.ones((5, 2), dtype="float32"), "mask": np.ones((5, 1), bool)}
    >>> [len(yb) for _, yb in BatchIterator(FusionDataset(X, np.arange(5)), batch_size=2)]
    [2, 3]
    """

    def __init__(
        self,
        dataset: FusionDataset | Subset,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int | None = None,
        prefetch: bool | None = None,
    ) -> None:
        if isinstance(dataset, Subset):
            self.indices = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
            dataset = dataset.dataset
        else:
            self.indices = None
        if not isinstance(dataset, FusionDataset):
            raise TypeError(f"BatchIterator needs a FusionDataset, got {type(dataset).__name__}")
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int or -1, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.prefetch = dataset.staged if prefetch is None else bool(prefetch)
        self.generator = None
        if shuffle:
            if seed is None:
                seed = int(torch.randint(np.iinfo(np.int32).max, (1,)).item())
            self.generator = torch.Generator().manual_seed(int(seed))

    def _edges(self) -> list[int]:
        n = len(self.indices) if self.indices is not None else len(self.dataset)
        edges = [*range(0, n, self.batch_size), n]
        if len(edges) > 2 and edges[-1] - edges[-2] == 1:
            del edges[-2]
        return edges

    def __len__(self) -> int:
        """Return the number of batches."""
        return len(self._edges()) - 1

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], Any]]:
        """Yield ``(X_batch, y_batch)`` pairs."""
        order = self.indices
        if self.shuffle:
            n = len(order) if order is not None else len(self.dataset)
            perm = torch.randperm(n, generator=self.generator)
            order = perm if order is None else order[perm]
        host_order = order
        if order is not None:
            order = order.to(self.dataset.device)  # once per pass, not per batch
        edges = self._edges()
        pairs = zip(edges[:-1], edges[1:], strict=True)
        if order is None:
            indices = ((slice(a, b), slice(a, b)) for a, b in pairs)
        else:  # the host copy slices a sparse block without a device sync per batch
            indices = ((order[a:b], host_order[a:b]) for a, b in pairs)
        if not self.prefetch:
            for index, host_index in indices:
                yield self.dataset.batch(index, host_index)
            return
        stager = self.dataset._stager
        for out, y, event in one_ahead(self.dataset.stage(*pair) for pair in indices):
            if event is not None:
                stager.ready([*out.values(), y], event)
            yield out, y
