"""precision= ("32", "bf16", "16-mixed") of the fusion estimators.

What runs on a CPU is tested on the CPU: bfloat16 autocast in fit,
predict and transform, the checks, "16-mixed" refused on a CPU, the
parameter through clone, grid search, pickle and model files, float32 ONNX
export. The ``gpu`` tests (deselected by default) fit in every precision
on CUDA.
"""

import pickle

import numpy as np
import onnx
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from skorch import NeuralNetClassifier, NeuralNetRegressor

import mmsk
from mmsk.fusion import FusionClassifier, FusionRegressor
from mmsk.fusion._precision import PRECISIONS, autocast

FAST = {"hidden_units": 16, "max_epochs": 30, "random_state": 0, "early_stopping": False}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")


def _linear_output_dtypes(estimator):
    """Record the dtype of every Linear output while the estimator runs."""
    seen = set()

    def hook(module, args, output):
        seen.add(output.dtype)

    handles = [
        m.register_forward_hook(hook)
        for m in estimator.net_.module_.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    return seen, handles


# -- precision: the parameter ------------------------------------------------------------


@pytest.mark.parametrize("value", ["fp16", "16", 32, None, "BF16"])
def test_an_unknown_precision_is_refused_at_fit_naming_the_parameter(value, blocks_data):
    X, y = blocks_data
    with pytest.raises(ValueError, match=r"precision must be one of '32', 'bf16', '16-mixed'"):
        FusionClassifier(precision=value, **FAST).fit(X, y)


def test_16_mixed_on_a_cpu_is_a_clear_error(blocks_data):
    X, y = blocks_data
    with pytest.raises(ValueError, match=r"precision='16-mixed' needs a CUDA device.*'cpu'"):
        FusionRegressor(precision="16-mixed", device="cpu", **FAST).fit(X, X["m0"][:, 0])


def test_16_mixed_off_cuda_predicts_in_float32():
    # (what a model fitted in 16-mixed on a GPU does once loaded on a CPU)
    with autocast("16-mixed", "cpu"):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32


def test_default_precision_keeps_skorchs_own_nets(blocks_data):
    X, y = blocks_data
    quick = {**FAST, "max_epochs": 2}
    clf = FusionClassifier(**quick).fit(X, y)
    assert clf.precision == "32"
    assert type(clf.net_) is NeuralNetClassifier
    reg = FusionRegressor(**quick).fit(X, X["m0"][:, 0])
    assert type(reg.net_) is NeuralNetRegressor


def test_precision_is_a_parameter_clone_and_grid_search_see(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(precision="bf16", **FAST)
    assert clf.get_params()["precision"] == "bf16"
    assert clone(clf).precision == "bf16"
    assert clf.set_params(precision="32").precision == "32"
    grid = GridSearchCV(
        FusionClassifier(hidden_units=8, max_epochs=3, random_state=0),
        {"precision": ["32", "bf16"]},
        cv=2,
    ).fit(np.hstack(list(X.values())), y)
    assert [p["precision"] for p in grid.cv_results_["params"]] == ["32", "bf16"]
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


# -- precision: bf16 on the CPU -----------------------------------------------------------


def test_bf16_runs_the_forward_pass_in_bfloat16_and_learns(blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(precision="bf16", **FAST).fit(X, y)
    assert clf.score(X, y) > 0.85
    seen, handles = _linear_output_dtypes(clf)
    try:
        proba = clf.predict_proba(X)
        embedding = clf.transform(X)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {torch.bfloat16}  # prediction and transform under autocast too
    assert proba.dtype == np.float64 and embedding.dtype == np.float64
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    # and it was trained under autocast: the history's losses come from bf16 forwards
    assert all(np.isfinite(clf.history_[:, "train_loss"]))


def test_bf16_regressor_with_sample_weight_learns(blocks_data):
    X, _ = blocks_data
    target = X["m0"][:, 0] + 0.5 * X["m1"][:, 1]
    weight = np.arange(len(target)) % 3 + 1.0
    reg = FusionRegressor(precision="bf16", **{**FAST, "max_epochs": 40}).fit(
        X, target, sample_weight=weight
    )
    assert type(reg.net_).__name__ == "PrecisionWeightedNetRegressor"
    assert reg.score(X, target) > 0.6


def test_bf16_with_a_sparse_block_and_validation(blocks_data):
    X, y = blocks_data
    X = {**X, "m2": sparse.csr_matrix(np.where(X["m2"] > 0.5, X["m2"], 0.0))}
    clf = FusionClassifier(
        precision="bf16",
        early_stopping=True,
        scoring="accuracy",
        hidden_units=16,
        max_epochs=12,
        random_state=0,
    ).fit(X, y)
    assert np.isfinite(clf.history_[:, "valid_score"]).all()
    assert clf.score(X, y) > 0.8


def test_precision_survives_pickle_and_model_files(blocks_data, tmp_path):
    X, y = blocks_data
    clf = FusionClassifier(precision="bf16", **{**FAST, "max_epochs": 3}).fit(X, y)
    expected = clf.predict_proba(X)
    loaded = pickle.loads(pickle.dumps(clf))
    assert loaded.precision == "bf16" and loaded.net_.precision == "bf16"
    assert_array_equal(loaded.predict_proba(X), expected)
    path = mmsk.save(clf, tmp_path / "bf16.skops")
    from_file = mmsk.load(path)
    assert from_file.precision == "bf16"
    assert type(from_file.net_).__name__ == "PrecisionNetClassifier"
    assert_array_equal(from_file.predict_proba(X), expected)


def test_onnx_export_of_a_bf16_model_is_float32(blocks_data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    X, y = blocks_data
    clf = FusionClassifier(precision="bf16", **{**FAST, "max_epochs": 3}).fit(X, y)
    path = clf.to_onnx(tmp_path / "model.onnx")
    graph = onnx.load(str(path)).graph
    assert {t.data_type for t in graph.initializer} <= {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.INT64,
        onnx.TensorProto.BOOL,
    }
    (out,) = ort.InferenceSession(str(path)).run(None, clf.onnx_inputs(X))
    for net in clf.nets_:
        net.precision = "32"  # the same weights, in float32
    float32 = clf.predict_proba(X)
    for net in clf.nets_:
        net.precision = "bf16"
    assert_allclose(out, float32, atol=1e-5)
    assert_allclose(out, clf.predict_proba(X), atol=0.05)  # bf16 keeps ~3 digits


# -- on a GPU ----------------------------------------------------------------------------


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_fit_in_every_precision(precision, blocks_data):
    X, y = blocks_data
    clf = FusionClassifier(precision=precision, device="cuda", **FAST).fit(X, y)
    assert next(clf.net_.module_.parameters()).dtype == torch.float32
    assert clf.score(X, y) > 0.85
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    if precision == "16-mixed":
        seen, handles = _linear_output_dtypes(clf)
        clf.predict_proba(X)
        for handle in handles:
            handle.remove()
        assert seen == {torch.float16}
    reg = FusionRegressor(precision=precision, device="cuda", **{**FAST, "max_epochs": 30})
    target = X["m0"][:, 0]
    assert reg.fit(X, target).score(X, target) > 0.6


@pytest.mark.parametrize("fusion", ["concat", "late", "gated", "attention", "tensor"])
def test_every_tower_kind_trains_under_bf16_autocast(fusion):
    from mmsk.fusion.modules import FusionModule

    vocab, length, n = 30, 6, 12
    towers = [
        ("conv", {"shape": (1, 8, 8), "width": 4}),
        ("gru", {"vocab_size": vocab}),
        ("lstm", {"vocab_size": vocab, "bidirectional": True}),
        ("transformer", {"vocab_size": vocab, "embedding_dim": 8}),
        ("mlp", {}),
    ]
    module = FusionModule(
        dims=[64, length, length, length, 3],
        n_outputs=3,
        fusion=fusion,
        hidden_units=8,
        towers=towers,
    ).train()
    ids = torch.randint(1, vocab, (n, length))
    batch = {
        "x0": torch.randn(n, 64),
        "x1": ids,
        "x2": ids,
        "x3": ids,
        "x4": torch.randn(n, 3),
        "mask": torch.ones(n, 5, dtype=torch.bool),
    }
    seen = set()
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda m, args, output: seen.add(output.dtype))
    with autocast("bf16", "cpu"):
        out = module(**batch)
    assert seen == {torch.bfloat16} and torch.isfinite(out.float()).all()
    out.float().sum().backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
