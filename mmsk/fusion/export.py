"""Export a fitted fusion estimator's network to ONNX, and prepare its inputs.

The extractors and the block logic stay in Python (numpy, scikit-learn); the
trained network becomes one ONNX graph that onnxruntime serves without
torch. The graph takes explicit block inputs, two per modality block in the
order of ``modalities_``::

    x0, mask0, x1, mask1, ..., x{M-1}, mask{M-1}

- ``x{i}``: the block's values, shape ``(batch, modality_dims_[name])``,
  float32, or int64 token ids for a sequence tower (GRU, LSTM, transformer);
  a row that lacks the modality is zero-filled;
- ``mask{i}``: bool, shape ``(batch,)``, True where the row has the modality.

The input scaling (``standardize``) is inside the graph, as it is inside the
network. The output is ``"probabilities"`` (``(batch, n_classes)``, what
``predict_proba`` returns) for :class:`~mmsk.fusion.FusionClassifier`, and
``"predictions"`` for :class:`~mmsk.fusion.FusionRegressor`, in the original
target scale (the inverse target scaling is in the graph, in float64 as in
``predict``) and of the shape ``predict`` returns. With ``n_estimators > 1``
the graph averages the member nets as ``predict_proba`` and ``predict`` do.
The batch axis is dynamic.

:func:`onnx_inputs` turns raw estimator input into exactly these arrays.
The model's metadata (key ``"mmsk"``, JSON) records the layout of the blocks,
so a service without torch can build the inputs with numpy alone (see
``docs/export.md``).

Why the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``): the
``torch.export``-based one cannot export the sequence towers, whose packed
RNN has data-dependent batch sizes and whose transformer trims the batch to
its longest row (a data-dependent length); tracing handles both (the trace
example has rows of full length, so the trim is a no-op in the graph, which
gives the same outputs).
"""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
from typing import IO, Any

import numpy as np
import torch
from scipy import sparse
from sklearn.utils.validation import check_is_fitted
from torch import nn

from mmsk._optional import import_optional
from mmsk.fusion.encoders import SEQUENCE_KINDS
from mmsk.fusion.modules import MIN_EVAL_ROWS

__all__ = [
    "DEFAULT_OPSET",
    "METADATA_KEY",
    "FusionExport",
    "export_onnx",
    "onnx_input_names",
    "onnx_inputs",
]

#: The ONNX opset of the exported graph when ``opset=None``.
DEFAULT_OPSET = 17
#: The oldest opset the graph can be written in.
MIN_OPSET = 14
#: The key of the model metadata that describes the inputs (a JSON object).
METADATA_KEY = "mmsk"


class FusionExport(nn.Module):
    """The exported network: the member nets on positional block inputs, averaged.

    A thin wrapper around the trained :class:`~mmsk.fusion.modules.FusionModule`
    of each member of the ensemble. ``forward`` takes the inputs in the order
    ``x0, mask0, x1, mask1, ...`` and calls each member as
    ``module(mask, x0=..., x1=...)``, as skorch does; each member's output goes
    through its net's prediction nonlinearity (softmax for the classifier),
    and the outputs are averaged.

    Parameters
    ----------
    members : list of torch.nn.Module
        The member nets' modules, in evaluation mode.
    nonlinearities : list of callable
        Per member, what turns its output into a prediction
        (``net._get_predict_nonlinearity()`` in skorch).
    task : {"classifier", "regressor"}
        The classifier renormalises the averaged probabilities (as
        ``predict_proba`` does); the regressor undoes the target scaling.
    target_mean, target_scale : array-like of shape (n_outputs,) or None, default=None
        The regressor's target standardisation: predictions are
        ``output * target_scale + target_mean``, in float64 (as ``predict``
        computes them); None: the output as it is.
    flatten : bool, default=False
        Return ``(batch,)`` instead of ``(batch, 1)`` (a regressor fitted on
        a 1-D target).

    Examples
    --------
    >>> import torch
    >>> from mmsk.fusion.export import FusionExport
    >>> from mmsk.fusion.modules import FusionModule
    >>> net = FusionModule(dims=[3, 2], n_outputs=2, hidden_units=4).eval()
    >>> wrapper = FusionExport([net], [lambda out: torch.softmax(out, dim=-1)], task="classifier")
    >>> present = torch.ones(5, dtype=torch.bool)
    >>> wrapper(torch.zeros(5, 3), present, torch.zeros(5, 2), present).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        members: list[nn.Module],
        nonlinearities: list[Any],
        *,
        task: str,
        target_mean: np.ndarray | None = None,
        target_scale: np.ndarray | None = None,
        flatten: bool = False,
    ) -> None:
        super().__init__()
        if task not in ("classifier", "regressor"):
            raise ValueError(f"task must be 'classifier' or 'regressor', got {task!r}")
        self.members = nn.ModuleList(members)
        self.nonlinearities = list(nonlinearities)
        self.task = task
        self.flatten = flatten
        self.scaled = target_mean is not None
        if self.scaled:
            self.register_buffer("target_mean", torch.as_tensor(target_mean, dtype=torch.float64))
            self.register_buffer("target_scale", torch.as_tensor(target_scale, dtype=torch.float64))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Map ``x0, mask0, x1, mask1, ...`` to probabilities or predictions."""
        blocks = {f"x{i}": x for i, x in enumerate(inputs[0::2])}
        mask = torch.stack(list(inputs[1::2]), dim=1)
        outputs = [
            nonlinearity(member(mask, **blocks))
            for member, nonlinearity in zip(self.members, self.nonlinearities, strict=True)
        ]
        out = outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(dim=0)
        if self.task == "classifier":
            return out / out.sum(dim=1, keepdim=True)
        if self.scaled:
            out = out.to(torch.float64) * self.target_scale + self.target_mean
        return out[:, 0] if self.flatten else out


