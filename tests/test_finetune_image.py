"""Fine-tuning a pretrained torch image backbone inside the fusion net ("pretrained_image").

The backbone is a tiny CNN defined here, its "pretrained" weights a state
dict file written by the test; the images are 16x16 grey squares made up
here, plus a numeric column. Nothing is downloaded and every fit takes
about a second.
"""

import pickle
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

import mmsk
from mmsk import FusionClassifier, ImagePixels

SIZE = 16


class TinyCNN(nn.Module):
    """conv1 -> bn1 -> pool -> conv2 -> global mean -> fc: three layers below the head."""

    def __init__(self, channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class FixedSizeCNN(nn.Module):
    """A backbone that only takes 8x8 inputs (a Linear over the flat map below the head)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.hidden = nn.Linear(2 * 8 * 8, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.hidden(torch.flatten(self.conv(x), 1))))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A state dict file of TinyCNN with (seeded) trained-looking weights."""
    torch.manual_seed(0)
    model = TinyCNN()
    with torch.no_grad():
        model.bn1.running_mean.uniform_(0.0, 0.5)  # statistics that refitting would move
        model.bn1.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("backbone") / "tiny_cnn.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def _frame(n=32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    images = []
    for label in y:
        image = (rng.random((SIZE, SIZE)) * 60).astype(np.uint8)
        corner = (slice(0, 8), slice(0, 8)) if label else (slice(8, 16), slice(8, 16))
        image[corner] = 230
        images.append(image)
    images[5] = None  # a missing image: the row keeps its numeric block
    return pd.DataFrame({"image": images, "x": rng.normal(size=n)}), y


def _pipeline(weights, mode="L", **tower):
    features = ColumnTransformer(
        [
            ("image", ImagePixels(size=(SIZE, SIZE), mode=mode), "image"),
            ("tabular", StandardScaler(), ["x"]),
        ]
    ).set_output(transform="pandas")
    options = {"model": TinyCNN, "weights": weights, "mean": (0.5,), "std": (0.25,), **tower}
    fusion = FusionClassifier(
        towers={"image": ("pretrained_image", options)},
        max_epochs=2,
        batch_size=8,
        lr=1e-2,
        random_state=0,
        n_jobs=1,
    )
    return Pipeline([("features", features), ("fusion", fusion)])


def _backbone(pipe):
    return pipe[-1].net_.module_.towers[0].model


def _changed(pipe, weights):
    base = torch.load(weights, weights_only=True)
    tuned = _backbone(pipe).state_dict()
    return {name for name, w in tuned.items() if not torch.equal(w, base[name])}


def test_top_layer_trains_lower_layers_and_their_statistics_stay_frozen(weights):
    X, y = _frame()
    pipe = _pipeline(weights, trainable_layers=1).fit(X, y)
    changed = _changed(pipe, weights)
    assert changed and all(name.startswith("conv2.") for name in changed), changed
    assert "fc.weight" not in _backbone(pipe).state_dict()  # the head was removed
    # the backbone's own learning rate (1e-4 by default), the net's for the rest
    lrs = sorted({group["lr"] for group in pipe[-1].net_.optimizer_.param_groups})
    assert lrs == [1e-4, 1e-2]
    proba = pipe.predict_proba(X.iloc[:8])  # the missing image included
    assert proba.shape == (8, 2) and np.isfinite(proba).all()
    assert pipe[-1].towers_["image"][1]["features"] == 8
    assert pipe[-1].towers_["image"][1]["shape"] == (1, SIZE, SIZE)


def test_frozen_backbone_keeps_weights_and_batch_norm_statistics(weights):
    X, y = _frame(n=16)
    pipe = _pipeline(weights, trainable_layers=0).fit(X, y)
    assert _changed(pipe, weights) == set()
    assert not any(p.requires_grad for p in _backbone(pipe).parameters())


def test_all_layers_and_name_prefixes(weights):
    X, y = _frame(n=16)
    everything = _pipeline(weights, trainable_layers="all", lr=1e-2).fit(X, y)
    assert {n.split(".")[0] for n in _changed(everything, weights)} == {"conv1", "bn1", "conv2"}
    only_bn = _pipeline(weights, trainable_layers=["bn1"], lr=1e-2).fit(X, y)
    assert {n.split(".")[0] for n in _changed(only_bn, weights)} == {"bn1"}


def test_a_module_object_is_copied_and_its_weights_used(weights, tmp_path):
    torch.manual_seed(1)
    given = TinyCNN()
    given.load_state_dict(torch.load(weights, weights_only=True))
    before = {k: v.clone() for k, v in given.state_dict().items()}
    X, y = _frame(n=16)
    pipe = _pipeline(None, model=given, trainable_layers=1).fit(X, y)
    assert _changed(pipe, weights)  # fine-tuned ...
    assert all(torch.equal(v, before[k]) for k, v in given.state_dict().items())  # ... a copy
    assert not _changed(pipe, weights) - {"conv2.weight", "conv2.bias"}
    path = mmsk.save(pipe, tmp_path / "model.skops")  # an object: its weights, not the object
    again = mmsk.load(path, architectures={"image": TinyCNN()})
    np.testing.assert_array_equal(again.predict_proba(X), pipe.predict_proba(X))


def test_grid_search_over_trainable_layers(weights):
    X, y = _frame(n=24)
    base = {"model": TinyCNN, "weights": weights, "mean": (0.5,), "std": (0.25,)}
    grid = {
        "fusion__towers": [
            {"image": ("pretrained_image", {**base, "trainable_layers": k})} for k in (0, 1, "all")
        ]
    }
    search = GridSearchCV(_pipeline(weights), grid, cv=StratifiedKFold(2), error_score="raise")
    search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 3 and np.isfinite(scores).all()
    assert search.predict(X).shape == (24,)


def test_save_load_round_trip_needs_the_architecture_again(weights, tmp_path):
    X, y = _frame(n=16)
    copy = tmp_path / "tiny_cnn.pt"
    copy.write_bytes(open(weights, "rb").read())
    pipe = _pipeline(str(copy), trainable_layers=1).fit(X, y)
    expected = pipe.predict_proba(X)
    path = mmsk.save(pipe, tmp_path / "model.skops")
    copy.unlink()  # the fine-tuned weights are in the file: the weights file is not read
    with pytest.raises(ValueError, match=r"architectures=\{'image'"):
        mmsk.load(path)
    again = mmsk.load(path, architectures={"image": TinyCNN})
    np.testing.assert_array_equal(again.predict_proba(X), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pipe)).predict_proba(X), expected)
    # the architecture given back is a parameter again: the loaded model refits
    assert again[-1].towers["image"][1]["model"] is TinyCNN
    with pytest.raises(ValueError, match="do not fit the net"):  # another architecture
        mmsk.load(path, architectures={"image": FixedSizeCNN})


