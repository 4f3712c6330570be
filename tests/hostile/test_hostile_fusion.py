"""Parameters that used to fail late, inside torch or skorch, are refused by ``fit`` up front.

Each case asserts a scikit-learn-style ``ValueError`` naming the parameter,
raised before any training (no ``net_``), for both estimators where the
parameter applies to both.
"""

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
