"""Moving batches from host memory to the compute device, and sparse rows to dense.

When the prepared data fit the device budget, :class:`~mmsk.fusion._data.FusionDataset`
puts them on the device once and none of this runs. Above the budget the
data stay in host memory and each batch travels; a :class:`Stager` then

- gathers the batch's rows into *pinned* (page-locked) host memory, the
  only memory a GPU copies from asynchronously (``pin_memory`` only where
  :func:`torch.cuda.is_available`);
- copies them with ``non_blocking=True`` on a side CUDA stream, and records
  an event that the compute stream waits on (:meth:`Stager.ready`) only
  when the batch is used, so that :func:`one_ahead` can issue the copy of
  batch k+1 before batch k is computed.

A sparse (CSR) block is sliced on the host and densified on the device
(:func:`densify`): only its nonzeros travel, scattered into a zero tensor
there, without a device-to-host synchronisation. On a CPU target every
step is what the plain path does: no pinning, no stream, dense rows from
``toarray``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from scipy import sparse

__all__ = ["Stager", "densify", "one_ahead"]

_NO_STREAM = contextlib.nullcontext()  # (reusable: it does nothing)


def _pinned(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    return tensor.pin_memory() if pin else tensor


def densify(rows: sparse.csr_matrix, device: Any, pin: bool = False) -> torch.Tensor:
    """Return the CSR ``rows`` as a dense float tensor made on ``device``.

    On a CPU this is ``toarray``. Elsewhere only the nonzeros are copied
    (flat positions and values, from pinned memory when ``pin``, with
    ``non_blocking=True``) and scattered into zeros on the device; nothing
    waits for the device.

    Parameters
    ----------
    rows : csr_matrix of shape (n_rows, n_features)
        The batch's rows of a sparse block.
    device : str or torch.device
        Where the dense tensor is made.
    pin : bool, default=False
        Copy from pinned host memory (only with CUDA).

    Returns
    -------
    Tensor of shape (n_rows, n_features)
        Duplicate entries summed, as ``toarray`` does.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> from mmsk.fusion._transfer import densify
    >>> rows = sparse.csr_matrix(np.array([[0, 2], [3, 0]], dtype="float32"))
    >>> densify(rows, "cpu").tolist()
    [[0.0, 2.0], [3.0, 0.0]]
    """
    device = torch.device(device)
    if device.type == "cpu":
        return torch.from_numpy(rows.toarray())
    coo = rows.tocoo()
    flat = coo.row.astype(np.int64) * rows.shape[1] + coo.col
    positions = _pinned(torch.from_numpy(flat), pin).to(device, non_blocking=True)
    values = _pinned(torch.from_numpy(coo.data), pin).to(device, non_blocking=True)
    dense = torch.zeros(rows.shape, dtype=values.dtype, device=device)
    dense.view(-1).index_put_((positions,), values, accumulate=True)
    return dense


class Stager:
    """Gather batches in host memory and move them to the compute device.

    Parameters
    ----------
    target : str or torch.device
        The compute device.
    side_stream : bool, default=True
        Issue the copies on a side CUDA stream (for data kept on the host,
        so that a copy overlaps the compute); False: on the current stream.

    Attributes
    ----------
    target : torch.device
        The compute device.
    pin : bool
        Whether batches are gathered into pinned memory (a CUDA target).
    stream : torch.cuda.Stream or None
        The side stream of the copies (a CUDA target with ``side_stream``).

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion._transfer import Stager
    >>> stager = Stager("cpu")
    >>> stager.gather(torch.arange(6.0).reshape(3, 2), torch.tensor([2, 0])).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """

    def __init__(self, target: Any, side_stream: bool = True) -> None:
        self.target = torch.device(target)
        cuda = self.target.type == "cuda" and torch.cuda.is_available()
        self.pin = cuda
        self.stream = torch.cuda.Stream(self.target) if cuda and side_stream else None

    def copying(self) -> contextlib.AbstractContextManager[Any]:
        """Return the context in which the copies are issued (the side stream, if any)."""
        if self.stream is None:
            return _NO_STREAM
        return torch.cuda.stream(self.stream)

    def gather(self, value: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """Return the rows ``index`` of a host tensor, on the target (issued, not awaited).

        Parameters
        ----------
        value : Tensor
            A block in host memory.
        index : LongTensor (on the CPU) or slice
            The rows.

        Returns
        -------
        Tensor
            The rows on the target device.
        """
        if isinstance(index, slice):
            rows = value[index]
            if self.pin:
                rows = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True).copy_(rows)
        elif self.pin:
            shape = (len(index), *value.shape[1:])
            rows = torch.empty(shape, dtype=value.dtype, pin_memory=True)
            torch.index_select(value, 0, index, out=rows)
        else:
            rows = value.index_select(0, index)
        return rows.to(self.target, non_blocking=True)

    def densify(self, rows: sparse.csr_matrix) -> torch.Tensor:
        """Return sparse rows dense on the target, see :func:`densify`."""
        return densify(rows, self.target, self.pin)

    def record(self) -> Any:
        """Return an event marking the copies issued so far (None off CUDA)."""
        return None if self.stream is None else self.stream.record_event()

    def ready(self, tensors: Iterable[Any], event: Any) -> None:
        """Make the compute stream wait for ``event`` before it uses ``tensors``.

        Parameters
        ----------
        tensors : iterable of Tensor or None
            The batch's tensors (made on the side stream).
        event : torch.cuda.Event or None
            From :meth:`record` after the batch's copies; None: nothing to wait for.
        """
        if event is None:
            return
        current = torch.cuda.current_stream(self.target)
        current.wait_event(event)
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                tensor.record_stream(current)  # not reused before the compute is done


def one_ahead(items: Iterable[Any]) -> Iterator[Any]:
    """Yield ``items`` in order, always having started the next one before yielding.

    With batches whose copies are issued asynchronously, the copy of batch
    k+1 is on its way while batch k is computed.

    Parameters
    ----------
    items : iterable
        Typically a generator that issues a batch's copies when advanced.

    Yields
    ------
    object
        The items, in their order.

    Examples
    --------
    >>> from mmsk.fusion._transfer import one_ahead
    >>> list(one_ahead(iter([1, 2, 3])))
    [1, 2, 3]
    """
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current
        current = following
    yield current
