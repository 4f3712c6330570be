"""Trainable towers: the encoders, shapes from column names, and ``towers=`` end to end.

The data are tiny and synthetic: 8x8 grey images whose class is the bright
quadrant, and token sequences whose class is whether token 2 occurs.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from mmsk import ImagePixels, LogMelSpectrogram, TokenSequences
from mmsk.fusion import FusionClassifier, FusionRegressor
from mmsk.fusion._data import FusionDataset, mask_blocks
from mmsk.fusion.blocks import infer_shape, resolve_towers
from mmsk.fusion.encoders import (
    ConvEncoder,
    RecurrentEncoder,
    TransformerEncoder,
    compact_tokens,
)
from mmsk.fusion.modules import FUSIONS, FusionModule, Tower

SIDE, MAX_LEN, VOCAB = 8, 12, 30
PIXELS = [f"px_{r}_{c}_L" for r in range(SIDE) for c in range(SIDE)]
TOKENS = [f"tok_{i:03d}" for i in range(MAX_LEN)]
FAST = dict(hidden_units=16, max_epochs=8, batch_size=32, lr=0.01, random_state=0)


def make_data(n=200, seed=0, informative="both"):
    """Images (class = bright quadrant) and token ids (class = token 2 present).

    ``informative`` picks the modality that carries the label ("image",
    "text" or "both"); the other one is noise.
    """
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    label = {
        m: y if informative in (m, "both") else rng.randint(0, 2, n) for m in ("image", "text")
    }
    images = rng.uniform(0, 0.3, size=(n, 1, SIDE, SIDE))
    half = SIDE // 2
    for i in range(n):
        rows = slice(0, half) if label["image"][i] else slice(half, SIDE)
        images[i, 0, rows, rows] += 0.7
    ids = np.zeros((n, MAX_LEN), dtype=np.int64)
    for i in range(n):
        length = rng.randint(2, MAX_LEN + 1)
        ids[i, :length] = rng.randint(3, VOCAB, size=length)
        if label["text"][i]:
            ids[i, rng.randint(length)] = 2
    return {"image": images.reshape(n, -1), "text": ids}, y


def to_frame(X):
    """The ColumnTransformer's pandas output: prefixed extractor names."""
    return pd.concat(
        [
            pd.DataFrame(X["image"], columns=[f"image__{c}" for c in PIXELS]),
            pd.DataFrame(X["text"], columns=[f"text__{c}" for c in TOKENS]),
        ],
        axis=1,
    )


@pytest.fixture(scope="module")
def data():
    X, y = make_data()
    return to_frame(X), y


# -- the encoders on tensors -----------------------------------------------------------------


@pytest.mark.parametrize("norm", ["batch", "layer", None])
@pytest.mark.parametrize(
    "shape, depth", [((1, 8, 8), 2), ((3, 5, 7), 3), ((1, 1, 6), 2), ((2, 1, 1), 1)]
)
def test_conv_encoder_shapes_and_gradients(shape, depth, norm):
    encoder = ConvEncoder(shape, embed_dim=6, depth=depth, width=4, norm=norm)
    x = torch.randn(5, int(np.prod(shape)))
    out = encoder(x, torch.ones(5, dtype=torch.bool))
    assert out.shape == (5, 6)
    out.sum().backward()
    assert encoder.features[0].weight.grad is not None
    convs = [m for m in encoder.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4 * 2**i for i in range(depth)]


def test_conv_encoder_reads_channels_first():
    # a block flattened as (C, H, W): channel 1 is the second half of the row
    encoder = ConvEncoder((2, 4, 4), embed_dim=3, width=2).eval()
    x = torch.zeros(1, 32)
    with torch.no_grad():
        encoder.features[0].weight.zero_()
        encoder.features[0].weight[:, 1, 1, 1] = 1.0  # looks only at channel 1, centre tap
        x[0, 16:] = 1.0
        assert encoder.features[:3](x.view(-1, 2, 4, 4)).abs().sum() > 0
        x2 = torch.zeros(1, 32)
        x2[0, :16] = 1.0
        assert encoder.features[0](x2.view(-1, 2, 4, 4)).abs().sum() == 0


