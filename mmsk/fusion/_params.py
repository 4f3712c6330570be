"""The fusion estimators' parameter checks and their validation plan.

:class:`FusionParams` is a mixin of :class:`~mmsk.fusion._core.FusionBase`.
It checks the parameters in ``fit`` (including what skorch and torch would
only refuse late, mid-build or mid-training), resolves
``n_estimators="auto"``, refuses a split that leaves too few training rows,
and plans the validation split: the hold-out fraction and whether to stop
early. :func:`_check_int`, :func:`_check_fraction` and :func:`_accepts` are
shared with :class:`~mmsk.fusion.retrieval.CrossModalRetriever` and the net
builder.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.metrics import get_scorer_names
from skorch.callbacks import Callback

from mmsk.fusion._precision import check_precision
from mmsk.fusion._training import LR_SCHEDULES
from mmsk.fusion._weights import GroupValidSplit
from mmsk.fusion.modules import FUSIONS

__all__ = ["FusionParams"]

#: ``early_stopping="auto"`` turns early stopping on when the validation split
#: would hold at least this many rows (and, for a classifier, every class).
MIN_AUTO_VALIDATION_ROWS = 20

#: The validation fraction when early stopping is on and ``validation_fraction`` is None.
DEFAULT_VALIDATION_FRACTION = 0.1

#: ``n_estimators="auto"``: this many networks on small data of MLP towers ...
AUTO_N_ESTIMATORS = 5

#: ... that is, with at most this many training rows (else one network).
AUTO_ENSEMBLE_MAX_ROWS = 10_000


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_fraction(name: str, value: Any, *, open_low: bool = False) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and 0 <= value < 1
    if not ok or (open_low and value == 0):
        interval = "(0, 1)" if open_low else "[0, 1)"
        raise ValueError(f"{name} must be a float in {interval}, got {value!r}")


def _accepts(function: Any, name: str) -> bool:
    """Whether ``function`` (e.g. an optimizer class) takes the keyword ``name``."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


