"""Hostile path items for every extractor that reads files: one rule for all of them.

Only regular files are read (a FIFO, a device or a directory is an item
error, never a hang, with or without the cache), sizes are checked before
reading, an empty file gets the same message for images and audio, an
empty string is a missing item, and ``allowed_dirs`` confines paths with
symlinks and ``..`` resolved.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from hostile_helpers import check_item_policy, item_warnings, within

from mmsk import AudioFeatures, ImageFeatures, ImagePixels, LogMelSpectrogram


def _tiny_encoder(**params):
    import torch

    from mmsk import ImageEncoder

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(2, 3),
    )
    return ImageEncoder(model=net, size=(8, 8), mode="L", mean=None, std=None, **params)


AUDIO = dict(sr=8000, n_fft=256, hop_length=128)
#: name -> (factory, kind of good file)
EXTRACTORS = {
    "ImagePixels": (lambda **kw: ImagePixels(size=(6, 6), **kw), "png"),
    "ImageFeatures": (lambda **kw: ImageFeatures(size=(16, 16), mode="L", **kw), "png"),
    "ImageEncoder": (_tiny_encoder, "png"),
    "AudioFeatures": (lambda **kw: AudioFeatures(n_mels=16, n_mfcc=8, **AUDIO, **kw), "wav"),
    "LogMelSpectrogram": (
        lambda **kw: LogMelSpectrogram(n_mels=16, n_frames=8, **AUDIO, **kw),
        "wav",
    ),
}

#: case -> (what the bad item is, extra parameters, reason)
CASES = {
    "fifo": ("fifo", {}, r"^a FIFO \(named pipe\), not a regular file: refused"),
    "fifo, cache on": ("fifo", {"memory": "cache"}, r"^a FIFO \(named pipe\), not a regular"),
    "directory": ("dir", {}, r"^is a directory, not a file$"),
    "/dev/null": ("/dev/null", {}, r"^a character device, not a regular file"),
    "/dev/zero, cache on": ("/dev/zero", {"memory": "cache"}, r"^a character device, not a"),
    "too large": (
        "good",
        {"max_file_bytes": 64},
        r"^file of \d+ bytes, more than the limit of 64 ",
    ),
    "empty file": ("empty", {}, r"^empty file \(0 bytes\)$"),
    "outside": ("outside", {"allowed_dirs": "folder"}, r"^path outside the allowed directories"),
    "symlink escape": ("escape", {"allowed_dirs": "folder"}, r"^path outside the allowed"),
    "dot-dot escape": ("dotdot", {"allowed_dirs": "folder"}, r"^path outside the allowed"),
}


def _bad_item(what, kind, media, fifo):
    if what == "fifo":
        return fifo
    if what.startswith("/dev/"):
        return what
    if what == "dir":
        return media["dir"]
    if what == "good":
        return media[f"{kind}1"]
    if what == "empty":
        return media[f"empty_{kind}"]
    return media[f"{what}_{kind}0"]  # outside / escape / dotdot


def _params(extra, media, tmp_path):
    params = dict(extra)
    if params.get("memory") == "cache":
        params["memory"] = str(tmp_path / "cache")
    if params.get("allowed_dirs") == "folder":
        params["allowed_dirs"] = [media["folder"]]
    return params


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_hostile_path_items_get_the_item_policy(name, case, media, fifo, tmp_path):
    factory, kind = EXTRACTORS[name]
    what, extra, reason = CASES[case]
    params = _params(extra, media, tmp_path)
    bad = _bad_item(what, kind, media, fifo)
    good = [media[f"{kind}0"], media[f"{kind}2"]]
    items = [good[0], bad, good[1]]
    if what == "good":  # over the size limit: every file is; make the good ones small items
        good = [np.zeros((12, 10), np.uint8)] if kind == "png" else [np.zeros(2000, np.float32)]
        items = [good[0], bad, good[0]]

    def make(**kw):
        return factory(**params, **kw)

    err, _ = within(15, check_item_policy, make, items, [1], reason)
    assert err.item.endswith(f"{bad[-20:]}'"), err.item  # the item, by its (elided) path


@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_paths_inside_the_allowed_directories_are_read_as_usual(name, media):
    factory, kind = EXTRACTORS[name]
    items = pd.Series([media[f"{kind}{i}"] for i in range(3)], name="col")
    free = factory().fit(items).transform(items)
    confined = factory(allowed_dirs=[media["folder"]]).fit(items).transform(items)
    np.testing.assert_array_equal(confined, free)
    assert np.isfinite(free).all()


@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_an_empty_string_is_a_missing_item(name, media):
    factory, kind = EXTRACTORS[name]
    items = pd.Series([media[f"{kind}0"], "", None], name="col")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = factory().fit(items).transform(items)
    assert not item_warnings(caught)
    assert out.shape[0] == 3 and np.isnan(out[1:]).all() and np.isfinite(out[0]).all()


def test_an_empty_file_gets_the_same_message_for_images_and_audio(media):
    reasons = set()
    for factory, kind in EXTRACTORS.values():
        with pytest.raises(ValueError) as info:
            factory().fit([media[f"empty_{kind}"]]).transform([media[f"empty_{kind}"]])
        reasons.add(info.value.reason)
    assert reasons == {"empty file (0 bytes)"}


@pytest.mark.parametrize(
    "params, match",
    [
        ({"max_file_bytes": 0}, "max_file_bytes must be None or an int >= 1"),
        ({"max_file_bytes": "1MB"}, "max_file_bytes must be None or an int >= 1"),
        ({"allowed_dirs": "/no/such/folder"}, r"allowed_dirs: '/no/such/folder' is not a dir"),
        ({"allowed_dirs": [3]}, "allowed_dirs must hold directory paths"),
    ],
)
@pytest.mark.parametrize("name", ["ImagePixels", "AudioFeatures"])
def test_file_limit_parameters_are_checked_in_fit(name, params, match, media):
    factory, kind = EXTRACTORS[name]
    est = factory(**params)
    with pytest.raises(ValueError, match=match):
        est.fit([media[f"{kind}0"]])
    assert not hasattr(est, "n_features_out_")