def _members(estimator: Any) -> list[Any]:
    return estimator.__dict__.get("nets_") or [estimator.net_]


def _is_tokens(estimator: Any) -> list[bool]:
    """Per block, whether it holds token ids (int64 input)."""
    towers = getattr(estimator, "towers_", {})  # (pickled before towers existed: MLPs)
    return [towers.get(name, ("mlp", {}))[0] in SEQUENCE_KINDS for name in estimator.modalities_]


def _output_name(estimator: Any) -> str:
    return "probabilities" if estimator._is_clf() else "predictions"


def onnx_input_names(estimator: Any) -> list[str]:
    """Return the names of the exported graph's inputs, in their positional order.

    Parameters
    ----------
    estimator : FusionClassifier or FusionRegressor
        A fitted fusion estimator.

    Returns
    -------
    list of str
        ``["x0", "mask0", "x1", "mask1", ...]``, one pair per block of
        ``modalities_``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion import FusionRegressor
    >>> from mmsk.fusion.export import onnx_input_names
    >>> X = {"a": np.random.RandomState(0).normal(size=(30, 3)), "b": np.ones((30, 2))}
    >>> reg = FusionRegressor(hidden_units=4, max_epochs=1).fit(X, X["a"][:, 0])
    >>> onnx_input_names(reg)
    ['x0', 'mask0', 'x1', 'mask1']
    """
    check_is_fitted(estimator)
    return [name for i in range(len(estimator.modalities_)) for name in (f"x{i}", f"mask{i}")]


def onnx_inputs(estimator: Any, X: Any) -> dict[str, np.ndarray]:
    """Turn input of the estimator into the exported graph's inputs.

    ``X`` is checked, cut into blocks and masked exactly as in ``predict``
    (a block that is all-NaN in a row, or all padding for token ids, is a
    missing modality: mask False, values zero). Sparse blocks are densified.
    Needs no ONNX package.

    Parameters
    ----------
    estimator : FusionClassifier or FusionRegressor
        A fitted fusion estimator.
    X : dict of 2-D arrays, DataFrame, array-like or sparse matrix
        Input with the blocks seen in ``fit``.

    Returns
    -------
    dict of str to ndarray
        ``{"x0": ..., "mask0": ..., ...}`` in the graph's input order:
        ``x{i}`` of shape ``(n_samples, width)``, float32 (int64 for token
        ids), ``mask{i}`` bool of shape ``(n_samples,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from mmsk.fusion import FusionRegressor
    >>> from mmsk.fusion.export import onnx_inputs
    >>> X = {"a": np.random.RandomState(0).normal(size=(30, 3)), "b": np.ones((30, 2))}
    >>> reg = FusionRegressor(hidden_units=4, max_epochs=1).fit(X, X["a"][:, 0])
    >>> X["b"][0] = np.nan
    >>> inputs = onnx_inputs(reg, X)
    >>> {name: (a.dtype.name, a.shape) for name, a in inputs.items()}["x1"]
    ('float32', (30, 2))
    >>> inputs["mask1"][:3].tolist()
    [False, True, True]
    """
    check_is_fitted(estimator)
    prepared, _ = estimator._prepare(X, fit=False)
    mask = prepared["mask"]
    out: dict[str, np.ndarray] = {}
    for i, tokens in enumerate(_is_tokens(estimator)):
        block = prepared[f"x{i}"]
        block = block.toarray() if sparse.issparse(block) else block
        out[f"x{i}"] = np.ascontiguousarray(block, dtype=np.int64 if tokens else np.float32)
        out[f"mask{i}"] = np.ascontiguousarray(mask[:, i], dtype=bool)
    return out


def _wrapper(estimator: Any) -> FusionExport:
    """Build the exported module from copies of the member nets, on the CPU."""
    members, nonlinearities = [], []
    for net in _members(estimator):
        member = copy.deepcopy(net.module_).to("cpu")  # the estimator's net stays as it is
        nn.Module.train(member, False)  # every submodule, whatever FusionModule.train skips
        members.append(member)
        nonlinearities.append(net._get_predict_nonlinearity())
    if estimator._is_clf():
        return FusionExport(members, nonlinearities, task="classifier")
    return FusionExport(
        members,
        nonlinearities,
        task="regressor",
        target_mean=estimator.target_mean_,
        target_scale=estimator.target_scale_,
        flatten=estimator._target_ndim == 1,
    )