class FusionParams:
    """Parameter checks and the validation plan of :class:`~mmsk.fusion._core.FusionBase`."""

    def _check_params(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name, low in [
            ("hidden_units", 1),
            ("n_layers", 1),
            ("n_heads", 1),
            ("rank", 1),
            ("max_epochs", 1),
            ("n_iter_no_change", 1),
        ]:
            _check_int(name, getattr(self, name), low)
        n_estimators = self._n_estimators_param()
        if n_estimators != "auto" and (
            isinstance(n_estimators, bool)
            or not isinstance(n_estimators, Integral)
            or n_estimators < 1
        ):
            raise ValueError(f"n_estimators must be an int >= 1 or 'auto', got {n_estimators!r}")
        if self.embed_dim is not None:
            _check_int("embed_dim", self.embed_dim, 1)
        if self.n_jobs is not None and self.n_jobs != -1:
            _check_int("n_jobs", self.n_jobs, 1)
        if self.batch_size != -1:
            _check_int("batch_size", self.batch_size, 1)
        _check_fraction("dropout", self.dropout)
        _check_fraction("modality_dropout", self.modality_dropout)
        if self.validation_fraction is not None:
            _check_fraction("validation_fraction", self.validation_fraction, open_low=True)
        if self.patience != "deprecated":
            _check_int("patience", self.patience, 1)
        if not (isinstance(self.early_stopping, bool) or self.early_stopping == "auto"):
            raise ValueError(
                f"early_stopping must be True, False or 'auto', got {self.early_stopping!r}"
            )
        if not isinstance(self.tol, Real) or isinstance(self.tol, bool) or not self.tol >= 0:
            raise ValueError(f"tol must be a float >= 0, got {self.tol!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        ok = isinstance(self.weight_decay, Real) and not isinstance(self.weight_decay, bool)
        if not ok or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be a float >= 0, got {self.weight_decay!r}")
        if self.scoring is not None and not (
            isinstance(self.scoring, str) or callable(self.scoring)
        ):
            raise ValueError(
                "scoring must be None (the validation loss), a scikit-learn scorer name "
                f"(e.g. 'f1_macro') or a callable scorer, got {self.scoring!r}"
            )
        if isinstance(self.scoring, str) and self.scoring not in get_scorer_names():
            close = difflib.get_close_matches(self.scoring, get_scorer_names(), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"scoring={self.scoring!r} is not a scikit-learn scorer name{hint} "
                "(sklearn.metrics.get_scorer_names() lists them)"
            )
        if self.norm not in ("batch", "layer", None):
            raise ValueError(f"norm must be 'batch', 'layer' or None, got {self.norm!r}")
        if not isinstance(self.lr, Real) or not self.lr > 0:
            raise ValueError(f"lr must be a float > 0, got {self.lr!r}")
        if self.optimizer_kwargs is not None and not isinstance(self.optimizer_kwargs, Mapping):
            raise ValueError(
                f"optimizer_kwargs must be a dict or None, got {self.optimizer_kwargs!r}"
            )
        if self.callbacks is not None and not isinstance(self.callbacks, list | tuple):
            raise ValueError(f"callbacks must be a list or None, got {self.callbacks!r}")
        self._check_torch_params()
        check_precision(self._precision())
        if self.towers is not None and not isinstance(self.towers, str | tuple | list | Mapping):
            raise ValueError(
                "towers must be None, a tower kind (str), a (kind, options) pair or a dict "
                f"of block name -> kind or (kind, options), got {self.towers!r}"
            )
        embed_dim = self.hidden_units if self.embed_dim is None else self.embed_dim
        if self.fusion == "attention" and embed_dim % self.n_heads:
            raise ValueError(
                f"fusion='attention' needs embed_dim divisible by n_heads; got embed_dim="
                f"{embed_dim} (hidden_units={self.hidden_units}) and n_heads={self.n_heads}"
            )

    def _precision(self) -> str:
        return self.__dict__.get("precision", "32")  # (pickled before precision existed)

    def _n_estimators_param(self) -> Any:
        return self.__dict__.get("n_estimators", 1)  # (pickled before "auto" existed: 1)

    def _resolve_n_estimators(self, n_samples: int) -> int:
        """Return how many networks to train: ``n_estimators``, or what ``"auto"`` means here.

        ``"auto"``: :data:`AUTO_N_ESTIMATORS` when every tower is an MLP (the
        cheap networks on extracted features) and there are at most
        :data:`AUTO_ENSEMBLE_MAX_ROWS` training rows, else 1.
        """
        wanted = self._n_estimators_param()
        if wanted != "auto":
            return int(wanted)
        cheap = all(kind == "mlp" for kind, _ in self._towers)
        return AUTO_N_ESTIMATORS if cheap and n_samples <= AUTO_ENSEMBLE_MAX_ROWS else 1

    def _check_torch_params(self) -> None:
        """Check what skorch and torch would only refuse late: mid-build or mid-training."""
        if not callable(self.optimizer):
            raise ValueError(
                "optimizer must be a torch.optim.Optimizer class (e.g. torch.optim.AdamW) or a "
                f"callable that makes one from the parameters, got {self.optimizer!r}"
            )
        name = getattr(self.optimizer, "__name__", repr(self.optimizer))
        unknown = [
            key
            for key in self.optimizer_kwargs or {}
            if key != "param_groups" and not _accepts(self.optimizer, key)
        ]
        if unknown:
            raise ValueError(
                f"optimizer_kwargs has {', '.join(map(repr, unknown))}, which {name} does not "
                "take; see its signature"
            )
        if self.criterion is not None and not callable(self.criterion):
            raise ValueError(
                "criterion must be None or a loss class/callable (e.g. "
                f"torch.nn.CrossEntropyLoss), got {self.criterion!r}"
            )
        for entry in self.callbacks or ():
            callback = entry[1] if isinstance(entry, tuple) and len(entry) == 2 else entry
            is_class = isinstance(callback, type) and issubclass(callback, Callback)
            if not (isinstance(callback, Callback) or is_class):
                raise ValueError(
                    "callbacks must hold skorch callbacks (instances or classes) or (name, "
                    f"callback) pairs, got {entry!r}"
                )
        if self.norm == "batch" and self.batch_size == 1:
            raise ValueError(
                "batch_size=1 cannot train with norm='batch': batch normalisation needs at "
                "least 2 rows per training batch; use batch_size >= 2, or norm='layer' or None"
            )

    def _check_training_rows(self, n_samples: int, fraction: float | None) -> None:
        """Refuse a split that leaves too few training rows for the network."""
        n_valid = 0 if fraction is None else int(np.ceil(fraction * n_samples))
        n_train = n_samples - n_valid
        low = 2 if self.norm == "batch" else 1
        if n_train < low:
            need = (
                "norm='batch' needs at least 2 training rows (batch normalisation cannot "
                "train on one)"
                if self.norm == "batch"
                else "training needs at least 1 row"
            )
            raise ValueError(
                f"{need}, but validation_fraction={fraction} of {n_samples} rows leaves "
                f"{n_train} to train on; give more rows, a smaller validation_fraction, "
                "early_stopping=False" + (", or norm='layer' or None" if low == 2 else "")
            )

    def _validation_plan(
        self, y: np.ndarray, n_samples: int, groups: np.ndarray | None = None
    ) -> tuple[float | None, bool]:
        """Return the hold-out fraction and whether to stop early.

        With ``groups`` the held-out rows are whole groups
        (:class:`GroupValidSplit`), so the split needs enough groups
        rather than every class on both sides.
        """
        fraction = self.validation_fraction
        wanted = self.early_stopping
        if wanted is False:
            return fraction, False
        planned = DEFAULT_VALIDATION_FRACTION if fraction is None else fraction
        n_valid = int(np.ceil(planned * n_samples))
        n_train = n_samples - n_valid
        reason = None
        if groups is not None:
            reason = GroupValidSplit.check(planned, groups)
            if reason is None:
                n_groups = len(np.unique(groups))
                n_valid = int(n_samples * np.ceil(planned * n_groups) / n_groups)
        elif self._is_clf():
            counts = np.bincount(y)
            if n_valid < len(counts) or n_train < len(counts) or counts.min() < 2:
                reason = (
                    f"a stratified split of {planned} of {n_samples} rows cannot hold every "
                    f"one of {len(counts)} classes on both sides (smallest class: "
                    f"{counts.min()} rows)"
                )
        elif n_train < 2 or n_valid < 1:
            reason = f"{planned} of {n_samples} rows leaves no rows to train or validate on"
        if wanted == "auto":
            if reason is None and n_valid >= MIN_AUTO_VALIDATION_ROWS:
                return planned, True
            return fraction, False
        if reason is not None:
            raise ValueError(f"early_stopping=True needs a validation split, but {reason}")
        return planned, True
