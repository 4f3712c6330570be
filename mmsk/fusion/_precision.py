"""Mixed precision for the fusion nets: ``precision="32"``, ``"bf16"`` or ``"16-mixed"``.

``"32"`` is plain float32 (the nets are skorch's own classes, untouched).
The other two run the module's forward pass, in training, validation,
prediction and ``transform``, under :func:`torch.autocast`:

- ``"bf16"``: bfloat16 autocast, on a CPU or a GPU; bfloat16 has float32's
  range, so no loss scaling is needed.
- ``"16-mixed"``: float16 autocast with a :class:`torch.amp.GradScaler`
  (the loss is scaled before ``backward`` and the gradients unscaled before
  callbacks see them and the optimizer steps). CUDA only: ``fit`` on a CPU
  raises a ``ValueError`` naming the parameter. A model fitted so and loaded
  on a CPU predicts in float32.

The weights and the optimizer state stay float32 in every precision; the
module's outputs are cast back to float32 before the loss, so
``predict_proba`` returns what it returns in float32. ONNX export traces
the float32 module, whatever the precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator

from mmsk.fusion._weights import WeightedNetClassifier, WeightedNetRegressor

__all__ = [
    "PRECISIONS",
    "PrecisionNetClassifier",
    "PrecisionNetRegressor",
    "PrecisionWeightedNetClassifier",
    "PrecisionWeightedNetRegressor",
    "autocast",
    "check_precision",
    "float32_outputs",
    "module_autocast",
    "precision_net_class",
]

#: The values of ``precision``.
PRECISIONS = ("32", "bf16", "16-mixed")


def check_precision(precision: Any, device: Any = None) -> None:
    """Check a ``precision`` value, and that ``device`` can train in it.

    Parameters
    ----------
    precision : object
        The value to check: one of :data:`PRECISIONS`.
    device : str, torch.device or None, default=None
        The resolved training device; None checks the value only.

    Raises
    ------
    ValueError
        If ``precision`` is not one of :data:`PRECISIONS`, or is
        ``"16-mixed"`` while ``device`` is not a CUDA device.

    Examples
    --------
    >>> from mmsk.fusion._precision import check_precision
    >>> check_precision("bf16", "cpu")
    >>> check_precision("16-mixed", "cpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: precision='16-mixed' needs a CUDA device (...), but the device is 'cpu'; ...
    """
    if not (isinstance(precision, str) and precision in PRECISIONS):
        raise ValueError(
            f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}"
        )
    if device is not None and precision == "16-mixed" and torch.device(device).type != "cuda":
        raise ValueError(
            "precision='16-mixed' needs a CUDA device (float16 autocast with a gradient "
            f"scaler), but the device is {str(device)!r}; use precision='bf16' (bfloat16 "
            "autocast runs on a CPU too) or '32'"
        )


def autocast(precision: str, device: Any) -> contextlib.AbstractContextManager[Any]:
    """Return the autocast context of ``precision`` on ``device`` (a no-op for ``"32"``).

    ``"16-mixed"`` off a CUDA device (a model loaded on a CPU) runs in float32.

    Parameters
    ----------
    precision : str
        One of :data:`PRECISIONS`.
    device : str or torch.device
        Where the module runs.

    Returns
    -------
    context manager
        :func:`torch.autocast` for the device type, or a null context.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion._precision import autocast
    >>> with autocast("bf16", "cpu"):
    ...     torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype
    torch.bfloat16
    >>> with autocast("32", "cpu"):
    ...     torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype
    torch.float32
    """
    kind = torch.device(device).type
    if precision == "bf16":
        return torch.autocast(kind, dtype=torch.bfloat16)
    if precision == "16-mixed" and kind == "cuda":
        return torch.autocast(kind, dtype=torch.float16)
    return contextlib.nullcontext()


def float32_outputs(value: Any) -> Any:
    """Cast the bfloat16 and float16 tensors in ``value`` (or a tuple/dict of them) to float32.

    Parameters
    ----------
    value : Tensor, tuple, list, dict or object
        A module's output.

    Returns
    -------
    object
        ``value`` with bfloat16 and float16 tensors made float32.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion._precision import float32_outputs
    >>> float32_outputs(torch.ones(2, dtype=torch.bfloat16)).dtype
    torch.float32
    """
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
    if isinstance(value, tuple | list):
        return type(value)(float32_outputs(v) for v in value)
    if isinstance(value, Mapping):
        return {key: float32_outputs(v) for key, v in value.items()}
    return value


class _PrecisionNet:
    """A skorch net whose module runs under autocast, with a gradient scaler for float16."""

    def __init__(self, *args: Any, precision: str = "32", **kwargs: Any) -> None:
        self.precision = precision
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Return the autocast context of the net's precision on its device."""
        return autocast(self.precision, self.device)  # type: ignore[attr-defined]

    def infer(self, x: Any, **fit_params: Any) -> Any:
        """Run the module under autocast; return float32 outputs."""
        with self.autocast():
            out = super().infer(x, **fit_params)  # type: ignore[misc]
        return float32_outputs(out)

    def _scaler(self) -> torch.amp.GradScaler | None:
        if self.precision != "16-mixed" or torch.device(self.device).type != "cuda":  # type: ignore[attr-defined]
            return None
        scaler = self.__dict__.get("grad_scaler_")
        if scaler is None:
            scaler = torch.amp.GradScaler("cuda")
            self.__dict__["grad_scaler_"] = scaler
        return scaler

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """Compute the loss and the (scaled, for float16) gradients of one batch."""
        scaler = self._scaler()
        if scaler is None:
            return super().train_step_single(batch, **fit_params)  # type: ignore[misc]
        self._set_training(True)  # type: ignore[attr-defined]
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)  # type: ignore[attr-defined]
        scaler.scale(loss).backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """One optimisation step; with a gradient scaler, unscale, step and update it.

        The callbacks' ``on_grad_computed`` (e.g. gradient clipping) sees the
        unscaled gradients. A step whose gradients overflowed is skipped by
        the scaler, as :class:`torch.amp.GradScaler` documents.
        """
        scaler = self._scaler()
        if scaler is None:
            return super().train_step(batch, **fit_params)  # type: ignore[misc]
        optimizers = [getattr(self, name + "_") for name in self._optimizers]  # type: ignore[attr-defined]
        self._zero_grad_optimizer()  # type: ignore[attr-defined]
        step = self.train_step_single(batch, **fit_params)
        for optimizer in optimizers:
            scaler.unscale_(optimizer)
        self.notify(  # type: ignore[attr-defined]
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),  # type: ignore[attr-defined]
            batch=batch,
            training=True,
        )
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
        return step

    def __getstate__(self) -> dict[str, Any]:
        """Leave the gradient scaler out (a new fit starts a new one)."""
        state = super().__getstate__()  # type: ignore[misc]
        state.pop("grad_scaler_", None)
        return state