def test_a_torchvision_name_round_trips_without_the_architecture(weights, tmp_path, monkeypatch):
    # a stand-in for torchvision (not a test dependency): get_model builds by name
    calls = []

    def get_model(name, weights=None):
        calls.append((name, weights))
        return TinyCNN()

    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(get_model=get_model)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    X, y = _frame(n=16)
    pipe = _pipeline(weights, model="tiny_cnn", trainable_layers=1).fit(X, y)
    assert calls and all(call == ("tiny_cnn", None) for call in calls)  # our file's weights
    assert _changed(pipe, weights) == {"conv2.weight", "conv2.bias"}
    path = mmsk.save(pipe, tmp_path / "model.skops")
    calls.clear()
    again = mmsk.load(path)  # the name is stored: no architecture needed, nothing downloaded
    assert calls == [("tiny_cnn", None)] * len(calls) and calls
    np.testing.assert_array_equal(again.predict_proba(X), pipe.predict_proba(X))


@pytest.mark.parametrize(
    ("tower", "mode", "match"),
    [
        (
            {"mean": (0.5,) * 3, "std": (0.25,) * 3},
            "RGB",
            r"towers\['image'\]: the backbone TinyCNN takes 1 input channel",
        ),
        ({"mean": (0.5,) * 3}, "L", r"option 'mean' has 3 values.* 1 channel"),
        ({"trainable_layers": 4}, "L", r"'trainable_layers' is 4, but TinyCNN has 3 layers"),
        ({"trainable_layers": ["conv9"]}, "L", r"names 'conv9', .* layers are \['conv1'"),
        ({"trainable_layers": -1}, "L", r"option 'trainable_layers' must be"),
        (
            {"model": FixedSizeCNN, "weights": None},
            "L",
            r"cannot take the block's pixels of shape .* \(1, 16, 16",
        ),
        ({"model": "tiny_cnn.pt"}, "L", r"option 'model' must be the architecture"),
        ({"layer": "conv7"}, "L", r"towers\['image'\]: TinyCNN has no submodule 'conv7'"),
        ({"lr": 0}, "L", r"option 'lr' must be a positive float"),
        ({"depth": 2}, "L", r"no option 'depth'"),
    ],
)
def test_bad_tower_options_are_errors_naming_the_option(weights, tower, mode, match):
    X, y = _frame(n=8)
    tower = dict(tower)
    given = tower.pop("weights", weights)
    with pytest.raises(ValueError, match=match):
        _pipeline(given, mode=mode, **tower).fit(X, y)


def test_a_block_that_is_not_pixels_is_refused():
    X = pd.DataFrame({"a__f0": [0.0, 1.0, 2.0, 3.0], "a__f1": [1.0, 0.0, 1.0, 0.0]})
    clf = FusionClassifier(towers={"a": ("pretrained_image", {"model": TinyCNN})})
    with pytest.raises(ValueError, match=r"reads the pixels of ImagePixels.*'shape'"):
        clf.fit(X, [0, 1, 0, 1])


def test_a_submodule_layer_gives_its_output(weights):
    X, y = _frame(n=16)
    pipe = _pipeline(weights, layer="bn1", trainable_layers="all").fit(X, y)
    assert pipe[-1].towers_["image"][1]["features"] == 4 * SIZE * SIZE
    assert _changed(pipe, weights) <= {
        "conv1.weight",
        "conv1.bias",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
    }


def test_onnx_export_matches_predict_proba(weights, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    X, y = _frame(n=16)
    pipe = _pipeline(weights, trainable_layers=1).fit(X, y)
    clf, blocks = pipe[-1], pipe[:-1].transform(X)
    session = ort.InferenceSession(str(clf.to_onnx(tmp_path / "net.onnx")))
    (out,) = session.run(None, clf.onnx_inputs(blocks))
    np.testing.assert_allclose(out, clf.predict_proba(blocks), atol=1e-4)
