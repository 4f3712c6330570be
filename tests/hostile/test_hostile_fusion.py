"""Parameters that used to fail late, inside torch or skorch, are refused by ``fit`` up front.

Each case asserts a scikit-learn-style ``ValueError`` naming the parameter,
raised before any training (no ``net_``), for both estimators where the
parameter applies to both.
"""

import re

import numpy as np
import pytest
import torch
from skorch.callbacks import EpochScoring

from mmsk import FusionClassifier, FusionRegressor

RNG = np.random.RandomState(0)
X = {"a": RNG.normal(size=(30, 4)), "b": RNG.normal(size=(30, 3))}
Y = {"clf": np.arange(30) % 2, "reg": RNG.normal(size=30)}
ESTIMATORS = {"clf": FusionClassifier, "reg": FusionRegressor}

LATE = {
    "batch_size=1 with batch norm": (dict(batch_size=1), r"^batch_size=1 cannot train with norm"),
    "one training row left": (
        dict(validation_fraction=0.5),
        r"^norm='batch' needs at least 2 training rows .* leaves 1 to train on",
    ),
    "optimizer not callable": (dict(optimizer=42), r"^optimizer must be a torch\.optim"),
    "optimizer by name": (dict(optimizer="adam"), r"^optimizer must be a torch\.optim"),
    "unknown optimizer option": (
        dict(optimizer_kwargs={"momentum_typo": 0.9}),
        r"^optimizer_kwargs has 'momentum_typo', which AdamW does not take",
    ),
    "criterion not callable": (dict(criterion="mse"), r"^criterion must be None or a loss"),
    "callback not a callback": (dict(callbacks=[print]), r"^callbacks must hold skorch callbacks"),
    "callback pair not a callback": (
        dict(callbacks=[("log", 3)]),
        r"^callbacks must hold skorch callbacks",
    ),
}


#: (estimator, case); the classifier's stratified split of 3 rows is refused earlier, and says so.
PAIRS = [
    (name, case)
    for case in LATE
    for name in ESTIMATORS
    if (name, case) != ("clf", "one training row left")
]


@pytest.mark.parametrize("name, case", PAIRS)
def test_parameters_that_failed_late_are_refused_in_fit(name, case):
    params, match = LATE[case]
    X_fit, y = X, Y[name]
    if case == "one training row left":  # 0.5 of 3 rows leaves 1 to train on
        X_fit, y = {k: v[:3] for k, v in X.items()}, y[:3]
    est = ESTIMATORS[name](max_epochs=1, **params)
    with pytest.raises(ValueError, match=match):
        est.fit(X_fit, y)
    assert not hasattr(est, "net_")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is there")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_a_cuda_device_that_is_not_there_is_refused_in_fit(device):
    est = FusionClassifier(max_epochs=1, device=device)
    with pytest.raises(ValueError, match=r"torch sees no CUDA device"):
        est.fit(X, Y["clf"])


def test_a_binary_scorer_on_many_classes_is_refused_before_training():
    y = np.arange(30) % 3
    est = FusionClassifier(max_epochs=1, scoring="roc_auc", early_stopping=True)
    with pytest.raises(ValueError, match=r"scoring='roc_auc' needs a binary target.*3 classes"):
        est.fit(X, y)


@pytest.mark.parametrize(
    "params",
    [
        dict(batch_size=1, norm="layer"),
        dict(batch_size=1, norm=None),
        dict(callbacks=[EpochScoring("accuracy", name="acc")]),
        dict(optimizer=torch.optim.SGD, optimizer_kwargs={"momentum": 0.9}),
    ],
    ids=["batch 1, layer norm", "batch 1, no norm", "callback", "SGD momentum"],
)
def test_what_the_network_can_do_still_trains(params):
    clf = FusionClassifier(max_epochs=1, hidden_units=8, random_state=0, **params).fit(X, Y["clf"])
    assert clf.predict_proba(X).shape == (30, 2)


# -- a criterion that runs but mismatches the task -------------------------------------------
class _FocalLoss(torch.nn.Module):
    """A custom classification loss that fits the task (logits, class indices)."""

    def forward(self, logits, y):
        ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        return ((1 - torch.exp(-ce)) ** 2 * ce).mean()


class _ConstantLoss(torch.nn.Module):
    """A loss that ignores the network's output: runs, trains nothing."""

    def forward(self, output, target):
        return (output * 0).sum() + 1.0


