"""The portable state of a fusion estimator: plain data instead of pickled torch objects.

:func:`mmsk.save` writes models with skops, which stores every object from
its ``__getstate__`` and rebuilds it with ``__setstate__``. A fitted fusion
estimator's ordinary state holds skorch nets, whose own state is pickled
torch objects; skops cannot store those without pickle. So, while
:func:`saving` is active (only :mod:`mmsk.io` activates it), the fusion
estimators' ``__getstate__`` returns their *portable* state instead: the
same attributes with the nets replaced by, for each net, its module's
``state_dict`` as safetensors bytes (CPU tensors) and its history as JSON.
``__setstate__`` recognises portable state by its :data:`PORTABLE_KEY` and
rebuilds the nets the way ``fit`` built them, then loads the weights, on
the device :func:`loading` names (the CPU by default).

Pickling outside :func:`saving` is unchanged.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import numpy as np

__all__ = [
    "PORTABLE_KEY",
    "ArchitectureNeededError",
    "PORTABLE_VERSION",
    "history_from_json",
    "history_to_json",
    "load_architectures",
    "load_device",
    "loading",
    "saving",
    "saving_memo",
    "weights_from_bytes",
    "weights_to_bytes",
]

#: The key that marks a portable state, and its value's layout version.
PORTABLE_KEY = "__mmsk_portable__"
PORTABLE_VERSION = 1

# While saving: a memo {id(estimator): portable state}, since skops asks an
# object for its state twice (``__reduce__`` and then ``__getstate__``).
_SAVING: ContextVar[dict[int, Any] | None] = ContextVar("mmsk_portable_saving", default=None)
_DEVICE: ContextVar[Any] = ContextVar("mmsk_portable_device", default="cpu")
_ARCHITECTURES: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "mmsk_portable_architectures", default=None
)


class ArchitectureNeededError(ValueError):
    """A saved fusion net whose image backbone was a Python object: loading needs it again.

    A safe model file stores a ``"pretrained_image"`` tower's weights, never
    its code; :func:`mmsk.load` takes the architecture as
    ``architectures={block: module or class}``.
    """


@contextlib.contextmanager
def saving() -> Iterator[None]:
    """Within the block, fusion estimators give their portable state to ``__getstate__``.

    Yields
    ------
    None
        Control returns to the ``with`` block.

    Examples
    --------
    >>> from mmsk._portable import saving, saving_memo
    >>> with saving():
    ...     saving_memo() is not None
    True
    >>> saving_memo() is None
    True
    """
    token = _SAVING.set({})
    try:
        yield
    finally:
        _SAVING.reset(token)


def saving_memo() -> dict[int, Any] | None:
    """Return the memo of the active :func:`saving` block, None outside one."""
    return _SAVING.get()


@contextlib.contextmanager
def loading(device: Any = "cpu", architectures: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Within the block, portable fusion estimators rebuild their nets on ``device``.

    Parameters
    ----------
    device : str or torch.device, default="cpu"
        Where the nets go; ``"auto"`` picks a GPU when there is one.
    architectures : dict or None, default=None
        Block name -> the torch module (or class or function) that a
        ``"pretrained_image"`` tower's backbone was built from at fit.

    Yields
    ------
    None
        Control returns to the ``with`` block.

    Examples
    --------
    >>> from mmsk._portable import load_device, loading
    >>> with loading("cuda:1"):
    ...     load_device()
    'cuda:1'
    >>> load_device()
    'cpu'
    """
    token = _DEVICE.set(device)
    given = _ARCHITECTURES.set(architectures)
    try:
        yield
    finally:
        _ARCHITECTURES.reset(given)
        _DEVICE.reset(token)


def load_device() -> Any:
    """Return the device of the active :func:`loading` block (``"cpu"`` outside one)."""
    return _DEVICE.get()


def load_architectures() -> Mapping[str, Any] | None:
    """Return the architectures of the active :func:`loading` block (None outside one)."""
    return _ARCHITECTURES.get()


def weights_to_bytes(module: Any) -> bytes:
    """Return a torch module's ``state_dict`` as safetensors bytes, every tensor on the CPU.

    Parameters
    ----------
    module : torch.nn.Module
        The module, on any device.

    Returns
    -------
    bytes
        The safetensors encoding: a JSON header (names, dtypes, shapes)
        and the raw tensor data, nothing that loading would execute.

    Examples
    --------
    >>> import torch
    >>> from mmsk._portable import weights_from_bytes, weights_to_bytes
    >>> layer = torch.nn.Linear(3, 2)
    >>> weights = weights_from_bytes(weights_to_bytes(layer))
    >>> bool(torch.equal(weights["weight"], layer.weight))
    True
    """
    from safetensors.torch import save

    # copies: safetensors refuses tensors that share memory, and wants contiguous ones
    tensors = {
        name: tensor.detach().to("cpu", copy=True).contiguous()
        for name, tensor in module.state_dict().items()
    }
    return save(tensors)


def weights_from_bytes(data: bytes) -> dict[str, Any]:
    """Decode :func:`weights_to_bytes` output into a ``state_dict`` of CPU tensors.

    Parameters
    ----------
    data : bytes
        safetensors bytes.

    Returns
    -------
    dict of str to torch.Tensor
        The tensors, by parameter name.

    Raises
    ------
    ValueError
        If ``data`` is not safetensors bytes.
    """
    from safetensors.torch import load

    if not isinstance(data, bytes | bytearray):
        raise ValueError(f"the weights of a fusion net must be bytes, got {type(data).__name__}")
    try:
        return load(bytes(data))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ValueError(f"the weights of a fusion net are damaged ({exc})") from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def history_to_json(history: Any) -> str:
    """Return a skorch ``History`` as JSON (numbers, flags, and the ``str`` of anything else).

    Parameters
    ----------
    history : skorch.history.History
        The net's history.

    Returns
    -------
    str
        The history as a JSON list of epoch records.

    Examples
    --------
    >>> from skorch.history import History
    >>> from mmsk._portable import history_from_json, history_to_json
    >>> history = History([{"epoch": 1, "train_loss": 0.5, "batches": []}])
    >>> history_from_json(history_to_json(history))[-1, "train_loss"]
    0.5
    """
    return json.dumps(list(history), default=_jsonable)


def history_from_json(text: str) -> Any:
    """Decode :func:`history_to_json` output into a skorch ``History``.

    Parameters
    ----------
    text : str
        JSON list of epoch records.

    Returns
    -------
    skorch.history.History
        The history.

    Raises
    ------
    ValueError
        If ``text`` is not a JSON list of records.
    """
    from skorch.history import History

    epochs = json.loads(text) if isinstance(text, str) else None
    if not isinstance(epochs, list) or not all(isinstance(e, Mapping) for e in epochs):
        raise ValueError("the history of a fusion net must be a JSON list of epoch records")
    return History(epochs)
