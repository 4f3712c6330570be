"""Pairs of modality blocks: input checks, the pair, the training plumbing of the retriever.

:class:`PairsMixin` holds what :class:`~mmsk.fusion.retrieval.CrossModalRetriever`
does around its net: find the blocks and the two modalities of the pair in
``fit``, find one modality's block again in ``transform`` (the full input,
a dict key, a DataFrame's columns or the block alone), the input scaling,
the validation plan and the callbacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from skorch.callbacks import EarlyStopping, LRScheduler

from mmsk.fusion._core import (
    DEFAULT_VALIDATION_FRACTION,
    MIN_AUTO_VALIDATION_ROWS,
    RefreshBatchNorm,
)
from mmsk.fusion._data import block_stats, channel_stats, check_block, mask_blocks, scaling_rule
from mmsk.fusion.blocks import find_layout, is_dict
from mmsk.fusion.encoders import SEQUENCE_KINDS

__all__ = ["PairsMixin"]


class PairsMixin:
    """Input, pair and training plumbing of :class:`~mmsk.fusion.retrieval.CrossModalRetriever`."""

    def _pair(self, names: list[str]) -> tuple[str, str]:
        """Resolve ``query`` and ``target`` against the blocks found in ``X``."""
        if len(names) < 2:
            raise ValueError(
                f"CrossModalRetriever needs two modalities, but X has one block, {names[0]!r}; "
                "pass a dict of two blocks, a DataFrame with two 'name__' column prefixes "
                "(a ColumnTransformer with pandas output) or modalities="
            )
        for name in ("query", "target"):
            value = getattr(self, name)
            if value is not None and value not in names:
                raise ValueError(f"{name}={value!r} is not a modality of X; its blocks are {names}")
        query, target = self.query, self.target
        if query is None or target is None:
            if len(names) != 2:
                raise ValueError(
                    f"X has {len(names)} blocks {names}; name the pair with query= and target="
                )
            query = query or next(n for n in names if n != target)
            target = target or next(n for n in names if n != query)
        if query == target:
            raise ValueError(f"query and target must be two modalities, both are {query!r}")
        return query, target

    def _labels(self, positions: list[int]) -> list[Any]:
        names = getattr(self, "feature_names_in_", None)
        if self._layout.columns is None:
            return [self._dict_labels.get(self._layout.names[p]) for p in positions]
        return [None if names is None else list(names[self._layout.columns[p]]) for p in positions]

    def _validate_fit(self, X: Any, y: Any) -> tuple[list[Any], Any]:
        """Validate ``X`` (and ``y``), learn the layout; return the blocks of the pair."""
        if is_dict(X):
            if not X or any(not isinstance(key, str) for key in X):
                raise ValueError("a dict X needs str keys (modality names) and a block per key")
            blocks = {name: check_block(block, f"X[{name!r}]") for name, block in X.items()}
            check_consistent_length(*blocks.values())
            self.n_features_in_ = sum(b.shape[1] for b in blocks.values())
            self.__dict__.pop("feature_names_in_", None)
            self._layout = find_layout(blocks, None, self.modalities)
            self._dict_labels = {
                name: list(map(str, block.columns)) if hasattr(block, "columns") else None
                for name, block in X.items()
            }
            parts = self._layout.split(blocks)
        else:
            X = validate_data(
                self,
                X,
                reset=True,
                accept_sparse="csr",
                dtype=np.float32,
                ensure_all_finite="allow-nan",
                ensure_min_samples=2,
            )
            self._layout = find_layout(X, getattr(self, "feature_names_in_", None), self.modalities)
            parts = self._layout.split(X)
        if y is not None:
            y = column_or_1d(y, warn=True)
            check_consistent_length(parts[0], y)
        return parts, y

    def _block(self, X: Any, modality: str | None) -> tuple[np.ndarray, int]:
        """Return the prepared block of one modality of ``X`` and its tower index."""
        check_is_fitted(self)
        pair = self.modalities_
        if modality is not None and modality not in pair:
            raise ValueError(f"modality must be one of {pair} or None, got {modality!r}")
        names = getattr(self, "feature_names_in_", None)
        position = {m: self._layout.names.index(m) for m in pair}
        block: Any = None
        if is_dict(X):
            held = [m for m in pair if m in X]
            if modality is None:
                if not held:
                    raise ValueError(f"the dict X holds neither modality {pair}: {list(X)}")
                modality = held[0] if len(held) == 1 else self.query_
            if modality not in X:
                raise ValueError(f"X lacks modality {modality!r}; its keys are {list(X)}")
            block = check_block(X[modality], f"X[{modality!r}]")
        elif hasattr(X, "columns") and names is not None and X.shape[1] != self.n_features_in_:
            columns = set(map(str, X.columns))
            own = {m: list(names[self._layout.columns[position[m]]]) for m in pair}
            if modality is None:
                held = [m for m in pair if set(own[m]) <= columns]
                modality = held[0] if len(held) == 1 else self.query_
            if not set(own[modality]) <= columns:
                missing = next(c for c in own[modality] if c not in columns)
                raise ValueError(
                    f"X lacks the column {missing!r} of modality {modality!r} (and maybe more)"
                )
            block = check_block(X[own[modality]], f"X[{modality!r}]")
        else:
            modality = self.query_ if modality is None else modality
            if self._layout.columns is not None:  # fitted on 2-D input: the same columns
                X = validate_data(
                    self,
                    X,
                    reset=False,
                    accept_sparse="csr",
                    dtype=np.float32,
                    ensure_all_finite="allow-nan",
                )
                block = self._layout.split(X)[position[modality]]
            else:
                block = check_block(X, "X")
                dim = self.modality_dims_[modality]
                if block.shape[1] != dim:
                    raise ValueError(
                        f"X has {block.shape[1]} features, but CrossModalRetriever is expecting "
                        f"{self.n_features_in_} features as input (or {dim} for modality "
                        f"{modality!r} alone)"
                    )
        i = pair.index(modality)
        dim = self.modality_dims_[modality]
        if block.shape[1] != dim:
            raise ValueError(
                f"modality {modality!r} has {block.shape[1]} features, but the estimator was "
                f"fitted with {dim} features for it"
            )
        tokens = [self._towers[i][0] in SEQUENCE_KINDS]
        prepared = mask_blocks([block], [modality], [None], tokens)
        return prepared["x0"], i

    # -- fit ---------------------------------------------------------------------------------

    def _scaling_rules(self) -> list[str]:
        if not isinstance(self.standardize, Mapping):
            return [scaling_rule(self.standardize, "standardize")] * 2
        unknown = [key for key in self.standardize if key not in self.modalities_]
        if unknown:
            raise ValueError(
                f"standardize has an entry for {unknown[0]!r}, which is not one of the "
                f"modalities {self.modalities_}"
            )
        return [
            scaling_rule(self.standardize.get(m, "auto"), f"standardize[{m!r}]")
            for m in self.modalities_
        ]

    def _tower_inputs(self, prepared: dict[str, Any]) -> tuple[Any, Any]:
        for i, (kind, options) in enumerate(self._towers):
            if kind in SEQUENCE_KINDS and options["vocab_size"] is None:
                options["vocab_size"] = max(int(prepared[f"x{i}"].max(initial=0)) + 1, 2)
        rules = self._scaling_rules()
        means, scales = block_stats(prepared, 2, rules)
        for i, (kind, options) in enumerate(self._towers):
            if kind in SEQUENCE_KINDS or rules[i] == "none":
                means[i] = scales[i] = None
            elif kind == "conv":
                means[i], scales[i] = channel_stats(prepared, i, options["shape"])
        return means, scales

    def _validation_plan(self, n_samples: int) -> tuple[float | None, bool]:
        fraction = self.validation_fraction
        if self.early_stopping is False:
            return fraction, False
        planned = DEFAULT_VALIDATION_FRACTION if fraction is None else fraction
        n_valid = int(np.ceil(planned * n_samples))
        ok = n_valid >= 2 and n_samples - n_valid >= 2
        if self.early_stopping == "auto":
            if ok and n_valid >= MIN_AUTO_VALIDATION_ROWS:
                return planned, True
            return fraction, False
        if not ok:
            raise ValueError(
                f"early_stopping=True needs a validation split, but {planned} of {n_samples} "
                "pairs leaves fewer than 2 pairs to train or to validate on"
            )
        return planned, True

    def _callbacks(self, validating: bool, stop_early: bool) -> list[Any]:
        monitor = "valid_loss" if validating else "train_loss"
        callbacks: list[Any] = []
        if self.lr_schedule == "plateau":
            policy = dict(policy="ReduceLROnPlateau", monitor=monitor, mode="min", factor=0.3)
            patience = max(1, self.n_iter_no_change // 2 - 1)
            callbacks.append(("lr_schedule", LRScheduler(**policy, patience=patience)))
        elif self.lr_schedule == "cosine":
            callbacks.append(
                ("lr_schedule", LRScheduler(policy="CosineAnnealingLR", T_max=self.max_epochs))
            )
        if stop_early:
            stop = EarlyStopping(
                monitor=monitor,
                patience=self.n_iter_no_change,
                threshold=self.tol,
                threshold_mode="abs",
                load_best=True,
            )
            callbacks.append(("early_stopping", stop))
        if self.norm == "batch" and any(kind != "mlp" for kind, _ in self._towers):
            callbacks.append(("refresh_batch_norm", RefreshBatchNorm()))
        return callbacks
