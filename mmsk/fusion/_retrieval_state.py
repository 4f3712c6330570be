"""The portable state of a fitted :class:`~mmsk.CrossModalRetriever` (see :mod:`mmsk._portable`).

Inside :func:`mmsk._portable.saving` the retriever's ``__getstate__`` gives
:func:`retriever_to_portable`'s state: its attributes with the skorch net
replaced by the dual encoder's ``state_dict`` as safetensors bytes (CPU
tensors) and the training history as JSON. ``__setstate__`` hands a state
that carries :data:`~mmsk._portable.PORTABLE_KEY` to
:func:`retriever_from_portable`, which rebuilds the net from the
configuration ``fit`` recorded (``_net_spec``: plain numbers, names and
arrays) on the device of :func:`mmsk._portable.loading` (the CPU by
default), checks the stored tensors' names and shapes against that net
before anything is allocated, and loads the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mmsk import _portable
from mmsk._torch import resolve_device, torch_seeded
from mmsk.fusion.contrastive import DualEncoder

__all__ = ["retriever_from_portable", "retriever_to_portable"]


def _shapes(tensors: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in tensors.items()}


def retriever_to_portable(est: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Return ``state`` with the retriever's net replaced by its weights and history.

    Parameters
    ----------
    est : CrossModalRetriever
        The estimator (fitted or not).
    state : dict
        Its ordinary state (``__getstate__``).

    Returns
    -------
    dict
        The state with ``net_`` replaced by :data:`~mmsk._portable.PORTABLE_KEY`.

    Raises
    ------
    ValueError
        If the estimator was fitted by an mmsk that did not record ``_net_spec``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk import CrossModalRetriever
    >>> from mmsk.fusion._retrieval_state import retriever_to_portable
    >>> X = {"a": np.random.RandomState(0).normal(size=(20, 3)), "b": np.ones((20, 2))}
    >>> ret = CrossModalRetriever(hidden_units=8, embed_dim=4, max_epochs=1).fit(X)
    >>> state = retriever_to_portable(ret, dict(vars(ret)))
    >>> "net_" in state, type(state["__mmsk_portable__"]["net"]["weights"]).__name__
    (False, 'bytes')
    """
    state = dict(state)
    net = state.pop("net_", None)
    record = None
    if net is not None:
        if "_net_spec" not in state:
            raise ValueError(
                f"this {type(est).__name__} was fitted by an older mmsk, which did not record "
                "how to rebuild its net; refit it to save it in the safe format"
            )
        record = {
            "weights": _portable.weights_to_bytes(net.module_),
            "history": _portable.history_to_json(net.history),
        }
    state[_portable.PORTABLE_KEY] = {"version": _portable.PORTABLE_VERSION, "net": record}
    return state


def retriever_from_portable(est: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the net of a portable state; return the state to set, with ``net_`` and ``device_``.

    Parameters
    ----------
    est : CrossModalRetriever
        The estimator being restored (its class builds the net).
    state : dict
        A state from :func:`retriever_to_portable`.

    Returns
    -------
    dict
        The ordinary state: the attributes, the rebuilt ``net_`` (weights
        loaded, evaluation mode) and ``device_``.

    Raises
    ------
    ValueError
        If the portable layout version is unknown, or the weights do not
        match the net that the stored configuration describes.
    """
    state = dict(state)
    portable = state.pop(_portable.PORTABLE_KEY)
    version = portable.get("version") if isinstance(portable, Mapping) else None
    if version != _portable.PORTABLE_VERSION:
        raise ValueError(
            f"{type(est).__name__}: unknown portable state version {version!r} (this mmsk "
            f"reads version {_portable.PORTABLE_VERSION})"
        )
    record = portable.get("net")
    if record is None:
        return state
    spec = state.get("_net_spec")
    if not isinstance(record, Mapping) or not isinstance(spec, Mapping):
        raise ValueError(f"{type(est).__name__}: the net does not match its description")
    weights = _portable.weights_from_bytes(record["weights"])
    with torch.device("meta"):  # the described net's shapes, nothing allocated
        expected = _shapes(DualEncoder(**spec["module"]).state_dict())
    if _shapes(weights) != expected:  # so a damaged file cannot make us allocate more
        raise ValueError(f"{type(est).__name__}: the weights do not fit the net the file describes")
    device = resolve_device(_portable.load_device())
    est.__dict__.update(state)  # the net reads the estimator's parameters
    net = est._build_net(spec, device)
    with torch_seeded(0, device):  # the initial weights are overwritten below
        net.initialize()
    net.module_.load_state_dict(weights)
    net.module_.eval()
    net.history = _portable.history_from_json(record["history"])
    state["net_"] = net
    state["device_"] = device
    return state
