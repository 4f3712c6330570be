"""FusionClassifier and FusionRegressor: scikit-learn estimators around a skorch net.

The estimators own their parameters (``__init__`` only stores them) and
build a skorch net in ``fit``, kept as ``net_``: skorch runs the training
loop, the callbacks, the history and the checkpoints, while the estimator
keeps scikit-learn's contract (``clone``, ``set_params``, the common
checks). They do not subclass skorch's ``NeuralNet``, whose ``__init__``
sets attributes and whose ``get_params`` exposes private ones. The target
handling (label encoding, class weights, target scaling) is in the mixins of
:mod:`mmsk.fusion._targets`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from skorch import NeuralNetClassifier, NeuralNetRegressor

from mmsk.fusion._core import FusionBase
from mmsk.fusion._docs import filled
from mmsk.fusion._targets import ClassifierTarget, RegressorTarget
from mmsk.fusion.export import export_onnx, onnx_inputs

__all__ = ["FusionClassifier", "FusionRegressor"]


@filled(
    class_weights="\n            ``class_weight`` multiplies in, as in scikit-learn.",
    weighted_target="",
    target_scaling="",
    criterion=":class:`torch.nn.CrossEntropyLoss`; the module outputs logits",
    split=", stratified by class",
    cw_short=" or ``class_weight``",
    cw_long=(
        ", or, with ``class_weight`` set, the\n"
        "        accuracy of the held-out rows with each row weighted by its class\n"
        '        weight (the balanced accuracy for ``"balanced"``), recorded as\n'
        "        ``valid_score``: the class-weighted loss, dominated by the few rows\n"
        "        of a rare class, rises as soon as the network starts to fit them,\n"
        "        and stopped training too early (petfinder, seeds 0-4: test\n"
        "        macro-F1 0.274 watching that loss, 0.299 watching this score)"
    ),
)
class FusionClassifier(ClassifierMixin, ClassifierTarget, FusionBase):
    """Fusion network classifier: one tower per modality block, fusion, head.

    A scikit-learn classifier that builds and trains a skorch
    :class:`~skorch.classifier.NeuralNetClassifier` (kept as ``net_``) on
    numeric modality blocks: a dict of 2-D arrays, a DataFrame whose columns
    carry ``name__`` prefixes (``ColumnTransformer(...).set_output(
    transform="pandas")``), any 2-D array with ``modalities=``, or plain 2-D
    input as a single block. Sparse blocks are densified batch by batch.
    A row whose block is all-NaN lacks that modality and is masked out of
    the fusion.

    Parameters
    ----------
    {network}
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn
        (``{label: weight}`` or ``"balanced"``).
    {tail}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    {attributes}

    See Also
    --------
    FusionRegressor : The same network for regression.

    Notes
    -----
    ``net_`` works on the prepared input (a dict ``{"x0": ..., "mask": ...}``
    of float32 blocks and the missing-modality mask) and on the encoded
    labels ``0 .. n_classes - 1``; call the estimator's own ``predict`` and
    ``predict_proba`` on raw input.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion import FusionClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = {"image": rng.normal(size=(60, 8)), "audio": rng.normal(size=(60, 4))}
    >>> y = (X["image"][:, 0] + X["audio"][:, 0] > 0).astype(int)
    >>> clf = FusionClassifier(fusion="gated", hidden_units=8, max_epochs=5, random_state=0)
    >>> clf.fit(X, y).modalities_
    ['image', 'audio']
    >>> clf.predict_proba(X).shape
    (60, 2)
    >>> len(clf.net_.history)
    5
    """

    _net_class = NeuralNetClassifier
    _default_criterion = torch.nn.CrossEntropyLoss

    def __init__(
        self,
        *,
        fusion: str = "concat",
        modalities: Mapping[str, Any] | None = None,
        towers: str | Mapping[str, Any] | None = None,
        hidden_units: int = 64,
        n_layers: int = 1,
        embed_dim: int | None = None,
        dropout: float = 0.1,
        norm: str | None = "batch",
        n_heads: int = 4,
        rank: int = 4,
        modality_dropout: float = 0.0,
        standardize: bool | str | Mapping[str, Any] = "auto",
        wide: bool | str | Sequence[str] = "auto",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        lr_schedule: str | None = "plateau",
        max_epochs: int = 100,
        batch_size: int = 128,
        optimizer: type = torch.optim.AdamW,
        optimizer_kwargs: dict[str, Any] | None = None,
        criterion: Any = None,
        callbacks: list[Any] | None = None,
        early_stopping: bool | str = "auto",
        validation_fraction: float | None = None,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        scoring: Any = None,
        n_estimators: int | str = "auto",
        patience: Any = "deprecated",
        class_weight: dict[Any, float] | str | None = None,
        device: Any = "auto",
        precision: str = "32",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.fusion = fusion
        self.modalities = modalities
        self.towers = towers
        self.hidden_units = hidden_units
        self.n_layers = n_layers
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.norm = norm
        self.n_heads = n_heads
        self.rank = rank
        self.modality_dropout = modality_dropout
        self.standardize = standardize
        self.wide = wide
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        self.criterion = criterion
        self.callbacks = callbacks
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.scoring = scoring
        self.n_estimators = n_estimators
        self.patience = patience
        self.class_weight = class_weight
        self.device = device
        self.precision = precision
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None
    ) -> FusionClassifier:
        """Find the modality blocks, build the skorch net and train it.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Training input, numeric. NaN only as whole missing blocks.
        y : array-like of shape (n_samples,)
            Class labels (int, str, ...).
        {fit_metadata}

        Returns
        -------
        self : FusionClassifier
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionClassifier
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> clf = FusionClassifier(hidden_units=8, max_epochs=2, random_state=0)
        >>> clf.fit(X, X[:, 0] > 0).classes_
        array([False,  True])
        >>> weight = np.where(X[:, 1] > 0, 2.0, 1.0)
        >>> clf.fit(X, X[:, 0] > 0, sample_weight=weight).history_[-1, "epoch"]
        2
        """
        return self._fit(X, y, sample_weight=sample_weight, groups=groups)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return class probabilities.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Input with the blocks seen in ``fit``. Rows may lack modalities
            (all-NaN blocks), but not all of them.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionClassifier
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> clf = FusionClassifier(hidden_units=8, max_epochs=2).fit(X, X[:, 0] > 0)
        >>> clf.predict_proba(X[:2]).sum(axis=1).round(6).tolist()
        [1.0, 1.0]
        """
        proba = self._net_output(X)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Return the most probable class of each row.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Input with the blocks seen in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionClassifier
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> y = np.where(X[:, 0] > 0, "pos", "neg")
        >>> FusionClassifier(hidden_units=8, max_epochs=2).fit(X, y).predict(X[:1]).dtype.kind
        'U'
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def to_onnx(self, path: Any, *, opset: int | None = None) -> Any:
        """Export the trained network to an ONNX model with explicit block inputs.

        The graph takes ``x0, mask0, x1, mask1, ...`` (one value and one
        presence mask per block of ``modalities_``; :meth:`onnx_inputs` makes
        them from raw input) and outputs ``"probabilities"``, what
        :meth:`predict_proba` returns (the average of the member nets when
        ``n_estimators > 1``), with a dynamic batch axis. The input scaling
        is in the graph. See :mod:`mmsk.fusion.export` and ``docs/export.md``.

        Parameters
        ----------
        path : str, path-like or binary file object
            Where to write the model.
        opset : int or None, default=None
            The ONNX opset (at least 14); None: 17.

        Returns
        -------
        path : str, path-like or binary file object
            ``path``, as given.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ImportError
            If the ``onnx`` package is missing (``pip install 'mmsk[onnx]'``).

        Examples
        --------
        >>> import os, tempfile, pytest
        >>> onnx, ort = pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")
        >>> import numpy as np
        >>> from mmsk.fusion import FusionClassifier
        >>> X = {"image": np.random.RandomState(0).normal(size=(40, 6)), "audio": np.ones((40, 2))}
        >>> clf = FusionClassifier(hidden_units=8, max_epochs=2, random_state=0)
        >>> clf.fit(X, X["image"][:, 0] > 0).modalities_
        ['image', 'audio']
        >>> path = clf.to_onnx(os.path.join(tempfile.mkdtemp(), "fusion.onnx"))
        >>> session = ort.InferenceSession(path)
        >>> [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        (['x0', 'mask0', 'x1', 'mask1'], ['probabilities'])
        >>> (proba,) = session.run(None, clf.onnx_inputs(X))
        >>> bool(np.allclose(proba, clf.predict_proba(X), atol=1e-5))
        True
        """
        return export_onnx(self, path, opset=opset)

    def onnx_inputs(self, X: Any) -> dict[str, np.ndarray]:
        """Return the inputs of the exported graph (:meth:`to_onnx`) for ``X``.

        ``X`` is checked, cut into blocks and masked as in
        :meth:`predict_proba`: a row whose block is all-NaN (all padding for
        token ids) lacks the modality, its mask is False and its values are
        zero. Sparse blocks are densified. Scaling is left to the graph.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Input with the blocks seen in ``fit``.

        Returns
        -------
        inputs : dict of str to ndarray
            ``{"x0": ..., "mask0": ..., "x1": ..., ...}``, in the graph's
            input order: ``x{i}`` of shape ``(n_samples, modality_dims_[name])``,
            float32, or int64 for a sequence tower's token ids; ``mask{i}``
            bool of shape ``(n_samples,)``.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionClassifier
        >>> X = {"image": np.random.RandomState(0).normal(size=(40, 6)), "audio": np.ones((40, 2))}
        >>> clf = FusionClassifier(hidden_units=8, max_epochs=2).fit(X, X["image"][:, 0] > 0)
        >>> X["audio"][1] = np.nan  # row 1 lacks the audio
        >>> inputs = clf.onnx_inputs(X)
        >>> [(name, a.dtype.name, a.shape) for name, a in inputs.items()][2:]
        [('x1', 'float32', (40, 2)), ('mask1', 'bool', (40,))]
        >>> inputs["mask1"][:3].tolist(), inputs["x1"][1].tolist()
        ([True, False, True], [0.0, 0.0])
        """
        return onnx_inputs(self, X)


