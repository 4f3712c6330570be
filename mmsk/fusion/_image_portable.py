"""Safe model files of fusion nets with a ``"pretrained_image"`` tower: backbones by reference.

A safe model file (:func:`mmsk.save`) holds no pickled code. A
``"pretrained_image"`` tower's fine-tuned weights are stored with the rest
of the net's weights; its architecture is stored as given when it is a
torchvision name (loading rebuilds it from the name, without weights). A
module object or a class or function that builds one cannot be stored
without pickle, so the file holds a marker naming its class instead, and
:func:`mmsk.load` takes the architecture again:
``mmsk.load(path, architectures={"image": TinyCNN})``, which puts it back
in the estimator's parameters (so the loaded estimator refits too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmsk import _portable

__all__ = ["MARKER", "restore_architectures", "without_architectures"]

#: What a safe model file holds in place of a backbone given as an object or callable.
MARKER = "<architecture given at fit: "
IMAGE_KIND = "pretrained_image"


def _marked(pair: Any, architectures: Mapping[str, Any] | None, name: str | None) -> Any:
    """``pair`` with its backbone object swapped: for a marker (saving) or back (loading)."""
    if not (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and pair[0] == IMAGE_KIND
        and isinstance(pair[1], Mapping)
    ):
        return pair
    options = dict(pair[1])
    model = options.get("model")
    if architectures is None:  # saving
        if not isinstance(model, str):
            what = model if isinstance(model, type) else type(model)
            label = getattr(what, "__qualname__", type(model).__name__)
            options["model"] = f"{MARKER}{label}>"
    elif isinstance(model, str) and model.startswith(MARKER):
        chosen = architectures.get(name) if name is not None else None
        if chosen is None and name is None and len(architectures) == 1:
            chosen = next(iter(architectures.values()))
        if chosen is not None:
            options["model"] = chosen
    return type(pair)((pair[0], options))


def _swap(state: dict[str, Any], architectures: Mapping[str, Any] | None) -> dict[str, Any]:
    state = dict(state)
    layout = state.get("_layout")
    names = list(getattr(layout, "names", None) or [])
    towers = state.get("towers")
    if isinstance(towers, Mapping):
        state["towers"] = {k: _marked(v, architectures, k) for k, v in towers.items()}
    elif towers is not None:
        state["towers"] = _marked(towers, architectures, None)
    if isinstance(state.get("towers_"), Mapping):
        state["towers_"] = {k: _marked(v, architectures, k) for k, v in state["towers_"].items()}
    if "_towers" in state:
        padded = names + [None] * (len(state["_towers"]) - len(names))
        state["_towers"] = [
            _marked(p, architectures, n) for p, n in zip(state["_towers"], padded, strict=True)
        ]
    spec = state.get("_net_spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("module"), Mapping):
        module = dict(spec["module"])
        padded = names + [None] * (len(module.get("towers") or []) - len(names))
        module["towers"] = [
            _marked(p, architectures, n) for p, n in zip(module["towers"], padded, strict=True)
        ]
        state["_net_spec"] = {**spec, "module": module}
    return state


def without_architectures(state: dict[str, Any]) -> dict[str, Any]:
    """Return a fusion estimator's state with every backbone object replaced by a marker.

    For :mod:`mmsk._portable`: a safe model file stores torchvision names as
    they are, and a module object or callable as a marker naming its class
    (the tower's weights are in the net's weights anyway).

    Parameters
    ----------
    state : dict
        The estimator's state (not changed).

    Returns
    -------
    dict
        A copy, the ``"pretrained_image"`` towers' options copied too.
    """
    return _swap(state, None)


def restore_architectures(state: dict[str, Any]) -> dict[str, Any]:
    """Put back the architectures that :func:`mmsk.load` was given, by block name.

    Parameters
    ----------
    state : dict
        A portable state (not changed).

    Returns
    -------
    dict
        A copy with the markers replaced where ``architectures`` names the block.

    Raises
    ------
    mmsk._portable.ArchitectureNeededError
        When a block's backbone is a marker and no architecture was given for it.
    """
    given = _portable.load_architectures()
    state = _swap(state, dict(given or {}))
    names = list(getattr(state.get("_layout"), "names", None) or [])
    for name, (kind, options) in zip(names, state.get("_towers") or [], strict=False):
        model = options.get("model")
        if kind == IMAGE_KIND and isinstance(model, str) and model.startswith(MARKER):
            raise _portable.ArchitectureNeededError(
                f"block {name!r} has a {IMAGE_KIND!r} tower whose backbone was given at fit as "
                f"a Python object ({model[len(MARKER) : -1]}); a safe model file stores its "
                "fine-tuned weights, never its code: give the architecture again, "
                f"mmsk.load(path, architectures={{{name!r}: <the module, or its class>}})"
            )
    return state