def test_compact_tokens_moves_padding_back_and_maps_unknown_ids():
    ids, lengths = compact_tokens(torch.tensor([[0, 7, 0, 3, 42], [0, 0, 0, 0, 0]]), 10)
    assert ids.tolist() == [[7, 3, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert lengths.tolist() == [3, 0]


def sequence_encoder(kind):
    if kind == "transformer":
        return TransformerEncoder(VOCAB, MAX_LEN, embed_dim=6, embedding_dim=8, n_heads=2)
    return RecurrentEncoder(VOCAB, embed_dim=6, cell=kind, hidden_units=8, bidirectional=True)


@pytest.mark.parametrize("kind", ["gru", "lstm", "transformer"])
def test_sequence_encoders_ignore_padding_wherever_it_is(kind):
    encoder = sequence_encoder(kind).eval()
    tokens = [[5, 9, 2], [7], [3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15]]
    post = torch.zeros(3, MAX_LEN, dtype=torch.long)
    pre = torch.zeros(3, MAX_LEN, dtype=torch.long)
    spread = torch.zeros(3, MAX_LEN, dtype=torch.long)
    for i, t in enumerate(tokens):
        post[i, : len(t)] = torch.tensor(t)
        pre[i, MAX_LEN - len(t) :] = torch.tensor(t)
        spread[i, torch.linspace(0, MAX_LEN - 1, len(t)).long()] = torch.tensor(t)
    present = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        out = encoder(post, present)
        assert out.shape == (3, 6)
        torch.testing.assert_close(encoder(pre, present), out)
        torch.testing.assert_close(encoder(spread, present), out)
        # a narrower block with the same tokens (less padding) gives the same too
        torch.testing.assert_close(encoder(post[:2, :4], present[:2]), out[:2])


@pytest.mark.parametrize("kind", ["gru", "lstm", "transformer"])
def test_sequence_encoders_map_unseen_ids_to_oov_and_survive_empty_rows(kind):
    encoder = sequence_encoder(kind).eval()
    ids = torch.tensor([[4, VOCAB + 5, 0], [4, 1, 0], [0, 0, 0]])
    with torch.no_grad():
        out = encoder(ids, torch.tensor([True, True, False]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[1])
    encoder.train()
    out = encoder(ids, torch.tensor([True, True, False]))
    out.sum().backward()
    assert torch.isfinite(encoder.embedding.weight.grad).all()


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_module_with_every_tower_kind(fusion):
    towers = [
        ("conv", {"shape": (1, 8, 8), "width": 4}),
        ("gru", {"vocab_size": VOCAB}),
        ("lstm", {"vocab_size": VOCAB, "bidirectional": True}),
        ("transformer", {"vocab_size": VOCAB, "embedding_dim": 8}),
        ("mlp", {}),
    ]
    module = FusionModule(
        dims=[64, MAX_LEN, MAX_LEN, MAX_LEN, 3],
        n_outputs=3,
        fusion=fusion,
        hidden_units=8,
        towers=towers,
    ).train()
    X, _ = make_data(n=20)
    batch = {
        "x0": torch.as_tensor(X["image"], dtype=torch.float32),
        "x1": torch.as_tensor(X["text"]),
        "x2": torch.as_tensor(X["text"]),
        "x3": torch.as_tensor(X["text"]),
        "x4": torch.randn(20, 3),
        "mask": torch.ones(20, 5, dtype=torch.bool),
    }
    batch["mask"][::3, 1:4] = False
    out = module(**batch)
    assert out.shape == (20, 3)
    out.sum().backward()
    kinds = [type(t).__name__ for t in module.towers]
    assert kinds == [
        "ConvEncoder",
        "RecurrentEncoder",
        "RecurrentEncoder",
        "TransformerEncoder",
        "Tower",
    ]
    with torch.no_grad():
        assert module.eval()(**{k: v[:3] for k, v in batch.items()}).shape == (3, 3)


# -- shapes from column names -----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "image__", "features__image__"])
def test_infer_shape_of_pixels_with_and_without_prefixes(prefix):
    names = [f"{prefix}px_{r}_{c}_{b}" for b in "RGB" for r in range(3) for c in range(5)]
    assert infer_shape(names) == ("image", (3, 3, 5))
    assert infer_shape(names[:-1]) is None  # a column dropped
    assert infer_shape(names[1:] + names[:1]) is None  # another order
    pixel_major = [f"{prefix}px_{r}_{c}_{b}" for r in range(3) for c in range(5) for b in "RGB"]
    assert infer_shape(pixel_major) is None  # channels last is not what ImagePixels gives


def test_infer_shape_of_logmel_tokens_and_others():
    logmel = [f"audio__logmel_{m:02d}_{f:03d}" for m in range(4) for f in range(150)]
    assert infer_shape(logmel) == ("image", (1, 4, 150))
    frame_major = [f"logmel_{m:02d}_{f:03d}" for f in range(3) for m in range(4)]
    assert infer_shape(frame_major) is None
    assert infer_shape([f"text__tok_{i:03d}" for i in range(7)]) == ("tokens", (7,))
    assert infer_shape(["tok_001", "tok_000"]) is None
    assert infer_shape(["audio__mfcc_00_mean", "audio__mfcc_01_mean"]) is None
    assert infer_shape(["px_0_0_L", "tok_000"]) is None
    assert infer_shape(None) is None and infer_shape([]) is None


def test_infer_shape_matches_the_extractors_output_shape():
    images = [np.zeros((6, 6, 3), dtype=np.uint8)] * 2
    pixels = ImagePixels(size=(5, 3), mode="RGB").fit(images)
    assert infer_shape(pixels.get_feature_names_out()) == ("image", pixels.output_shape_)
    tone = np.sin(np.arange(2000) / 5).astype("float32")
    logmel = LogMelSpectrogram(sr=8000, n_mels=12, n_frames=120, n_fft=256, hop_length=16)
    logmel.fit([tone])
    assert infer_shape(logmel.get_feature_names_out()) == ("image", logmel.output_shape_)
    tokens = TokenSequences(max_len=5).fit(["a bb cc", "dd"])
    assert infer_shape(tokens.get_feature_names_out()) == ("tokens", tokens.output_shape_)


# -- the towers parameter -----------------------------------------------------------------------


def test_resolve_towers_fills_every_option():
    names, dims = ["image", "text", "num"], [64, MAX_LEN, 3]
    cols = [PIXELS, TOKENS, None]
    specs = resolve_towers(
        {"image": ("conv", {"depth": 3}), "text": "transformer"},
        names,
        dims,
        cols,
        hidden_units=8,
        n_layers=2,
    )
    assert specs == [
        ("conv", {"shape": (1, 8, 8), "depth": 3, "width": 16, "kernel_size": 3}),
        ("transformer", {"embedding_dim": 32, "n_layers": 1, "n_heads": 4, "vocab_size": None}),
        ("mlp", {"hidden_units": 8, "n_layers": 2}),
    ]
    specs = resolve_towers("gru", ["text"], [MAX_LEN], [None], hidden_units=8, n_layers=1)
    assert specs[0][1]["hidden_units"] == 8
    # one (kind, options) pair for every block
    specs = resolve_towers(
        ("conv", {"width": 4}),
        ["a", "b"],
        [64, 16],
        [PIXELS, [f"px_{r}_{c}_L" for r in range(4) for c in range(4)]],
        hidden_units=8,
        n_layers=1,
    )
    assert [(kind, options["shape"], options["width"]) for kind, options in specs] == [
        ("conv", (1, 8, 8), 4),
        ("conv", (1, 4, 4), 4),
    ]
    # an explicit shape: (H, W) means one channel; it wins over the names
    specs = resolve_towers(
        {"image": ("conv", {"shape": (4, 16)})},
        ["image"],
        [64],
        [PIXELS],
        hidden_units=8,
        n_layers=1,
    )
    assert specs[0][1]["shape"] == (1, 4, 16)


@pytest.mark.parametrize(
    "towers, message",
    [
        ({"imgae": "conv"}, r"entry for 'imgae', but X has no block of that name.*'image', 'text'"),
        ({"image": "cnn"}, r"towers\['image'\]: unknown tower kind 'cnn'"),
        ({"image": ("conv", {"depht": 3})}, r"no option 'depht'; their options are"),
        ({"image": ("conv", {"depth": 0})}, r"option 'depth' must be an int >= 1"),
        ({"image": ("conv", {"kernel_size": 2})}, r"'kernel_size' must be an odd int"),
        ({"text": ("gru", {"bidirectional": "yes"})}, r"'bidirectional' must be a bool"),
        ({"text": ("transformer", {"n_heads": 3})}, r"embedding_dim divisible by n_heads"),
        ({"text": ["gru", "lstm"]}, r"must be a tower kind .* or a \(kind, options\) pair"),
        ({"text": "conv"}, r"conv tower needs an image-like block; block 'text' holds token ids"),
        ({"image": "gru"}, r"'gru' tower reads token ids, but block 'image' is an image-like"),
        ("conv", r"towers='conv': a conv tower needs an image-like block; block 'text'"),
        ({"image": ("conv", {"shape": (1, 8, 9)})}, r"72 values per row, but block 'image' has 64"),
        (["conv"], r"towers=\['conv'\] must be a tower kind .* or a \(kind, options\) pair"),
        (3, r"towers must be None, a tower kind \(str\), a \(kind, options\) pair or a dict"),
    ],
)
def test_bad_towers(data, towers, message):
    X, y = data
    with pytest.raises(ValueError, match=message):
        FusionClassifier(towers=towers, **FAST).fit(X, y)


def test_conv_on_a_block_without_names_needs_a_shape():
    X, y = make_data(n=40)
    with pytest.raises(
        ValueError,
        match=r"block 'image' has no shape that can be read .*X has no "
        r"column names.*\('conv', \{'shape': \(C, H, W\)\}\)",
    ):
        FusionClassifier(towers={"image": "conv"}, **FAST).fit(X, y)
    audio = pd.DataFrame(X["image"], columns=[f"audio__mfcc_{i:02d}" for i in range(64)])
    with pytest.raises(ValueError, match=r"block 'audio' has no shape .*'audio__mfcc_00'"):
        FusionClassifier(towers="conv", **FAST).fit(audio, y)


def test_dict_input_with_an_explicit_shape():
    X, y = make_data(n=160, informative="image")
    towers = {"image": ("conv", {"shape": (SIDE, SIDE), "width": 8})}
    clf = FusionClassifier(towers=towers, **FAST).fit(X, y)
    assert clf.towers_["image"] == (
        "conv",
        {"shape": (1, 8, 8), "depth": 2, "width": 8, "kernel_size": 3},
    )
    assert clf.towers_["text"][0] == "mlp"
    assert clf.score(*make_data(n=100, seed=1, informative="image")) > 0.8


def test_token_ids_must_be_non_negative_integers(data):
    X, y = data
    bad = X.astype(float)
    bad.iloc[3, 64 + 2] = 2.5
    with pytest.raises(
        ValueError,
        match=r"modality 'text': row 3 has 2.5 in column "
        r"'text__tok_002'; its sequence tower needs token ids",
    ):
        FusionClassifier(towers={"text": "gru"}, **FAST).fit(bad, y)
    clf = FusionClassifier(towers={"text": "gru"}, **FAST).fit(X, y)
    bad = X.copy()
    bad.iloc[7, 64] = -1
    with pytest.raises(ValueError, match=r"row 7 has -1.0 in column 'text__tok_000'"):
        clf.predict(bad)


def test_towers_none_mlp_and_empty_dict_are_the_same_network(data):
    X, y = data
    probas = [
        FusionClassifier(towers=towers, **FAST).fit(X, y).predict_proba(X)
        for towers in [None, "mlp", {}, {"image": "mlp"}]
    ]
    for proba in probas[1:]:
        assert_array_equal(proba, probas[0])


# -- training end to end ------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize(
    "modality, tower",
    [("image", ("conv", {"width": 8})), ("text", "gru"), ("text", "lstm"), ("text", "transformer")],
)
def test_every_tower_trains_with_every_fusion(modality, tower, fusion):
    # only the block under test carries the label; the other one is noise
    X, y = make_data(n=160, informative=modality)
    X_test, y_test = make_data(n=100, seed=1, informative=modality)
    clf = FusionClassifier(fusion=fusion, towers={modality: tower}, **FAST)
    clf.fit(to_frame(X), y)
    assert clf.score(to_frame(X_test), y_test) > 0.75


def test_missing_rows_nan_and_all_padding(data):
    X, y = data
    X = X.astype(float)  # NaN needs float columns
    text = [c for c in X.columns if c.startswith("text__")]
    image = [c for c in X.columns if c.startswith("image__")]
    X.loc[::4, text] = 0  # empty texts
    X.loc[1::4, text] = np.nan  # missing texts
    X.loc[2::4, image] = np.nan  # missing images
    clf = FusionClassifier(towers={"image": "conv", "text": "transformer"}, **FAST).fit(X, y)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    # an all-padding row is a missing modality: the same as an all-NaN row
    with_image = X[X[image[0]].notna()]
    empty, gone = with_image.copy(), with_image.copy()
    empty[text] = 0
    gone[text] = np.nan
    assert_allclose(clf.predict_proba(empty), clf.predict_proba(gone), atol=1e-6)
    # a row with neither an image nor a token is an error naming the row
    X.loc[4, image] = np.nan
    with pytest.raises(ValueError, match=r"row 4 has no modality: .*all-padding, for token"):
        clf.predict(X)


def test_all_padding_row_is_masked_in_the_prepared_dict():
    ids = np.array([[3, 4, 0], [0, 0, 0], [np.nan] * 3], dtype=np.float32)
    other = np.ones((3, 2), dtype=np.float32)
    prepared = mask_blocks([ids, other], ["text", "num"], [None, None], tokens=[True, False])
    assert prepared["mask"].tolist() == [[True, True], [False, True], [False, True]]
    assert prepared["x0"].dtype == np.int64
    assert prepared["x0"].tolist() == [[3, 4, 0], [0, 0, 0], [0, 0, 0]]
    dataset = FusionDataset(prepared, np.zeros(3))
    assert dataset.batch(slice(0, 2))[0]["x0"].dtype == torch.int64
    # without tokens=, zeros are values as before
    assert mask_blocks([ids[:2], other[:2]], ["a", "b"], [None, None])["mask"].all()


def test_standardisation_per_kind(data):
    X, y = data
    clf = FusionClassifier(towers={"image": "conv", "text": "gru"}, **FAST).fit(X, y)
    conv, gru = clf.net_.module_.towers
    # one mean and one scale for the single channel of the image
    assert torch.unique(conv.mean).numel() == 1 and torch.unique(conv.inv_scale).numel() == 1
    pixels = X.filter(like="image__").to_numpy()
    assert_allclose(conv.mean[0].item(), pixels.mean(), rtol=1e-5)
    assert not hasattr(gru, "mean")  # token ids are not standardised
    prepared, _ = clf._prepare(X, fit=False)
    assert prepared["x1"].dtype == np.int64 and prepared["x0"].dtype == np.float32


def test_batch_norm_statistics_are_refreshed_after_training(data):
    # running averages lag behind the weights; the encoders' batch norms get
    # their statistics recomputed on the training split with the final weights
    X, y = data
    towers = {"image": ("conv", {"width": 4}), "text": "gru"}
    clf = FusionClassifier(towers=towers, validation_fraction=0.2, **FAST).fit(X, y)
    assert "refresh_batch_norm" in dict(clf.net_.callbacks_)
    conv, gru = clf.net_.module_.towers
    n_batches = int(np.ceil(0.8 * len(y) / FAST["batch_size"]))  # the training split, once
    assert int(conv.features[1].num_batches_tracked) == n_batches
    assert int(gru.projection[1].num_batches_tracked) == n_batches
    assert conv.features[1].momentum == 0.1 and not conv.training
    mlp = FusionClassifier(**FAST).fit(X, y)  # MLP towers keep the running averages
    assert "refresh_batch_norm" not in dict(mlp.net_.callbacks_)
    no_norm = FusionClassifier(towers=towers, norm=None, **FAST).fit(X, y)
    assert "refresh_batch_norm" not in dict(no_norm.net_.callbacks_)


def test_vocabulary_size_from_fit_and_unseen_ids_at_predict(data):
    X, y = data
    clf = FusionClassifier(towers={"text": "lstm"}, **FAST).fit(X, y)
    assert clf.towers_["text"][1]["vocab_size"] == VOCAB
    unseen, oov = X.copy(), X.copy()
    unseen["text__tok_000"] = np.where(X["text__tok_000"] > 0, 1000, 0)
    oov["text__tok_000"] = np.where(X["text__tok_000"] > 0, 1, 0)
    assert_allclose(clf.predict_proba(unseen), clf.predict_proba(oov), atol=1e-6)
    big = FusionClassifier(towers={"text": ("lstm", {"vocab_size": 100})}, **FAST).fit(X, y)
    assert big.net_.module_.towers[1].embedding.num_embeddings == 100


def test_sparse_token_block_and_regressor():
    X, y = make_data(n=120, informative="text")
    Xs = {"image": X["image"], "text": sparse.csr_matrix(X["text"])}
    clf = FusionClassifier(towers={"text": "gru"}, **FAST).fit(Xs, y)
    assert_allclose(clf.predict_proba(Xs), clf.predict_proba(X), atol=1e-6)
    towers = {"image": ("conv", {"shape": (1, SIDE, SIDE), "width": 4}), "text": "transformer"}
    reg = FusionRegressor(towers=towers, **FAST).fit(X, y.astype(float))
    assert reg.predict(X).shape == (120,)


def test_column_transformer_of_real_extractors(data):
    X, y = data
    images = list(X.filter(like="image__").to_numpy().reshape(-1, SIDE, SIDE))
    words = np.array([f"w{i:02d}" for i in range(VOCAB)])
    texts = [" ".join(words[row[row > 0]]) for row in X.filter(like="text__").to_numpy()]
    df = pd.DataFrame({"image": images, "caption": texts})
    features = ColumnTransformer(
        [
            ("image", ImagePixels(size=(SIDE, SIDE)), "image"),
            ("text", TokenSequences(max_len=MAX_LEN), "caption"),
        ]
    ).set_output(transform="pandas")
    towers = {"image": ("conv", {"width": 4}), "text": "gru"}
    model = make_pipeline(features, FusionClassifier(towers=towers, **FAST)).fit(df, y)
    fusion = model[-1]
    assert (
        fusion.towers_["image"][1]["shape"] == model[0].named_transformers_["image"].output_shape_
    )
    assert (
        fusion.towers_["text"][1]["vocab_size"] == model[0].named_transformers_["text"].vocab_size_
    )
    assert model.score(df, y) > 0.8


# -- the scikit-learn contract ---------------------------------------------------------------


def test_pickle_round_trip_and_clone(data):
    X, y = data
    towers = {"image": ("conv", {"width": 4}), "text": ("gru", {"bidirectional": True})}
    clf = FusionClassifier(towers=towers, fusion="attention", **FAST).fit(X, y)
    loaded = pickle.loads(pickle.dumps(clf))
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.towers_ == clf.towers_
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert twin.towers == towers and twin.towers is not towers
    assert not hasattr(twin, "towers_")
    assert clf.towers == towers  # fit does not write to the parameter
    assert_array_equal(twin.fit(X, y).predict_proba(X), clf.predict_proba(X))


def test_same_random_state_same_predictions(data):
    X, y = data
    towers = {"image": ("conv", {"width": 4}), "text": "transformer"}
    a, b = (FusionClassifier(towers=towers, **FAST).fit(X, y).predict_proba(X) for _ in range(2))
    assert_array_equal(a, b)


def test_grid_search_over_fusion_and_every_tower_kind_in_parallel():
    # The "done when" of issue 4: every tower kind trains in a GridSearchCV over
    # fusion and tower choice, and a parallel search (loky workers) gives the
    # same scores as a sequential one (the estimator's n_jobs=1 pins torch threads).
    X, y = make_data(n=64)
    conv = ("conv", {"width": 4})
    grid = {
        "fusion": ["concat", "attention"],
        "towers": [
            {"image": conv, "text": "gru"},
            {"image": conv, "text": "lstm"},
            {"text": ("transformer", {"embedding_dim": 16})},  # and an MLP on the image
        ],
    }
    est = FusionClassifier(n_jobs=1, hidden_units=8, max_epochs=2, batch_size=16, random_state=0)
    searches = [
        GridSearchCV(est, grid, cv=2, n_jobs=n_jobs).fit(to_frame(X), y) for n_jobs in [1, 2]
    ]
    assert searches[0].best_params_ == searches[1].best_params_
    scores = [search.cv_results_["mean_test_score"] for search in searches]
    assert_array_equal(scores[0], scores[1])
    assert len(set(scores[0])) > 1  # the candidates differ, so the best one means something
    frame = to_frame(X)
    kinds = {
        kind
        for params in searches[0].cv_results_["params"]
        for kind, _ in clone(est).set_params(**params).fit(frame, y).towers_.values()
    }
    assert kinds == {"mlp", "conv", "gru", "lstm", "transformer"}


def test_mlp_tower_class_is_unchanged_by_default(data):
    X, y = data
    clf = FusionClassifier(**FAST).fit(X, y)
    assert all(type(t) is Tower for t in clf.net_.module_.towers)
    assert clf.towers_ == {
        "image": ("mlp", {"hidden_units": 16, "n_layers": 1}),
        "text": ("mlp", {"hidden_units": 16, "n_layers": 1}),
    }


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_every_tower_on_the_gpu(data):
    X, y = data
    for text in ["gru", "lstm", "transformer"]:
        clf = FusionClassifier(towers={"image": "conv", "text": text}, **FAST).fit(X, y)
        assert clf.device_ == "cuda"
        assert next(clf.net_.module_.parameters()).is_cuda
        assert clf.score(X, y) > 0.8
        loaded = pickle.loads(pickle.dumps(clf))
        assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-5)
