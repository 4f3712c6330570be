"""Column handling, item description and the error type, independent of modality."""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmsk import ItemError
from mmsk._items import BadItem, as_items, describe_item, is_missing, item_fingerprint, item_source


@pytest.mark.parametrize(
    "X",
    [
        ["a", "b", None],
        np.array(["a", "b", None], dtype=object),
        pd.Series(["a", "b", None]),
        pd.DataFrame({"c": ["a", "b", None]}),
        np.array([["a"], ["b"], [None]], dtype=object),
        [["a"], ["b"], [None]],
    ],
    ids=["list", "array", "series", "frame", "2d-array", "2d-list"],
)
def test_as_items_accepts_1d_and_one_column(X):
    items, _ = as_items(X)
    assert items[:2] == ["a", "b"] and is_missing(items[2]) and len(items) == 3


def test_as_items_reports_column_name():
    assert as_items(pd.Series(["x"], name="audio"))[1] == "audio"
    assert as_items(pd.DataFrame({"image": ["x"]}))[1] == "image"
    assert as_items(["x"])[1] is None


@pytest.mark.parametrize("X", ["clip.wav", b"bytes", Path("clip.wav")])
def test_as_items_rejects_a_single_item(X):
    with pytest.raises(ValueError, match="Iterable over .* expected"):
        as_items(X)


def test_as_items_rejects_several_columns():
    with pytest.raises(ValueError, match="one column .* 2 columns"):
        as_items(pd.DataFrame({"a": [1], "b": [2]}))
    with pytest.raises(ValueError, match="one column"):
        as_items(np.array([["a", "b"]], dtype=object))
    with pytest.raises(ValueError, match="length 1"):
        as_items([["a"], ["b", "c"]])


def test_numeric_stack_is_read_as_in_memory_items():
    stack = np.zeros((4, 8, 8), dtype=np.uint8)
    items, _ = as_items(stack)
    assert len(items) == 4 and items[0].shape == (8, 8)
    waves = np.zeros((3, 100), dtype=np.float32)
    assert len(as_items(waves)[0]) == 3


def test_is_missing_and_describe():
    assert all(is_missing(v) for v in (None, np.nan, pd.NA, pd.NaT, np.float32("nan")))
    assert is_missing("")  # an empty string is a missing item for every extractor
    assert not any(is_missing(v) for v in (" ", 0, b"", np.zeros(2)))
    assert is_missing(b"", text=True)  # for text, empty bytes are an empty text
    assert describe_item(np.zeros((2, 3), dtype="uint8")) == "<ndarray shape=(2, 3) dtype=uint8>"
    long_path = "/very/long/folder" * 10 + "/clip_17.wav"
    assert describe_item(long_path).endswith("clip_17.wav'") and "..." in describe_item(long_path)
    assert describe_item(list(range(100))).endswith("...")
    assert describe_item(Path("a/b.wav")) == "'a/b.wav'"


def test_item_source_normalises(tmp_path):
    assert item_source(tmp_path / "x.wav") == str(tmp_path / "x.wav")
    with pytest.raises(BadItem, match="empty bytes"):
        item_source(b"")
    f = tmp_path / "x.bin"
    f.write_bytes(b"123")
    assert item_source(f) == str(f)


def test_fingerprint_follows_content_not_name(tmp_path):
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    c.write_bytes(b"other")
    key_a, source = item_fingerprint(a)
    assert source.read() == b"same"
    assert key_a == item_fingerprint(b)[0] == item_fingerprint(b"same")[0]
    assert key_a != item_fingerprint(c)[0]
    assert item_fingerprint("hello", text=True)[0] != item_fingerprint(b"hello")[0]
    assert item_fingerprint(np.zeros(2))[0] != item_fingerprint(np.zeros(2, dtype="float32"))[0]
    assert item_fingerprint(np.zeros((2, 1)))[0] != item_fingerprint(np.zeros((1, 2)))[0]
    assert item_fingerprint(3) == (None, 3)  # not cacheable; the decoder says why


def test_item_error_message_and_pickle():
    err = ItemError("audio", 17, "'clips/x.wav'", "file not found")
    assert str(err) == "audio: row 17 ('clips/x.wav'): file not found"
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.row == 17
    assert str(ItemError(None, 3, "'x'", "bad")) == "row 3 ('x'): bad"