class _PerRowLoss(torch.nn.Module):
    """A classification loss that returns one value per row instead of one number."""

    def forward(self, logits, y):
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")


_LOGITS = r"the loss gets the network's logits, float of shape \(n_samples, n_classes\)"
_OUTPUTS = r"the loss gets the network's outputs and the targets \(standardized\)"

#: (estimator, criterion, extra params, the message's end); each names criterion=<value>
MISMATCHED = {
    "clf MSELoss": ("clf", torch.nn.MSELoss, {}, r"raised RuntimeError: The size of tensor"),
    "clf L1Loss": ("clf", torch.nn.L1Loss, {}, r"raised RuntimeError"),
    "clf BCEWithLogitsLoss": ("clf", torch.nn.BCEWithLogitsLoss, {}, r"raised ValueError: Target"),
    "clf NLLLoss on logits": ("clf", torch.nn.NLLLoss, {}, r"it returned nan$"),
    "clf MSELoss with class_weight": (
        "clf",
        torch.nn.MSELoss,
        dict(class_weight="balanced"),
        r"raised TypeError: .*'weight'",
    ),
    "clf constant loss": ("clf", _ConstantLoss, {}, r"does not change with the network's output"),
    "clf loss per row": ("clf", _PerRowLoss, {}, r"returned \(4,\) instead of one number$"),
    "reg CrossEntropyLoss": ("reg", torch.nn.CrossEntropyLoss, {}, r"classification loss"),
    "reg CrossEntropyLoss instance": (
        "reg",
        torch.nn.CrossEntropyLoss(),
        {},
        r"classification loss",
    ),
    "reg NLLLoss": ("reg", torch.nn.NLLLoss, {}, r"classification loss"),
    "reg MultiMarginLoss": ("reg", torch.nn.MultiMarginLoss, {}, r"classification loss"),
    "reg KLDivLoss on standardized targets": ("reg", torch.nn.KLDivLoss, {}, r"returned nan$"),
    "reg constant loss": ("reg", _ConstantLoss, {}, r"does not change with the network's output"),
}


@pytest.mark.parametrize("case", list(MISMATCHED))
def test_a_criterion_that_mismatches_the_task_is_refused_in_fit(case):
    name, criterion, params, end = MISMATCHED[case]
    est = ESTIMATORS[name](criterion=criterion, max_epochs=1, **params)
    value = re.escape(f"criterion=torch.nn.{type(criterion).__name__}()")
    if isinstance(criterion, type):
        value = rf"criterion=(torch\.nn|{__name__})\.{criterion.__name__}"
    expected = _LOGITS if name == "clf" else _OUTPUTS
    task = type(est).__name__
    with pytest.raises(ValueError, match=rf"^{value} .*does not fit {task}: {expected}.*{end}"):
        est.fit(X, Y[name])
    assert not hasattr(est, "net_")  # refused before any training
    # the same with sample weights (a per-row loss, weighted by mmsk)
    with pytest.raises(ValueError, match=rf"^{value} "):
        ESTIMATORS[name](criterion=criterion, max_epochs=1, **params).fit(
            X, Y[name], sample_weight=np.ones(len(Y[name]))
        )


@pytest.mark.parametrize(
    "name, criterion, params",
    [
        ("clf", _FocalLoss, {}),
        ("clf", torch.nn.CrossEntropyLoss(label_smoothing=0.1), {}),
        ("clf", torch.nn.CrossEntropyLoss, dict(class_weight="balanced")),
        ("clf", torch.nn.MultiMarginLoss, {}),
        ("reg", torch.nn.HuberLoss, {}),
        ("reg", torch.nn.SmoothL1Loss, {}),
        ("reg", torch.nn.L1Loss, {}),
    ],
    ids=["focal", "label smoothing", "class weights", "multi-margin", "huber", "smooth L1", "L1"],
)
def test_criteria_that_fit_the_task_still_train(name, criterion, params):
    est = ESTIMATORS[name](criterion=criterion, max_epochs=2, hidden_units=8, random_state=0)
    est.set_params(**params).fit(X, Y[name])
    assert np.isfinite(est.history_[-1, "train_loss"])
    assert est.predict(X).shape == (30,)
    # and with sample weights (reduction="none")
    if not isinstance(criterion, torch.nn.Module) and name == "reg":
        est.fit(X, Y[name], sample_weight=np.linspace(0.5, 2.0, 30))
        assert np.isfinite(est.history_[-1, "train_loss"])
