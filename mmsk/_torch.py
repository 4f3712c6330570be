"""Small torch helpers: the compute device and seeding from a ``random_state``.

torch is imported inside the functions, so importing this module stays cheap
and ``import mmsk`` never imports torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["draw_seed", "resolve_device", "torch_seeded", "torch_threads"]


def resolve_device(device: Any = "auto") -> Any:
    """Turn ``device="auto"`` into ``"cuda"`` when a GPU is visible, else ``"cpu"``.

    Parameters
    ----------
    device : "auto", None, str or torch.device, default="auto"
        ``"auto"`` and ``None`` pick ``"cuda"`` if
        :func:`torch.cuda.is_available` is true, else ``"cpu"``. Anything
        else (``"cpu"``, ``"cuda:1"``, a :class:`torch.device`) is checked by
        :class:`torch.device` and returned unchanged.

    Returns
    -------
    device : str or torch.device
        The device to train and predict on.

    Raises
    ------
    ValueError
        If ``device`` is not a device torch knows, or names a CUDA device
        that is not there (checked now, not when torch first uses it).

    Examples
    --------
    >>> from mmsk._torch import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("auto") in ("cpu", "cuda")
    True
    """
    import torch

    if device is None or (isinstance(device, str) and device == "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}"
        ) from exc
    if where.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r}, but torch sees no CUDA device (torch.cuda.is_available() "
                "is False); use device='auto' or 'cpu'"
            )
        if where.index is not None and where.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}, but torch sees {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
    return device


def draw_seed(rng: np.random.RandomState) -> int:
    """Draw a 31-bit integer seed from a NumPy random state.

    Parameters
    ----------
    rng : numpy.random.RandomState
        Usually ``sklearn.utils.check_random_state(self.random_state)``.

    Returns
    -------
    seed : int
        A seed in ``[0, 2**31 - 1)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk._torch import draw_seed
    >>> draw_seed(np.random.RandomState(0)) == draw_seed(np.random.RandomState(0))
    True
    """
    return int(rng.randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def torch_seeded(seed: int, device: Any = "cpu") -> Iterator[None]:
    """Run a block with torch's global generators seeded, then restore them.

    Everything drawn from torch's default generators inside the block (weight
    initialisation, dropout masks, modality dropout) depends only on
    ``seed``, and the caller's torch random state is the same afterwards as
    before.

    Parameters
    ----------
    seed : int
        Seed for :func:`torch.manual_seed`.
    device : str or torch.device, default="cpu"
        The compute device; the generator of a CUDA device is forked too.

    Yields
    ------
    None
        Control returns to the ``with`` block.

    Examples
    --------
    >>> import torch
    >>> from mmsk._torch import torch_seeded
    >>> with torch_seeded(0):
    ...     a = torch.rand(2)
    >>> with torch_seeded(0):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    import torch

    devices = []
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n_jobs: int | None) -> Iterator[None]:
    """Run a block with torch using ``n_jobs`` CPU threads, then restore the count.

    Parameters
    ----------
    n_jobs : int or None
        Threads for :func:`torch.set_num_threads`; ``-1`` means all CPUs;
        None leaves torch's setting alone.

    Yields
    ------
    None
        Control returns to the ``with`` block.

    Examples
    --------
    >>> import torch
    >>> from mmsk._torch import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    import torch

    if n_jobs is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads((os.cpu_count() or 1) if n_jobs == -1 else n_jobs)
    try:
        yield
    finally:
        torch.set_num_threads(before)
