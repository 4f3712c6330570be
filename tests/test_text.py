"""TokenSequences: vocabulary, ids, padding and truncation, missing texts, errors, contract."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import StandardScaler

from mmsk import ItemError, ItemWarning, TokenSequences
from mmsk.text import OOV_ID, PAD_ID

TEXTS = [
    "The cat sat on the mat.",
    "The dog ate the cat's dinner!",
    "A bird, a cat and a dog.",
    None,
    "dogs and cats",
]


def test_vocabulary_order_ids_and_sizes():
    tok = TokenSequences(max_len=8).fit(["bb aa aa", "cc bb", "aa", "zz yy"])
    # by total count (aa 3, bb 2), then alphabetical among ties
    assert tok.vocabulary_ == {"aa": 2, "bb": 3, "cc": 4, "yy": 5, "zz": 6}
    assert tok.vocab_size_ == 7 and tok.output_shape_ == (8,) and tok.n_features_out_ == 8
    assert (PAD_ID, OOV_ID) == (0, 1)


def test_tokens_match_scikit_learn():
    tok = TokenSequences().fit(TEXTS)
    counts = CountVectorizer().fit([t for t in TEXTS if t is not None])
    assert set(tok.vocabulary_) == set(counts.vocabulary_)
    assert "a" not in tok.vocabulary_ and "cat" in tok.vocabulary_  # r"\b\w\w+\b", lowercased
    assert next(iter(tok.vocabulary_)) == "the"  # most frequent: 4 times


def test_transform_ids_oov_and_dtype():
    tok = TokenSequences(max_len=6).fit(["bb aa aa", "cc bb", "aa"])
    X = tok.transform(["aa bb cc", "aa qq bb", "", None, "AA!"])
    assert X.dtype == np.int64 and X.shape == (5, 6)
    np.testing.assert_array_equal(
        X,
        [
            [2, 3, 4, 0, 0, 0],
            [2, 1, 3, 0, 0, 0],  # qq is out of vocabulary
            [0, 0, 0, 0, 0, 0],  # no tokens
            [0, 0, 0, 0, 0, 0],  # missing
            [2, 0, 0, 0, 0, 0],  # lowercased, punctuation dropped
        ],
    )
    assert tok.decode(X[:2]) == [["aa", "bb", "cc"], ["aa", "<oov>", "bb"]]


@pytest.mark.parametrize(
    "padding, truncating, short, long",
    [
        ("post", "post", [2, 3, 0, 0], [2, 3, 4, 5]),
        ("pre", "post", [0, 0, 2, 3], [2, 3, 4, 5]),
        ("post", "pre", [2, 3, 0, 0], [4, 5, 6, 7]),
        ("pre", "pre", [0, 0, 2, 3], [4, 5, 6, 7]),
    ],
)
def test_padding_and_truncating(padding, truncating, short, long):
    words = "aa bb cc dd ee ff"
    tok = TokenSequences(max_len=4, padding=padding, truncating=truncating).fit([words])
    assert list(tok.vocabulary_) == words.split()
    X = tok.transform(["aa bb", words, None])
    np.testing.assert_array_equal(X, [short, long, [0, 0, 0, 0]])


def test_max_tokens_keeps_the_most_frequent():
    texts = ["aa aa aa bb bb cc", "dd"]
    tok = TokenSequences(max_tokens=4).fit(texts)
    assert tok.vocabulary_ == {"aa": 2, "bb": 3} and tok.vocab_size_ == 4
    np.testing.assert_array_equal(tok.transform(["cc aa dd"])[0, :3], [1, 2, 1])
    assert TokenSequences(max_tokens=None).fit(texts).vocab_size_ == 6


def test_min_df_counts_documents():
    texts = ["aa aa aa bb", "bb cc", "bb cc", "dd"]
    assert list(TokenSequences(min_df=2).fit(texts).vocabulary_) == ["bb", "cc"]
    # a proportion of the (non-missing) texts, as in CountVectorizer: 0.5 * 4 = 2 texts
    assert list(TokenSequences(min_df=0.5).fit([*texts, None]).vocabulary_) == ["bb", "cc"]
    assert len(TokenSequences(min_df=0.0).fit(texts).vocabulary_) == 4


def test_missing_texts_are_all_padding_rows():
    tok = TokenSequences(max_len=3).fit(["aa bb"])
    X = tok.transform(pd.Series(["aa", None, np.nan, pd.NA, "bb"], dtype=object))
    np.testing.assert_array_equal(X, [[2, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [3, 0, 0]])


def test_bytes_are_utf8():
    tok = TokenSequences(max_len=3).fit(["café olé"])
    np.testing.assert_array_equal(tok.transform(["café".encode()]), tok.transform(["café"]))
    with pytest.raises(ItemError, match=r"row 0 \(<2 bytes>\): bytes are not valid UTF-8"):
        tok.transform([b"\xff\xfe"])


@pytest.mark.parametrize(
    "item, kind", [(42, "int"), (3.5, "float"), (["aa"], "list"), (np.zeros(2), "ndarray")]
)
def test_non_str_item_raises_naming_column_row_and_item(item, kind):
    tok = TokenSequences().fit(["aa bb"])
    X = pd.Series(["aa", "bb", item], name="text")
    with pytest.raises(ItemError, match=rf"^text: row 2 .*: unsupported item type {kind}"):
        tok.transform(X)
    with pytest.raises(ItemError, match=rf"^text: row 2 .*: unsupported item type {kind}"):
        TokenSequences().fit(X)


def test_non_str_item_with_on_error_nan_warns_once():
    X = pd.Series(["aa bb", 42, b"\xff", "bb"], name="text")
    tok = TokenSequences(max_len=2, on_error="nan")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fit skips bad items silently
        tok.fit(X)
    with pytest.warns(ItemWarning, match=r"^text: 2 of 4 texts .* \(first: row 1 \(42\)") as rec:
        out = tok.transform(X)
    assert len([w for w in rec if issubclass(w.category, ItemWarning)]) == 1
    np.testing.assert_array_equal(out, [[3, 2], [0, 0], [0, 0], [2, 0]])  # bb first: 2 counts


def test_custom_tokenizer_and_lowercase():
    tok = TokenSequences(tokenizer=str.split, lowercase=False, max_len=3).fit(["A b b", "a"])
    assert tok.vocabulary_ == {"b": 2, "A": 3, "a": 4}
    np.testing.assert_array_equal(tok.transform(["b A x"]), [[2, 3, 1]])
    regex = TokenSequences(token_pattern=r"\S+", max_len=2).fit(["a! b?"])
    assert list(regex.vocabulary_) == ["a!", "b?"]


@pytest.mark.parametrize(
    "X",
    [
        np.array(TEXTS, dtype=object),
        pd.Series(TEXTS, name="text"),
        pd.DataFrame({"text": TEXTS}),
        np.array(TEXTS, dtype=object).reshape(-1, 1),
        [[t] for t in TEXTS],
    ],
    ids=["array", "series", "frame", "2d-array", "2d-list"],
)
def test_input_containers_give_equal_output(X):
    ref = TokenSequences(max_len=5).fit(TEXTS).transform(TEXTS)
    np.testing.assert_array_equal(TokenSequences(max_len=5).fit(X).transform(X), ref)


def test_single_string_and_wrong_column_are_rejected():
    with pytest.raises(ValueError, match="Iterable over texts expected"):
        TokenSequences().fit("just one text")
    tok = TokenSequences().fit(pd.DataFrame({"text": ["aa"]}))
    with pytest.raises(ValueError, match="fitted on column 'text'"):
        tok.transform(pd.DataFrame({"caption": ["aa"]}))


def test_feature_names():
    assert TokenSequences(max_len=3).fit(["aa"]).get_feature_names_out().tolist() == [
        "tok_000",
        "tok_001",
        "tok_002",
    ]
    names = TokenSequences(max_len=1500).fit(["aa"]).get_feature_names_out()
    assert names[0] == "tok_0000" and names[-1] == "tok_1499" and len(names) == 1500


def test_column_transformer_with_pandas_output():
    df = pd.DataFrame({"text": TEXTS, "price": [1.0, 2.0, 3.0, 4.0, 5.0]})
    ct = ColumnTransformer(
        [("text", TokenSequences(max_len=4), "text"), ("tabular", StandardScaler(), ["price"])]
    ).set_output(transform="pandas")
    out = ct.fit_transform(df)
    assert list(out.columns) == [f"text__tok_00{i}" for i in range(4)] + ["tabular__price"]
    assert (out.dtypes.iloc[:4] == np.int64).all()
    assert (out.iloc[3, :4] == 0).all()  # missing text
    np.testing.assert_array_equal(out.iloc[:, :4], TokenSequences(max_len=4).fit_transform(TEXTS))


def test_clone_params_and_pickle():
    tok = TokenSequences(max_len=5, min_df=1, padding="pre")
    params = tok.get_params()
    assert "n_jobs" not in params and "memory" not in params
    twin = clone(tok).set_params(**params)
    assert twin.get_params() == params
    tok.fit(TEXTS)
    restored = pickle.loads(pickle.dumps(tok))
    assert restored.vocabulary_ == tok.vocabulary_
    np.testing.assert_array_equal(restored.transform(TEXTS), tok.transform(TEXTS))
    np.testing.assert_array_equal(twin.fit(TEXTS).transform(TEXTS), tok.transform(TEXTS))


def test_tags_declare_string_input():
    tags = TokenSequences().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


@pytest.mark.parametrize(
    "params",
    [
        dict(max_len=0),
        dict(max_len=2.0),
        dict(max_tokens=2),
        dict(min_df=0),
        dict(min_df=1.5),
        dict(lowercase="yes"),
        dict(token_pattern="(a)(b)"),
        dict(token_pattern="("),
        dict(token_pattern=None),
        dict(tokenizer=5),
        dict(padding="both"),
        dict(truncating="middle"),
        dict(on_error="skip"),
    ],
)
def test_bad_params_raise_in_fit(params):
    tok = TokenSequences(**params)  # __init__ only stores
    with pytest.raises(ValueError):
        tok.fit(["aa bb"])


def test_empty_vocabulary_raises():
    with pytest.raises(ValueError, match="empty vocabulary"):
        TokenSequences().fit([None, "a", ""])
    with pytest.raises(ValueError, match="min_df"):
        TokenSequences(min_df=3).fit(["aa", "bb"])


def test_decode_checks_ids():
    tok = TokenSequences(max_len=2).fit(["aa"])
    assert tok.decode(np.array([[2, 1], [0, 0]])) == [["aa", "<oov>"], []]
    with pytest.raises(ValueError, match="ids must lie in"):
        tok.decode([[5, 0]])
    with pytest.raises(ValueError, match="2-D array of ints"):
        tok.decode([0.5])
