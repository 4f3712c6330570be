"""A fault of the feature cache is never blamed on the data, in every extractor that caches.

Whatever goes wrong with the ``memory=`` location (it is a file, it cannot
be written, the disk fills up mid-write, an entry's bytes changed under a
valid header, a segment was torn), the contract is the same: one
:class:`~mmsk.CacheWarning` naming the location, no :class:`~mmsk.ItemWarning`
or :class:`~mmsk.ItemError` for any good item, as many output rows as input
rows, and features identical to those computed without a cache.
"""

import errno
import re
import warnings

import numpy as np
import pytest
from hostile_helpers import item_warnings

import mmsk._cache_segments
from mmsk import (
    AudioFeatures,
    ImageFeatures,
    ImagePixels,
    LogMelSpectrogram,
    SentenceEmbedder,
)
from mmsk._cache import CacheWarning, forget

AUDIO = dict(sr=8000, n_fft=256, hop_length=128)


def _tiny_encoder(**params):
    import torch

    from mmsk import ImageEncoder

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    return ImageEncoder(model=net, layer=None, size=(8, 8), mode="L", mean=None, std=None, **params)


class CountingSentenceModel:
    """A deterministic sentence model: features from character counts."""

    def get_sentence_embedding_dimension(self):
        return 3

    def encode(self, texts, **kwargs):
        return np.array([[len(t), t.count("a"), t.count(" ")] for t in texts], dtype="float32")


#: name -> (factory, kind of item)
EXTRACTORS = {
    "ImagePixels": (lambda **kw: ImagePixels(size=(6, 6), mode="L", **kw), "png"),
    "ImageFeatures": (lambda **kw: ImageFeatures(size=(16, 16), mode="L", **kw), "png"),
    "ImageEncoder": (_tiny_encoder, "png"),
    "AudioFeatures": (lambda **kw: AudioFeatures(n_mels=16, n_mfcc=8, **AUDIO, **kw), "wav"),
    "LogMelSpectrogram": (
        lambda **kw: LogMelSpectrogram(n_mels=16, n_frames=8, **AUDIO, **kw),
        "wav",
    ),
    "SentenceEmbedder": (
        lambda **kw: SentenceEmbedder(model=CountingSentenceModel(), **kw),
        "text",
    ),
}

TEXTS = ["a cat", "a dog on a mat", "", "rain at night", "a"]


def _items(kind, media):
    if kind == "text":
        return [t for t in TEXTS if t]
    return [media[f"{kind}{i}"] for i in (0, 1, 2, 1, 0)]  # repeats share entries


def _unwritable(monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(mmsk._cache_segments.tempfile, "mkstemp", fail)


def _segments(location):
    return sorted(location.rglob("*.seg"))


def _flip_last_byte(location):
    (segment, *_) = _segments(location)  # the rows come last: the last row's value changes
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))


def _tear(location):
    for segment in _segments(location):
        segment.write_bytes(segment.read_bytes()[:30])


#: fault -> (when it strikes, reason in the warning)
FAULTS = {
    "not a directory": ("before", r"cannot be (used|written|read)|not a directory"),
    "read-only": ("before", r"cannot be written|read-only|Read-only"),
    "permission denied": ("before", r"cannot be written|Permission denied"),
    "disk full": ("before", r"cannot be written|No space left"),
    "changed entry": ("after", r"does not match its checksum"),
    "torn segment": ("after", r"damaged segment"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_a_cache_fault_warns_once_and_changes_no_result(
    name, fault, media, tmp_path, monkeypatch, full_disk
):
    make, kind = EXTRACTORS[name]
    items = _items(kind, media)
    plain = make(on_error="raise").fit_transform(items)
    location = tmp_path / "cache"
    when, reason = FAULTS[fault]
    forget()
    if when == "after":  # a good first run fills the store; the fault comes between processes
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            make(memory=location, on_error="raise").fit_transform(items)
        assert _segments(location), "nothing was stored"
        (_flip_last_byte if fault == "changed entry" else _tear)(location)
        forget()  # as a new process: the disk store is read again
    elif fault == "not a directory":
        location.write_text("a file")
    elif fault == "read-only":
        _unwritable(monkeypatch, PermissionError(errno.EROFS, "Read-only file system"))
    elif fault == "permission denied":
        _unwritable(monkeypatch, PermissionError(errno.EACCES, "Permission denied"))
    else:
        full_disk()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for policy in ("raise", "nan"):  # a fault is no item's error under either policy
            out = make(memory=location, on_error=policy).fit_transform(items)
            assert out.shape[0] == len(items)
            np.testing.assert_array_equal(out, plain)
    assert not item_warnings(caught), [str(w.message) for w in item_warnings(caught)]
    cache_warnings = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(cache_warnings) == 1, [str(w.message) for w in cache_warnings]
    message = str(cache_warnings[0].message)
    assert re.search(reason, message), message
    if when == "before":
        assert str(location) in message, message
    forget()


@pytest.mark.parametrize("name", list(EXTRACTORS))
def test_a_store_emptied_between_runs_recomputes_silently(name, media, tmp_path):
    make, kind = EXTRACTORS[name]
    items = _items(kind, media)
    location = tmp_path / "cache"
    first = make(memory=location).fit_transform(items)
    for segment in _segments(location):
        segment.unlink()  # another tool cleaned the cache
    forget()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = make(memory=location).fit_transform(items)
    np.testing.assert_array_equal(again, first)
    assert _segments(location)  # and it is stored again