class PrecisionNetClassifier(_PrecisionNet, NeuralNetClassifier):
    """skorch's classifier net with ``precision`` (see :mod:`mmsk.fusion._precision`).

    Examples
    --------
    >>> from mmsk.fusion._precision import PrecisionNetClassifier
    >>> PrecisionNetClassifier.__mro__[2].__name__
    'NeuralNetClassifier'
    """


class PrecisionNetRegressor(_PrecisionNet, NeuralNetRegressor):
    """skorch's regressor net with ``precision`` (see :mod:`mmsk.fusion._precision`).

    Examples
    --------
    >>> from mmsk.fusion._precision import PrecisionNetRegressor
    >>> PrecisionNetRegressor.__mro__[2].__name__
    'NeuralNetRegressor'
    """


class PrecisionWeightedNetClassifier(_PrecisionNet, WeightedNetClassifier):
    """The weighted classifier net with ``precision`` (see :mod:`mmsk.fusion._precision`).

    Examples
    --------
    >>> from mmsk.fusion._precision import PrecisionWeightedNetClassifier
    >>> PrecisionWeightedNetClassifier.__mro__[2].__name__
    'WeightedNetClassifier'
    """


class PrecisionWeightedNetRegressor(_PrecisionNet, WeightedNetRegressor):
    """The weighted regressor net with ``precision`` (see :mod:`mmsk.fusion._precision`).

    Examples
    --------
    >>> from mmsk.fusion._precision import PrecisionWeightedNetRegressor
    >>> PrecisionWeightedNetRegressor.__mro__[2].__name__
    'WeightedNetRegressor'
    """


_CLASSES = {
    (True, False): PrecisionNetClassifier,
    (False, False): PrecisionNetRegressor,
    (True, True): PrecisionWeightedNetClassifier,
    (False, True): PrecisionWeightedNetRegressor,
}


def precision_net_class(classifier: bool, weighted: bool) -> type:
    """Return the net class that runs in a precision other than ``"32"``.

    Parameters
    ----------
    classifier : bool
        A classifier's net (else a regressor's).
    weighted : bool
        A net of a weighted fit.

    Returns
    -------
    type
        A subclass of the matching skorch (or weighted) net that takes
        ``precision=``.

    Examples
    --------
    >>> from mmsk.fusion._precision import precision_net_class
    >>> precision_net_class(True, False).__name__
    'PrecisionNetClassifier'
    """
    return _CLASSES[(bool(classifier), bool(weighted))]


def module_autocast(net: Any) -> contextlib.AbstractContextManager[Any]:
    """Return the autocast context of a net, for a direct call of its module.

    Parameters
    ----------
    net : skorch.NeuralNet
        A fusion net; a plain skorch net (``precision="32"``) runs in float32.

    Returns
    -------
    context manager
        :func:`autocast` of the net's precision on its device.

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion._precision import PrecisionNetRegressor, module_autocast
    >>> net = PrecisionNetRegressor(torch.nn.Linear, precision="bf16")
    >>> with module_autocast(net):
    ...     torch.nn.Linear(2, 1)(torch.ones(1, 2)).dtype
    torch.bfloat16
    """
    precision = net.__dict__.get("precision", "32")
    if precision == "32":
        return contextlib.nullcontext()
    return autocast(precision, net.device)
