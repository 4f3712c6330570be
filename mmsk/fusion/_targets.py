"""The fusion estimators' target handling: labels or values -> what the net trains on.

:class:`ClassifierTarget` (a mixin of
:class:`~mmsk.fusion.estimators.FusionClassifier`) checks the labels,
encodes them as class indices (``classes_``) and turns ``class_weight`` into
the criterion's weights; :class:`RegressorTarget` (a mixin of
:class:`~mmsk.fusion.estimators.FusionRegressor`) standardises the targets
(``target_mean_``, ``target_scale_``, weighted by ``sample_weight``) and
declares multi-output support. ``_encode_target`` returns the encoded
target, the number of outputs and the net's extra arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.utils import Tags
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target

__all__ = ["ClassifierTarget", "RegressorTarget"]


class ClassifierTarget:
    """Class labels -> class indices, and ``class_weight`` -> the criterion's weights."""

    def _encode_target(
        self, y: Any, sample_weight: np.ndarray | None = None
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"FusionClassifier supports binary and multiclass y, got {kind!r} y")
        classes, y_encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"FusionClassifier needs samples of at least 2 classes in y; got 1 class "
                f"({classes[0]!r})"
            )
        if sample_weight is not None:
            weighted = np.unique(y_encoded[sample_weight > 0])
            if len(weighted) < 2:
                raise ValueError(
                    "FusionClassifier needs positive sample_weight on samples of at least 2 "
                    f"classes; all the weight is on class {classes[weighted[0]].tolist()!r}"
                )
        self.classes_ = classes
        net_kwargs: dict[str, Any] = {"classes": list(range(len(classes)))}
        if self.class_weight is not None:
            weight = compute_class_weight(
                self.class_weight, classes=classes, y=y, sample_weight=sample_weight
            )
            weight[~np.isfinite(weight)] = 1.0  # a class of zero total weight counts nothing
            # an array here (plain data in a saved model); _build_net makes it a tensor
            net_kwargs["criterion__weight"] = np.asarray(weight, dtype=np.float32)
        return y_encoded.astype(np.int64), len(classes), net_kwargs


class RegressorTarget:
    """Values -> standardised float32 targets; multi-output tags."""

    def _encode_target(
        self, y: Any, sample_weight: np.ndarray | None = None
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        if sparse.issparse(y):
            raise ValueError("FusionRegressor needs a dense y; got a sparse matrix")
        y = np.asarray(y, dtype=np.float64)
        self._target_ndim = y.ndim
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        scaled = self.standardize is not False and self.standardize != "none"
        if scaled and sample_weight is not None:
            mean = np.average(y2, axis=0, weights=sample_weight)
            scale = np.sqrt(np.average(np.square(y2 - mean), axis=0, weights=sample_weight))
            scale[~(scale > 1e-12)] = 1.0
        elif scaled:
            mean, scale = y2.mean(axis=0), y2.std(axis=0)
            scale[~(scale > 1e-12)] = 1.0
        else:
            mean, scale = np.zeros(self.n_outputs_), np.ones(self.n_outputs_)
        self.target_mean_, self.target_scale_ = mean, scale
        return ((y2 - mean) / scale).astype(np.float32), self.n_outputs_, {}

    def __sklearn_tags__(self) -> Tags:
        """Declare multi-output support on top of the shared tags."""
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
