"""The lean inference path of the fusion estimators.

``predict`` and ``predict_proba`` go from the validated, masked blocks
straight to the network's module, under :func:`torch.inference_mode`, with
what skorch's ``predict_proba`` would use: the same dataset and batch
iterator (so the same batches), the same module call and the same output
nonlinearity. The numbers are bit-identical to ``net_.predict_proba``; what
goes away is skorch's per-batch machinery (fitted checks, training-mode
switches, recursive tensor conversion), and, in :func:`frame_values`, the
per-column dtype inspection of a wide DataFrame that scikit-learn's
``check_array`` makes at every call.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import numpy as np
import torch
from skorch.utils import to_numpy

from mmsk.fusion._precision import float32_outputs, module_autocast

__all__ = ["frame_values", "net_output"]

# The fitted column names of an estimator as a pandas Index (compared in microseconds).
_NAME_INDEX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _name_index(estimator: Any, names: np.ndarray) -> Any:
    cached = _NAME_INDEX.get(estimator)
    if cached is not None and cached[0] is names:
        return cached[1]
    import pandas as pd

    index = pd.Index(names)
    _NAME_INDEX[estimator] = (names, index)
    return index


def frame_values(estimator: Any, X: Any) -> np.ndarray | None:
    """Return a DataFrame's values as float32 when scikit-learn's checks would pass them.

    That is when ``X`` has exactly the fitted columns (``feature_names_in_``,
    in order), at least one row, float columns and no infinity: then
    ``validate_data(estimator, X, reset=False, dtype=float32,
    ensure_all_finite="allow-nan")`` returns these same values, found in
    microseconds instead of a Python loop over every column's dtype. Any
    other input gets None, and the caller runs scikit-learn's checks (with
    their messages and warnings).

    Parameters
    ----------
    estimator : fitted estimator
        Gives ``feature_names_in_``.
    X : object
        The input of ``predict``.

    Returns
    -------
    ndarray of float32 or None
        The values, or None where the full checks must run.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.base import BaseEstimator
    >>> from mmsk.fusion._predict import frame_values
    >>> est = BaseEstimator()
    >>> est.feature_names_in_ = np.array(["a__0", "b__0"], dtype=object)
    >>> frame_values(est, pd.DataFrame({"a__0": [1.5], "b__0": [2.0]})).dtype
    dtype('float32')
    >>> frame_values(est, pd.DataFrame({"b__0": [1.5], "a__0": [2.0]})) is None
    True
    """
    names = estimator.__dict__.get("feature_names_in_")
    pd = sys.modules.get("pandas")  # a DataFrame means pandas is imported already
    if names is None or pd is None or not isinstance(X, pd.DataFrame):
        return None
    if X.shape[0] < 1 or X.shape[1] != len(names):
        return None
    index = _name_index(estimator, names)
    if X.columns is not index:
        if not X.columns.equals(index):
            return None
        # an equal Index (immutable) stands for the names from now on: the
        # next frame named with that same Index object is matched at once
        _NAME_INDEX[estimator] = (names, X.columns)
    values = X.to_numpy()  # all-float32 columns give float32, a mix of floats float64
    if values.dtype != np.float32:
        if values.dtype != np.float64:
            return None
        for dtype in set(X.dtypes.values):  # an int column would be float64 here too
            if not (isinstance(dtype, np.dtype) and dtype.kind == "f"):
                return None
        values = values.astype(np.float32)
    if values.ndim != 2 or np.isinf(values).any():
        return None
    return values


def net_output(net: Any, prepared: dict[str, Any]) -> np.ndarray:
    """Return what ``net.predict_proba(prepared)`` returns, without skorch's per-call machinery.

    Parameters
    ----------
    net : skorch.NeuralNet
        A fitted net of a fusion estimator (its dataset is
        :class:`~mmsk.fusion._data.FusionDataset`).
    prepared : dict
        The prepared dict of the blocks and the mask.

    Returns
    -------
    ndarray
        The net's outputs after its prediction nonlinearity (softmax for a
        classifier), bit-identical to ``net.predict_proba(prepared)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion import FusionClassifier
    >>> from mmsk.fusion._predict import net_output
    >>> X = np.random.RandomState(0).normal(size=(40, 3))
    >>> clf = FusionClassifier(hidden_units=8, max_epochs=2, random_state=0).fit(X, X[:, 0] > 0)
    >>> prepared, _ = clf._prepare(X, fit=False)
    >>> bool((net_output(clf.net_, prepared) == clf.net_.predict_proba(prepared)).all())
    True
    """
    nonlinearity = net._get_predict_nonlinearity()
    module, device = net.module_, net.device
    if module.training:  # skorch switches to eval mode before every batch
        module.train(False)
    with torch.inference_mode(), module_autocast(net):  # (float32 unless precision= says)
        outputs = [
            to_numpy(nonlinearity(float32_outputs(module(**batch)).to("cpu")))
            for batch in _batches(net, prepared, device)
        ]
    return np.concatenate(outputs, 0)


def _batches(net: Any, prepared: dict[str, Any], device: Any) -> Any:
    """Yield the batches skorch's ``forward_iter`` would make, as dicts of tensors on ``device``.

    A dense input within one batch is that batch itself: its tensors are made
    directly (the values and shapes of ``FusionDataset.batch(slice(0, n))``).
    """
    n = prepared["mask"].shape[0]
    size = net.get_params_for("iterator_valid").get("batch_size", net.batch_size)
    dense = all(isinstance(value, np.ndarray) for value in prepared.values())
    if dense and (size == -1 or n <= size):
        yield {key: torch.from_numpy(value).to(device) for key, value in prepared.items()}
        return
    for batch, _ in net.get_iterator(net.get_dataset(prepared), training=False):
        yield {key: value.to(device) for key, value in batch.items()}
