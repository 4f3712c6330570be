"""The machinery the two fusion estimators share: input, skorch net, training.

:class:`FusionBase` validates the input, finds the modality blocks, masks
missing modalities, builds the skorch net from the estimator's own
parameters and trains it under a seeded torch generator. The public classes
in :mod:`mmsk.fusion.estimators` add the target handling and the docs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Tags, check_random_state
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback, EarlyStopping
from skorch.dataset import ValidSplit
from skorch.utils import to_tensor

from mmsk._torch import draw_seed, resolve_device, torch_seeded, torch_threads
from mmsk.fusion._data import (
    BatchIterator,
    FusionDataset,
    block_key,
    block_stats,
    channel_stats,
    check_block,
    mask_blocks,
)
from mmsk.fusion.blocks import BlockLayout, find_layout, is_dict, resolve_towers
from mmsk.fusion.encoders import SEQUENCE_KINDS
from mmsk.fusion.modules import FUSIONS, FusionModule

__all__ = ["PREDICT_BATCH_SIZE", "FusionBase", "RefreshBatchNorm"]

#: Rows per batch when predicting (at least ``batch_size``).
PREDICT_BATCH_SIZE = 1024


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_fraction(name: str, value: Any, *, open_low: bool = False) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and 0 <= value < 1
    if not ok or (open_low and value == 0):
        interval = "(0, 1)" if open_low else "[0, 1)"
        raise ValueError(f"{name} must be a float in {interval}, got {value!r}")


class RefreshBatchNorm(Callback):
    """At the end of training, recompute the encoders' batch-norm statistics.

    One pass over the training rows (shuffled as in training, no gradients)
    with the final weights; see :meth:`FusionModule.refresh_batch_norm`. The
    estimators add it when a conv or sequence tower has batch norm. It runs
    after :class:`~skorch.callbacks.EarlyStopping` has restored the best
    weights.
    """

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Refresh the statistics from the training split of ``X``."""
        dataset, _ = net.get_split_datasets(X, y)
        batches = (to_tensor(xb, net.device) for xb, _ in net.get_iterator(dataset, training=True))
        net.module_.refresh_batch_norm(batches)


