"""The fast in-memory data path; the home of the input checks, masks and scaling.

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

The input checks and masks (:func:`check_block`, :func:`mask_blocks`) live
in :mod:`mmsk.fusion._masking`, the input scaling (:func:`scaling_rule`,
:func:`block_stats`, :func:`channel_stats`) in :mod:`mmsk.fusion._scaling`;
both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy import sparse
from skorch.dataset import Dataset
from torch.utils.data import Subset

from mmsk.fusion._masking import (  # noqa: F401 (re-exported: the names' home)
    MASK,
    MAX_TOKEN_ID,
    block_key,
    check_block,
    mask_blocks,
)
from mmsk.fusion._scaling import (  # noqa: F401 (re-exported: the names' home)
    MIN_EMBEDDING_WIDTH,
    SCALINGS,
    block_stats,
    channel_stats,
    scaling_rule,
)
from mmsk.fusion._transfer import Stager, one_ahead

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