@filled(
    class_weights="",
    weighted_target=" and target",
    target_scaling=", and each target likewise (predictions are scaled back)",
    criterion=":class:`torch.nn.MSELoss`",
    split="",
    cw_short="",
    cw_long="",
)
class FusionRegressor(RegressorMixin, RegressorTarget, FusionBase):
    """Fusion network regressor: one tower per modality block, fusion, head.

    A scikit-learn regressor that builds and trains a skorch
    :class:`~skorch.regressor.NeuralNetRegressor` (kept as ``net_``) on
    numeric modality blocks, found as for :class:`FusionClassifier`.
    Single- and multi-output targets; ``predict`` returns the shape of the
    ``y`` given to ``fit``.

    Parameters
    ----------
    {network}
    {tail}

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    target_mean_, target_scale_ : ndarray of shape (n_outputs_,)
        The target standardisation (zeros and ones if ``standardize=False``).
    {attributes}

    See Also
    --------
    FusionClassifier : The same network for classification.

    Notes
    -----
    With ``standardize=True`` the net learns the standardised target, so the
    losses in ``net_.history`` are in those units.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion import FusionRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = {"image": rng.normal(size=(60, 8)), "audio": rng.normal(size=(60, 4))}
    >>> y = 3 * X["image"][:, 0] - X["audio"][:, 1]
    >>> reg = FusionRegressor(fusion="late", hidden_units=8, max_epochs=5, random_state=0)
    >>> reg.fit(X, y).predict(X).shape
    (60,)
    """

    _net_class = NeuralNetRegressor
    _default_criterion = torch.nn.MSELoss

    def __init__(
        self,
        *,
        fusion: str = "concat",
        modalities: Mapping[str, Any] | None = None,
        towers: str | Mapping[str, Any] | None = None,
        hidden_units: int = 64,
        n_layers: int = 1,
        embed_dim: int | None = None,
        dropout: float = 0.1,
        norm: str | None = "batch",
        n_heads: int = 4,
        rank: int = 4,
        modality_dropout: float = 0.0,
        standardize: bool | str | Mapping[str, Any] = "auto",
        wide: bool | str | Sequence[str] = "auto",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        lr_schedule: str | None = "plateau",
        max_epochs: int = 100,
        batch_size: int = 128,
        optimizer: type = torch.optim.AdamW,
        optimizer_kwargs: dict[str, Any] | None = None,
        criterion: Any = None,
        callbacks: list[Any] | None = None,
        early_stopping: bool | str = "auto",
        validation_fraction: float | None = None,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        scoring: Any = None,
        n_estimators: int | str = "auto",
        patience: Any = "deprecated",
        device: Any = "auto",
        precision: str = "32",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.fusion = fusion
        self.modalities = modalities
        self.towers = towers
        self.hidden_units = hidden_units
        self.n_layers = n_layers
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.norm = norm
        self.n_heads = n_heads
        self.rank = rank
        self.modality_dropout = modality_dropout
        self.standardize = standardize
        self.wide = wide
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        self.criterion = criterion
        self.callbacks = callbacks
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.scoring = scoring
        self.n_estimators = n_estimators
        self.patience = patience
        self.device = device
        self.precision = precision
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None) -> FusionRegressor:
        """Find the modality blocks, build the skorch net and train it.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Training input, numeric. NaN only as whole missing blocks.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        {fit_metadata}

        Returns
        -------
        self : FusionRegressor
            The fitted estimator.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionRegressor
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> FusionRegressor(hidden_units=8, max_epochs=2).fit(X, X[:, :2]).n_outputs_
        2
        >>> groups = np.repeat(np.arange(8), 5)  # e.g. 8 speakers
        >>> reg = FusionRegressor(hidden_units=8, max_epochs=2, validation_fraction=0.25)
        >>> "valid_loss" in reg.fit(X, X[:, 0], groups=groups).history_[-1]
        True
        """
        return self._fit(X, y, sample_weight=sample_weight, groups=groups)

    def predict(self, X: Any) -> np.ndarray:
        """Predict the targets.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Input with the blocks seen in ``fit``. Rows may lack modalities
            (all-NaN blocks), but not all of them.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, 1-D if ``y`` was 1-D in ``fit``.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionRegressor
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> FusionRegressor(hidden_units=8, max_epochs=2).fit(X, X[:, 0]).predict(X).shape
        (40,)
        """
        out = self._net_output(X) * self.target_scale_ + self.target_mean_
        return out.ravel() if self._target_ndim == 1 else out

    def to_onnx(self, path: Any, *, opset: int | None = None) -> Any:
        """Export the trained network to an ONNX model with explicit block inputs.

        The graph takes ``x0, mask0, x1, mask1, ...`` (one value and one
        presence mask per block of ``modalities_``; :meth:`onnx_inputs` makes
        them from raw input) and outputs ``"predictions"`` (float64), what
        :meth:`predict` returns: in the target's own scale (the inverse
        target standardisation is in the graph), of shape ``(batch,)`` for a
        1-D ``y`` in ``fit`` and ``(batch, n_outputs_)`` otherwise, the
        average of the member nets when ``n_estimators > 1``. The batch axis
        is dynamic, the input scaling is in the graph. See
        :mod:`mmsk.fusion.export` and ``docs/export.md``.

        Parameters
        ----------
        path : str, path-like or binary file object
            Where to write the model.
        opset : int or None, default=None
            The ONNX opset (at least 14); None: 17.

        Returns
        -------
        path : str, path-like or binary file object
            ``path``, as given.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ImportError
            If the ``onnx`` package is missing (``pip install 'mmsk[onnx]'``).

        Examples
        --------
        >>> import os, tempfile, pytest
        >>> onnx, ort = pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")
        >>> import numpy as np
        >>> from mmsk.fusion import FusionRegressor
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> reg = FusionRegressor(hidden_units=8, max_epochs=2).fit(X, 100 + 10 * X[:, 0])
        >>> path = reg.to_onnx(os.path.join(tempfile.mkdtemp(), "fusion.onnx"))
        >>> (pred,) = ort.InferenceSession(path).run(None, reg.onnx_inputs(X))
        >>> pred.shape, bool(np.allclose(pred, reg.predict(X), rtol=1e-5))
        ((40,), True)
        """
        return export_onnx(self, path, opset=opset)

    def onnx_inputs(self, X: Any) -> dict[str, np.ndarray]:
        """Return the inputs of the exported graph (:meth:`to_onnx`) for ``X``.

        ``X`` is checked, cut into blocks and masked as in :meth:`predict`:
        a row whose block is all-NaN (all padding for token ids) lacks the
        modality, its mask is False and its values are zero. Sparse blocks
        are densified. Scaling is left to the graph.

        Parameters
        ----------
        X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
            Input with the blocks seen in ``fit``.

        Returns
        -------
        inputs : dict of str to ndarray
            ``{"x0": ..., "mask0": ..., "x1": ..., ...}``, in the graph's
            input order: ``x{i}`` of shape ``(n_samples, modality_dims_[name])``,
            float32, or int64 for a sequence tower's token ids; ``mask{i}``
            bool of shape ``(n_samples,)``.

        Examples
        --------
        >>> import numpy as np
        >>> from mmsk.fusion import FusionRegressor
        >>> X = np.random.RandomState(0).normal(size=(40, 3))
        >>> reg = FusionRegressor(hidden_units=8, max_epochs=2).fit(X, X[:, 0])
        >>> {name: a.shape for name, a in reg.onnx_inputs(X[:5]).items()}
        {'x0': (5, 3), 'mask0': (5,)}
        """
        return onnx_inputs(self, X)