class FusionBase(BaseEstimator):
    """What the classifier and the regressor share: input, net, training."""

    _net_class: type = NeuralNetRegressor

    def _check_params(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name, low in [
            ("hidden_units", 1),
            ("n_layers", 1),
            ("n_heads", 1),
            ("rank", 1),
            ("max_epochs", 1),
            ("patience", 1),
        ]:
            _check_int(name, getattr(self, name), low)
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

    # -- input -----------------------------------------------------------------------------

    def _prepare(self, X: Any, y: Any = None, *, fit: bool) -> tuple[dict[str, Any], Any]:
        """Validate ``X`` (and ``y`` in fit), cut it into blocks, mask missing modalities.

        In ``fit`` this also learns the layout of the blocks and the tower of
        each (``_towers``), which tells which blocks hold token ids.
        """
        y_kwargs = {"multi_output": not self._is_clf(), "y_numeric": not self._is_clf()}
        if is_dict(X):
            if not X:
                raise ValueError("X is an empty dict; it needs at least one block")
            keys = [key for key in X if not isinstance(key, str)]
            if keys:
                raise ValueError(
                    f"a dict X's keys are modality names and must be str, got {keys[0]!r}"
                )
            if fit:
                y = validate_data(self, X="no_validation", y=y, reset=True, **y_kwargs)
            blocks = {name: check_block(block, f"X[{name!r}]") for name, block in X.items()}
            labels = {
                name: list(map(str, block.columns)) if hasattr(block, "columns") else None
                for name, block in X.items()
            }
            check_consistent_length(*blocks.values(), *([y] if fit else []))
            if fit:
                self.n_features_in_ = sum(block.shape[1] for block in blocks.values())
                self._layout = find_layout(blocks, None, self.modalities)
            layout = self._layout
            parts = layout.split(blocks)
            labels = [labels[name] for name in layout.names]
            names = labels
        else:
            params = {"accept_sparse": "csr", "dtype": np.float32, "ensure_all_finite": "allow-nan"}
            if fit:
                X, y = validate_data(self, X, y, reset=True, **params, **y_kwargs)
                names = getattr(self, "feature_names_in_", None)
                self._layout = find_layout(X, names, self.modalities)
            else:
                X = validate_data(self, X, reset=False, **params)
            layout = self._layout
            parts = layout.split(X)
            feature_names = getattr(self, "feature_names_in_", None)
            labels = [feature_names[c] if feature_names is not None else c for c in layout.columns]
            names = [None if feature_names is None else label for label in labels]
        if fit:
            self._towers = resolve_towers(
                self.towers,
                layout.names,
                layout.dims,
                names,
                hidden_units=self.hidden_units,
                n_layers=self.n_layers,
            )
        # (an estimator pickled before towers existed has MLP towers only)
        tokens = [kind in SEQUENCE_KINDS for kind, _ in getattr(self, "_towers", [])] or None
        return mask_blocks(parts, layout.names, labels, tokens), y

    def _set_layout_attributes(self, layout: BlockLayout) -> None:
        self.modalities_ = list(layout.names)
        self.modality_dims_ = dict(zip(layout.names, layout.dims, strict=True))
        self.modality_columns_ = {
            name: (None if layout.columns is None else layout.columns[i])
            for i, name in enumerate(layout.names)
        }
        self.towers_ = {
            name: (kind, dict(options))
            for name, (kind, options) in zip(layout.names, self._towers, strict=True)
        }

    def _tower_inputs(self, prepared: dict[str, Any]) -> tuple[list[Any] | None, list[Any] | None]:
        """Fill in the vocabulary sizes; return the input standardisation of each block.

        MLP towers standardise each feature, conv towers each channel, and
        sequence towers nothing (their blocks are token ids).
        """
        for i, (kind, options) in enumerate(self._towers):
            if kind in SEQUENCE_KINDS and options["vocab_size"] is None:
                block = prepared[block_key(i)]
                options["vocab_size"] = max(int(block.max(initial=0)) + 1, 2)
        if not self.standardize:
            return None, None
        means, scales = block_stats(prepared, len(self._towers))
        for i, (kind, options) in enumerate(self._towers):
            if kind in SEQUENCE_KINDS:
                means[i] = scales[i] = None
            elif kind == "conv":
                means[i], scales[i] = channel_stats(prepared, i, options["shape"])
        return means, scales

    # -- training --------------------------------------------------------------------------

    def _is_clf(self) -> bool:
        return self._net_class is NeuralNetClassifier

    def _fit(self, X: Any, y: Any) -> FusionBase:
        self._check_params()
        prepared, y = self._prepare(X, y, fit=True)
        y_train, n_outputs, net_kwargs = self._encode_target(y)
        n_samples = prepared["mask"].shape[0]
        if n_samples < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples to train, got n_samples=1"
            )
        means, scales = self._tower_inputs(prepared)
        self._set_layout_attributes(self._layout)
        rng = check_random_state(self.random_state)
        seed, shuffle_seed, split_seed = draw_seed(rng), draw_seed(rng), draw_seed(rng)
        self.device_ = resolve_device(self.device)

        callbacks = list(copy.deepcopy(self.callbacks)) if self.callbacks else []
        if self.early_stopping:
            callbacks.append(
                ("early_stopping", EarlyStopping(patience=self.patience, load_best=True))
            )
        if self.norm == "batch" and any(kind != "mlp" for kind, _ in self._towers):
            callbacks.append(("refresh_batch_norm", RefreshBatchNorm()))
        fraction = self.validation_fraction
        if fraction is None and self.early_stopping:
            fraction = 0.1
        train_split = None
        if fraction is not None:
            train_split = ValidSplit(fraction, stratified=self._is_clf(), random_state=split_seed)
        module_kwargs = {
            "dims": list(self._layout.dims),
            "n_outputs": n_outputs,
            "fusion": self.fusion,
            "hidden_units": self.hidden_units,
            "embed_dim": self.embed_dim,
            "n_layers": self.n_layers,
            "dropout": self.dropout,
            "norm": self.norm,
            "n_heads": self.n_heads,
            "rank": self.rank,
            "modality_dropout": self.modality_dropout,
            "means": means,
            "scales": scales,
            "towers": [(kind, dict(options)) for kind, options in self._towers],
        }
        optimizer_kwargs = dict(self.optimizer_kwargs or {})
        batch_size = self.batch_size
        self.net_ = self._net_class(
            module=FusionModule,
            criterion=self._default_criterion if self.criterion is None else self.criterion,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            callbacks=callbacks,
            dataset=FusionDataset,
            dataset__device=self.device_,
            iterator_train=BatchIterator,
            iterator_train__shuffle=True,
            iterator_train__seed=shuffle_seed,
            iterator_valid=BatchIterator,
            iterator_valid__batch_size=max(batch_size, PREDICT_BATCH_SIZE),
            device=self.device_,
            verbose=self.verbose,
            **{f"module__{key}": value for key, value in module_kwargs.items()},
            **{f"optimizer__{key}": value for key, value in optimizer_kwargs.items()},
            **net_kwargs,
        )
        with torch_threads(self.n_jobs), torch_seeded(seed, self.device_):
            self.net_.fit(prepared, y_train)
        return self

    def _net_output(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        prepared, _ = self._prepare(X, fit=False)
        with torch_threads(self.n_jobs):
            return np.asarray(self.net_.predict_proba(prepared), dtype=np.float64)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled estimator; ``device_`` follows skorch's device mapping."""
        super().__setstate__(state)
        if "net_" in self.__dict__:
            device = self.net_.device
            self.device_ = str(device) if isinstance(device, torch.device) else device
            # where skorch mapped the net (e.g. CUDA -> CPU), the data go too
            self.net_.dataset__device = self.net_.device

    def __sklearn_tags__(self) -> Tags:
        """Declare sparse and dict input; NaN only as a whole missing block."""
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.dict = True
        # NaN is accepted only where a whole block of a row is NaN (a missing
        # modality); scattered NaN raise, so the estimator does not claim allow_nan.
        tags.input_tags.allow_nan = False
        return tags
