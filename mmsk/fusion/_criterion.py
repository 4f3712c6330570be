"""Checking, at the start of ``fit``, that a fusion estimator's ``criterion`` fits its task.

A criterion that runs but mismatches the task (a regression loss given class
indices, a classification loss given real-valued targets) used to fail deep
inside torch after the net was built, or worse, to train on a constant loss.
:func:`check_criterion` tries the criterion the way training calls it
(skorch's ``get_loss`` of the very net ``fit`` builds, with its class
weights and per-row reduction) on a tiny batch of the task's shapes and
dtypes, and raises a scikit-learn-style ``ValueError`` naming the parameter,
its value and what the task needs. A custom criterion that fits the task
passes unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

__all__ = ["check_criterion"]

#: torch's losses that take class indices: never a regression criterion.
_CLASS_INDEX_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss, torch.nn.MultiMarginLoss)


def _name(criterion: Any) -> str:
    kind = criterion if isinstance(criterion, type) else type(criterion)
    module = kind.__module__
    if module.startswith("torch.nn.modules."):
        module = "torch.nn"
    name = getattr(kind, "__qualname__", repr(kind))
    if not isinstance(criterion, type) and not isinstance(criterion, torch.nn.Module):
        return getattr(criterion, "__qualname__", None) or repr(criterion)  # a function
    return f"{module}.{name}" + ("" if isinstance(criterion, type) else "()")


def _expected(classifier: bool) -> str:
    if classifier:
        return (
            "the loss gets the network's logits, float of shape (n_samples, n_classes), and "
            "the class indices, int64 of shape (n_samples,), as torch.nn.CrossEntropyLoss "
            "(the default) does, and returns one finite number"
        )
    return (
        "the loss gets the network's outputs and the targets (standardized), both float of "
        "shape (n_samples, n_outputs), as torch.nn.MSELoss (the default) does, and returns "
        "one finite number"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def check_criterion(estimator: Any, net: Any, n_outputs: int) -> None:
    """Raise ``ValueError`` if ``estimator.criterion`` does not fit its task; None is the default.

    Parameters
    ----------
    estimator : FusionClassifier or FusionRegressor
        The estimator being fitted.
    net : skorch.NeuralNet
        A net built as ``fit`` builds its nets (not trained, not initialized);
        only its criterion is initialized and called.
    n_outputs : int
        Classes of a classifier, outputs of a regressor.

    Raises
    ------
    ValueError
        If the criterion raises on a trial batch of the task's shapes and
        dtypes, does not return one finite number, or does not depend on
        the network's output; or, for a regressor, is one of torch's
        class-index losses.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from mmsk import FusionRegressor
    >>> X = np.random.RandomState(0).normal(size=(20, 3))
    >>> FusionRegressor(criterion=torch.nn.CrossEntropyLoss).fit(X, X[:, 0])
    Traceback (most recent call last):
    ...
    ValueError: criterion=torch.nn.CrossEntropyLoss does not fit FusionRegressor: the loss gets \
the network's outputs and the targets (standardized), both float of shape (n_samples, n_outputs), \
as torch.nn.MSELoss (the default) does, and returns one finite number; it is a classification \
loss (it takes class indices)
    >>> FusionRegressor(criterion=torch.nn.HuberLoss, max_epochs=1).fit(X, X[:, 0]).n_outputs_
    1
    """
    criterion = estimator.criterion
    if criterion is None:
        return
    classifier = estimator._is_clf()
    what, name, expected = type(estimator).__name__, _name(criterion), _expected(classifier)
    kind = criterion if isinstance(criterion, type) else type(criterion)
    if not classifier and issubclass(kind, _CLASS_INDEX_LOSSES):
        raise ValueError(
            f"criterion={name} does not fit {what}: {expected}; it is a classification loss "
            "(it takes class indices)"
        )
    n = n_outputs + 2  # a batch size unlike the width: a mismatch cannot broadcast away
    device = net.device
    # logits of both signs (a loss that expects probabilities gives NaN on them)
    y_pred = torch.linspace(-1.0, 1.0, n * n_outputs, device=device).reshape(n, n_outputs)
    if classifier:
        y_true = torch.arange(n, device=device) % n_outputs
    else:
        # targets of both signs, as standardized targets are
        y_true = torch.linspace(1.5, -1.5, n * n_outputs, device=device).reshape(n, n_outputs)
    y_pred.requires_grad_(True)
    try:
        with warnings.catch_warnings():  # training repeats any warning of the criterion
            warnings.simplefilter("ignore")
            net._initialize_criterion()  # (skorch sets criterion_ inside its init context)
            loss = net.get_loss(y_pred, y_true, X=None, training=True)
            if isinstance(loss, torch.Tensor) and loss.ndim == 0:
                loss.backward()
    except Exception as exc:  # noqa: BLE001 - any failure of the trial is the same mismatch
        raise ValueError(
            f"criterion={name} does not fit {what}: {expected}; on a trial batch of these it "
            f"raised {_first_line(exc)}"
        ) from exc
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"criterion={name} does not fit {what}: {expected}; on a trial batch of these it "
            f"returned {shape} instead of one number"
        )
    if not torch.isfinite(loss.detach()).item():
        raise ValueError(
            f"criterion={name} does not fit {what}: {expected}; on a trial batch of these it "
            f"returned {loss.item()}"
        )
    grad = y_pred.grad
    if grad is None or not bool(torch.isfinite(grad).all()) or not bool(grad.abs().sum() > 0):
        raise ValueError(
            f"criterion={name} does not fit {what}: {expected}; on a trial batch of these "
            "its value does not change with the network's output (nothing to train)"
        )
