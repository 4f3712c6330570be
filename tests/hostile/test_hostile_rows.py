"""Errors name the DataFrame's index label when the input has one, and blocks by modality.

Inside a cross-validation fold, "row 15" means the row labelled 15 of the
user's DataFrame, not the 15th row of the fold.
"""

import numpy as np
import pandas as pd
import pytest
from hostile_helpers import check_item_policy
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline

from mmsk import AudioFeatures, FusionClassifier, ImagePixels, ItemError, TfidfSVD, TokenSequences

TONE = (0.5 * np.sin(2 * np.pi * 440 * np.arange(2000) / 8000)).astype("float32")
GREY = np.full((8, 8), 200, np.uint8)
TEXTS = ["red car", "blue car", "red sky"]
CASES = {
    "ImagePixels": (lambda **kw: ImagePixels(size=(4, 4), **kw), [GREY] * 3, 42, None),
    "AudioFeatures": (lambda **kw: AudioFeatures(sr=8000, n_fft=256, **kw), [TONE] * 3, 42, None),
    "TokenSequences": (lambda **kw: TokenSequences(max_len=3, **kw), TEXTS, 42, "padding"),
    "TfidfSVD": (lambda **kw: TfidfSVD(n_components=2, random_state=0, **kw), TEXTS, b"\xff", None),
}


@pytest.mark.parametrize("index", [[10, 11, 12, 13], ["a", "b", "c", "d"]], ids=["ints", "strs"])
@pytest.mark.parametrize("name", list(CASES))
def test_errors_and_warnings_name_the_index_label(name, index):
    make, good, bad, missing = CASES[name]
    items = [good[0], good[1], bad, good[2]]
    missing = (lambda row: (row == 0).all()) if missing == "padding" else None
    err, _ = check_item_policy(make, items, [2], ".", index=index, missing=missing)
    assert err.row == 2 and err.label == index[2]


def test_a_fold_names_the_user_s_row():
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(
        {"image": [rng.randint(0, 255, (6, 6)).astype("uint8") for _ in range(30)]}
    )
    frame.loc[15, "image"] = "no/such/file.png"
    y = np.arange(30) % 2
    model = Pipeline(
        [
            ("features", ColumnTransformer([("image", ImagePixels(size=(3, 3)), "image")])),
            ("clf", LogisticRegression()),
        ]
    )
    with pytest.raises(ItemError, match=r"^image: row 15 \('no/such/file\.png'\): file not found"):
        cross_val_score(model, frame, y, cv=KFold(3), error_score="raise")


def _blocks(n=12, index=None):
    rng = np.random.RandomState(0)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["img__a", "img__b", "snd__a"])
    if index is not None:
        frame.index = index
    return frame, np.arange(n) % 2


def test_fusion_errors_name_the_index_label():
    frame, y = _blocks(index=[f"r{i}" for i in range(12)])
    frame.iloc[7, 0] = np.nan  # one NaN inside a present block
    with pytest.raises(ValueError, match=r"modality 'img': row 'r7' has NaN in column 'img__a'"):
        FusionClassifier(max_epochs=1).fit(frame, y)
    frame, y = _blocks(index=list(range(100, 112)))
    frame.iloc[4] = np.nan  # a row without any modality
    with pytest.raises(ValueError, match=r"^row 104 has no modality"):
        FusionClassifier(max_epochs=1).fit(frame, y)


def test_a_block_missing_in_every_training_row_is_named_by_its_modality():
    frame, y = _blocks()
    frame["snd__a"] = np.nan
    with pytest.raises(ValueError, match=r"^modality 'snd' is missing .* in every training row"):
        FusionClassifier(max_epochs=1).fit(frame, y)
