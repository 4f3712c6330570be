"""The fusion estimators' state: pickle, and the portable state of :mod:`mmsk.io`.

:class:`FusionState` is a mixin of :class:`~mmsk.fusion._core.FusionBase`.
Pickled, an estimator keeps its skorch nets (``device_`` follows skorch's
device mapping on load). Inside :func:`mmsk._portable.saving` (a safe model
file) each net is replaced by its weights and history, and loading rebuilds
the nets as ``fit`` built them, from ``_net_spec`` (see :mod:`mmsk._portable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mmsk import _portable
from mmsk._torch import resolve_device, torch_seeded
from mmsk.fusion._image_portable import restore_architectures, without_architectures
from mmsk.fusion.modules import FusionModule
from mmsk.fusion.pretrained import from_config_only

__all__ = ["FusionState"]


def _shapes(tensors: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in tensors.items()}


class FusionState:
    """Pickle and portable state of :class:`~mmsk.fusion._core.FusionBase`."""

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle; the portable state inside :func:`_portable.saving`."""
        state = super().__getstate__()
        memo = _portable.saving_memo()
        if memo is None:
            return state
        if id(self) not in memo:
            memo[id(self)] = self._to_portable(state)
        return memo[id(self)]

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled or portable estimator; ``device_`` follows skorch's device mapping."""
        if _portable.PORTABLE_KEY in state:
            self._from_portable(state)
            return
        super().__setstate__(state)
        if "net_" in self.__dict__:
            device = self.net_.device
            self.device_ = str(device) if isinstance(device, torch.device) else device
            # where skorch mapped the net (e.g. CUDA -> CPU), the data go too
            for net in self.__dict__.get("nets_") or [self.net_]:
                net.dataset__device = net.device
            self.__dict__.setdefault("history_", self.net_.history)  # (pickled before history_)

    def _to_portable(self, state: dict[str, Any]) -> dict[str, Any]:
        """Return ``state`` with each skorch net replaced by its weights and history."""
        state = without_architectures(state)  # a backbone object: its weights only
        nets = state.pop("nets_", None) or ([state["net_"]] if "net_" in state else None)
        state.pop("net_", None)
        state.pop("history_", None)  # the first net's history, stored with the nets
        records = None
        if nets is not None:
            if "_net_spec" not in state:
                raise ValueError(
                    f"this {type(self).__name__} was fitted by an older mmsk, which did not "
                    "record how to rebuild its net; refit it to save it in the safe format"
                )
            records = [
                {
                    "weights": _portable.weights_to_bytes(net.module_),
                    "history": _portable.history_to_json(net.history),
                }
                for net in nets
            ]
        state[_portable.PORTABLE_KEY] = {"version": _portable.PORTABLE_VERSION, "nets": records}
        return state

    def _from_portable(self, state: dict[str, Any]) -> None:
        """Set ``state`` (from :meth:`_to_portable`) and rebuild the nets as ``fit`` built them."""
        state = dict(state)
        portable = state.pop(_portable.PORTABLE_KEY)
        version = portable.get("version") if isinstance(portable, Mapping) else None
        if version != _portable.PORTABLE_VERSION:
            raise ValueError(
                f"{type(self).__name__}: unknown portable state version {version!r} (this mmsk "
                f"reads version {_portable.PORTABLE_VERSION})"
            )
        state = restore_architectures(state)
        super().__setstate__(state)
        records = portable.get("nets")
        if records is None:
            return
        seeds = self._net_spec["seeds"]
        if not isinstance(records, list) or len(records) != len(seeds) or not records:
            raise ValueError(f"{type(self).__name__}: the nets do not match their description")
        device = resolve_device(_portable.load_device())
        # the net the file describes, without allocating it (a pretrained encoder is
        # built from its stored config: its fine-tuned weights are in the file)
        with torch.device("meta"), from_config_only():
            shapes = _shapes(FusionModule(**self._net_spec["module"]).state_dict())
        nets = []
        for record, (shuffle_seed, split_seed) in zip(records, seeds, strict=True):
            weights = _portable.weights_from_bytes(record["weights"])
            if _shapes(weights) != shapes:  # so a damaged file cannot make us allocate more
                raise ValueError(
                    f"{type(self).__name__}: the weights do not fit the net the file describes"
                )
            net = self._build_net(shuffle_seed, split_seed, device)
            with torch_seeded(0, device), from_config_only():  # weights overwritten below
                net.initialize()
            net.module_.load_state_dict(weights)
            net.history = _portable.history_from_json(record["history"])
            nets.append(net)
        self.device_ = device
        self.nets_ = nets
        self.net_ = nets[0]
        self.history_ = self.net_.history