def _example(estimator: Any) -> tuple[torch.Tensor, ...]:
    """Trace inputs: MIN_EVAL_ROWS rows, every modality present, token rows of full length.

    With at least ``MIN_EVAL_ROWS`` rows the trace takes no small-batch
    padding branch; with full-length token rows the transformer tower's trim
    to the longest row is the identity, so the traced graph is right for any
    row length.
    """
    n = MIN_EVAL_ROWS
    example: list[torch.Tensor] = []
    for name, tokens in zip(estimator.modalities_, _is_tokens(estimator), strict=True):
        width = estimator.modality_dims_[name]
        values = torch.ones(n, width, dtype=torch.int64) if tokens else torch.zeros(n, width)
        example += [values, torch.ones(n, dtype=torch.bool)]
    return tuple(example)


def _metadata(estimator: Any, names: list[str]) -> dict[str, Any]:
    """Describe the inputs for a service that lacks the estimator (a JSON-able dict)."""
    from mmsk import __version__

    columns = estimator.modality_columns_
    blocks = [
        {
            "modality": name,
            "value": names[2 * i],
            "mask": names[2 * i + 1],
            "dtype": "int64" if tokens else "float32",
            "width": int(estimator.modality_dims_[name]),
            "columns": None if columns[name] is None else [int(c) for c in columns[name]],
        }
        for i, (name, tokens) in enumerate(
            zip(estimator.modalities_, _is_tokens(estimator), strict=True)
        )
    ]
    feature_names = getattr(estimator, "feature_names_in_", None)
    meta: dict[str, Any] = {
        "estimator": type(estimator).__name__,
        "mmsk_version": __version__,
        "output": _output_name(estimator),
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": None if feature_names is None else [str(f) for f in feature_names],
        "blocks": blocks,
    }
    if estimator._is_clf():
        meta["classes"] = [c.item() if isinstance(c, np.generic) else c for c in estimator.classes_]
    return meta


def export_onnx(
    estimator: Any, path: str | os.PathLike[str] | IO[bytes], *, opset: int | None = None
) -> Any:
    """Write a fitted fusion estimator's network as an ONNX model.

    The graph's inputs are ``x0, mask0, x1, mask1, ...`` (see
    :func:`onnx_inputs`, which makes them), its output is
    ``"probabilities"`` (classifier) or ``"predictions"`` (regressor, in
    the target's scale); see the module docstring.

    Parameters
    ----------
    estimator : FusionClassifier or FusionRegressor
        A fitted fusion estimator.
    path : str, path-like or binary file object
        Where to write the model.
    opset : int or None, default=None
        The ONNX opset, at least 14; None: :data:`DEFAULT_OPSET`.

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
    >>> import numpy as np, tempfile, os
    >>> from mmsk.fusion import FusionClassifier
    >>> from mmsk.fusion.export import export_onnx, onnx_inputs
    >>> import pytest
    >>> onnx, ort = pytest.importorskip("onnx"), pytest.importorskip("onnxruntime")
    >>> X = np.random.RandomState(0).normal(size=(40, 3))
    >>> clf = FusionClassifier(hidden_units=8, max_epochs=2, random_state=0).fit(X, X[:, 0] > 0)
    >>> path = export_onnx(clf, os.path.join(tempfile.mkdtemp(), "clf.onnx"))
    >>> (proba,) = ort.InferenceSession(path).run(None, onnx_inputs(clf, X))
    >>> bool(np.allclose(proba, clf.predict_proba(X), atol=1e-5))
    True
    """
    check_is_fitted(estimator)
    pretrained = [
        n for n, (kind, _) in getattr(estimator, "towers_", {}).items() if kind == "pretrained"
    ]
    if pretrained:
        raise ValueError(
            f"export_onnx: block {pretrained[0]!r} has a 'pretrained' (Hugging Face) tower, "
            "which this exporter does not trace; save the estimator with mmsk.save instead"
        )
    onnx = import_optional("onnx", "onnx")
    if opset is None:
        opset = DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be None or an int >= {MIN_OPSET}, got {opset!r}")
    wrapper = _wrapper(estimator)
    names = onnx_input_names(estimator)
    output = _output_name(estimator)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one,
        # which cannot export the sequence towers (see the module docstring).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        # Python values the trace fixes (the transformer's longest row, shape checks
        # in attention) are right for every input, given the example of `_example`.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # The RNN's initial state follows the batch size (RecurrentEncoder makes it
        # from the input's shape), so other batch sizes than the example's run.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        with torch.enable_grad():  # no grad-free fast paths (fused attention) in the trace
            torch.onnx.export(
                wrapper,
                _example(estimator),
                buffer,
                dynamo=False,
                input_names=names,
                output_names=[output],
                dynamic_axes={name: {0: "batch"} for name in [*names, output]},
                opset_version=opset,
            )
    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(_metadata(estimator, names), default=str)
    model.doc_string = (
        f"mmsk {type(estimator).__name__}: inputs {', '.join(names)}; output {output!r}"
    )
    onnx.save(model, path)
    return path
