"""The feature cache: path keys, the memory layer, the disk store, faults, concurrency."""

import errno
import os
import shutil
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import mmsk._base
import mmsk._cache
import mmsk._cache_paths
import mmsk._cache_segments
import mmsk._extract
import mmsk._files
import mmsk._items
from mmsk import ImagePixels, ItemError, ItemWarning
from mmsk._base import BadItem, ItemTransformer
from mmsk._cache import CacheWarning, FeatureCache, cache_location, forget


class Summer(ItemTransformer):
    """A tiny extractor for the base-class tests: sums a numeric item."""

    calls = 0

    def __init__(self, *, k=2, on_error="raise", n_jobs=None, memory=None, verbose=0):
        self.k = k
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _check_params(self):
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")

    def _feature_names(self):
        return [f"sum_{i}" for i in range(self.k)]

    def _extract(self, source):
        type(self).calls += 1
        if not isinstance(source, np.ndarray):
            raise BadItem(f"unsupported item type {type(source).__name__}")
        return np.full(self.k, source.sum())


def test_cache_location_forms(tmp_path):
    assert cache_location(None) is None
    assert cache_location(str(tmp_path)) == tmp_path
    assert cache_location(joblib.Memory(tmp_path, verbose=0)) == tmp_path
    assert cache_location(joblib.Memory(None)) is None
    with pytest.raises(ValueError, match="memory should be"):
        cache_location(3)


def test_cache_roundtrip_and_isolation(tmp_path):
    a = FeatureCache(tmp_path, "X", "params-a")
    b = FeatureCache(tmp_path, "X", "params-b")
    a.put("k", np.arange(3, dtype="float32"))
    np.testing.assert_array_equal(a.get("k"), [0, 1, 2])
    assert b.get("k") is None  # other parameters, other entry
    assert a.get("other") is None
    assert not list(tmp_path.rglob("*.tmp"))
    off = FeatureCache(None, "X", "t")
    off.put("k", np.ones(2))
    assert off.get("k") is None and not off.enabled


def test_memory_extracts_each_item_once(tmp_path):
    items = [np.full(3, i, dtype=float) for i in range(20)]
    Summer.calls = 0
    first = Summer(memory=tmp_path).fit_transform(items)
    assert Summer.calls == 20
    again = Summer(memory=str(tmp_path)).fit_transform(items[::-1])
    assert Summer.calls == 20  # every item came from the cache
    np.testing.assert_array_equal(again, first[::-1])
    Summer(k=3, memory=tmp_path).fit_transform(items)
    assert Summer.calls == 40  # a parameter that changes the output misses


def test_on_error_policies(tmp_path):
    X = [np.ones(2), 7, None]
    with pytest.raises(ItemError, match=r"^row 1 \(7\): unsupported item type int$"):
        Summer().fit_transform(X)
    with pytest.raises(ItemError, match=r"^row 0 \('nope.wav'\): file not found$"):
        Summer(memory=tmp_path).fit_transform(["nope.wav"])  # hashing opens the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = Summer(on_error="nan").fit_transform(X)
    assert [w.category for w in caught] == [ItemWarning]
    assert "1 of 3 items" in str(caught[0].message)
    assert out.shape == (3, 2) and np.isnan(out[1:]).all() and (out[0] == 2).all()


def test_fit_validates(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        Summer(on_error="ignore").fit([np.ones(1)])
    with pytest.raises(ValueError, match="k must be"):
        Summer(k=0).fit([np.ones(1)])
    with pytest.raises(ValueError, match="memory should be"):
        Summer(memory=1.5).fit([np.ones(1)])


def test_parallel_and_progress_bar_do_not_change_output(capsys):
    items = [np.full(2, i, dtype=float) for i in range(600)]
    items[5] = None
    serial = Summer().fit_transform(items)
    parallel = Summer(n_jobs=2, verbose=1).fit_transform(items)
    np.testing.assert_array_equal(serial, parallel)
    assert "Summer" in capsys.readouterr().err


# -- the layers: path keys, memory, disk --------------------------------------------------
OLD = 10**9  # 1970-01-01T00:00:01: a file last changed long ago, as data files are


@pytest.fixture
def reads(monkeypatch):
    """Count the files opened (every path item is opened through mmsk._files' file policy)."""
    opened = []
    real = mmsk._files.open_regular

    def counting(path, *args, **kwargs):
        opened.append(os.path.basename(os.fspath(path)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(mmsk._files, "open_regular", counting)
    return opened


@pytest.fixture
def extracted(count_extractions):
    return count_extractions(ImagePixels)


@pytest.fixture
def pngs(png_paths, tmp_path):
    """Copies of the test images, last changed long ago."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for path in png_paths:
        copy = folder / os.path.basename(path)
        shutil.copy(path, copy)
        os.utime(copy, ns=(OLD, OLD))
        paths.append(str(copy))
    return paths


def test_no_cache_work_without_memory(monkeypatch, pngs):
    def refuse(*args, **kwargs):
        raise AssertionError("cache work with memory=None")

    monkeypatch.setattr(ItemTransformer, "_cache_token", refuse)
    monkeypatch.setattr(mmsk._base, "cache_token", refuse)
    monkeypatch.setattr(mmsk._cache, "library_versions", refuse)
    monkeypatch.setattr(mmsk._base, "known_key", refuse)
    monkeypatch.setattr(mmsk._base, "path_key", refuse)
    monkeypatch.setattr(mmsk._extract, "keyed_path", refuse)
    monkeypatch.setattr(mmsk._cache.FeatureCache, "__init__", refuse)
    out = ImagePixels(size=(4, 4), mode="L").fit_transform(pngs + [None])
    assert out.shape == (7, 16) and np.isnan(out[-1]).all() and not np.isnan(out[:-1]).any()
    with pytest.raises(AssertionError, match="cache work"):
        ImagePixels(size=(4, 4), mode="L", memory=pngs[0] + ".cache").fit_transform(pngs)


def test_a_remembered_path_is_served_only_under_the_file_policy(pngs, tmp_path, reads):
    """The path memo of one extractor never lets another one's policy be skipped."""
    cache = tmp_path / "cache"
    loose = ImagePixels(size=(4, 4), mode="L", memory=cache)
    loose.fit_transform(pngs)  # every path remembered, every row stored
    reads.clear()
    other = tmp_path / "other"
    other.mkdir()
    items = pd.Series(pngs[:2], index=["a", "b"], name="img")
    confined = ImagePixels(size=(4, 4), mode="L", memory=cache, allowed_dirs=[other])
    with pytest.raises(ItemError, match=r"row 'a'.*outside the allowed directories"):
        confined.fit_transform(items)
    assert reads == []  # refused from its resolved path, not opened
    small = os.path.getsize(pngs[0]) - 1
    tight = ImagePixels(size=(4, 4), mode="L", memory=cache, max_file_bytes=small)
    with pytest.raises(ItemError, match=r"row 'a'.*more than the limit .*max_file_bytes"):
        tight.fit_transform(items)
    assert reads == [os.path.basename(pngs[0])]  # opened under the policy, refused from its size
    reads.clear()
    # a policy the files pass is served from the memo and the store
    allowed = ImagePixels(size=(4, 4), mode="L", memory=cache, allowed_dirs=[tmp_path])
    np.testing.assert_array_equal(allowed.fit_transform(pngs), loose.transform(pngs))
    assert reads == []


def test_an_unchanged_file_is_read_once_per_process(pngs, tmp_path, reads, extracted):
    est = ImagePixels(size=(4, 4), mode="L", memory=tmp_path / "cache")
    first = est.fit_transform(pngs)
    assert len(reads) == len(pngs) and len(extracted) == len(pngs)
    for _ in range(3):
        np.testing.assert_array_equal(clone(est).fit_transform(pngs[::-1]), first[::-1])
    assert len(reads) == len(pngs) and len(extracted) == len(pngs)  # stat, memory: no read


def test_the_path_key_follows_size_and_mtime(pngs, tmp_path, reads, extracted):
    from PIL import Image

    est = ImagePixels(size=(4, 4), mode="L", memory=tmp_path / "cache").fit(pngs)
    before = est.transform(pngs[:1])
    # the same size, another content, another (old) time stamp
    pixels = np.asarray(Image.open(pngs[0]))
    Image.fromarray(255 - pixels).save(pngs[0])
    os.utime(pngs[0], ns=(OLD + 5, OLD + 5))
    reads.clear()
    after = est.transform(pngs[:1])
    assert reads == [os.path.basename(pngs[0])]  # read and hashed again
    np.testing.assert_array_equal(after, ImagePixels(size=(4, 4), mode="L").fit_transform(pngs[:1]))
    assert not np.array_equal(after, before)
    # a file just written is not trusted by its stat: read every time until it is old
    shutil.copy(pngs[1], pngs[0])
    reads.clear()
    est.transform(pngs[:1])
    est.transform(pngs[:1])
    assert reads == [os.path.basename(pngs[0])] * 2
    # a renamed copy hits by content: read once to hash it, never decoded
    renamed = tmp_path / "renamed.png"
    shutil.copy(pngs[2], renamed)
    original = est.transform(pngs[2:3])
    n = len(extracted)
    np.testing.assert_array_equal(est.transform([renamed]), original)
    assert len(extracted) == n


def test_the_memory_layer_serves_repeat_transforms_without_disk(pngs, tmp_path, monkeypatch):
    est = ImagePixels(size=(4, 4), mode="L", memory=tmp_path / "cache")
    first = est.fit_transform(pngs)

    def no_disk(*args, **kwargs):
        raise AssertionError("the disk store was touched")

    monkeypatch.setattr(mmsk._cache._Store, "refresh", no_disk)
    monkeypatch.setattr(mmsk._cache._Store, "read_rows", no_disk)
    monkeypatch.setattr(mmsk._cache._Store, "write", no_disk)
    np.testing.assert_array_equal(clone(est).fit_transform(pngs), first)
    first[:] = -1  # the caller owns its array: the cache holds copies
    assert (clone(est).fit_transform(pngs) >= 0).all()


def test_a_new_process_reads_the_disk_store(pngs, tmp_path, extracted):
    est = ImagePixels(size=(4, 4), mode="L", memory=tmp_path / "cache")
    first = est.fit_transform(pngs)
    segments = list((tmp_path / "cache").rglob("*.seg"))
    assert len(segments) == 1  # one segment per batch, not one file per item
    forget()  # as a new process: no path keys, no memory layer
    np.testing.assert_array_equal(clone(est).fit_transform(pngs), first)
    assert len(extracted) == len(pngs)


def test_lookups_do_no_joblib_hash(pngs, tmp_path, monkeypatch):
    est = ImagePixels(size=(4, 4), mode="L", memory=tmp_path / "cache").fit(pngs)
    est.transform(pngs)
    calls = []
    real = mmsk._cache.joblib.hash
    monkeypatch.setattr(mmsk._cache.joblib, "hash", lambda *a, **k: calls.append(1) or real(*a))
    est.transform(pngs * 20)
    forget()
    est.transform(pngs * 20)
    assert len(calls) == 2  # the parameter token, once per transform


@pytest.mark.parametrize("fault", ["read-only", "not a directory", "disk full"])
def test_an_unusable_cache_warns_once_and_changes_nothing(
    pngs, tmp_path, monkeypatch, fault, full_disk
):
    plain = ImagePixels(size=(4, 4), mode="L").fit_transform(pngs)
    location = tmp_path / "cache"
    if fault == "not a directory":
        location.write_text("a file")
    elif fault == "read-only":

        def fail(*args, **kwargs):
            raise PermissionError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(mmsk._cache_segments.tempfile, "mkstemp", fail)
    else:  # the disk fills up while writing a segment
        full_disk()
    est = ImagePixels(size=(4, 4), mode="L", memory=location, on_error="raise")
    with pytest.warns(CacheWarning) as caught:
        out = [est.fit_transform(pngs), clone(est).fit_transform(pngs[::-1])[::-1]]
        out.append(clone(est).set_params(size=(2, 2)).fit_transform(pngs))  # another store
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert str(location) in message and ("cannot be written" in message or "read" in message)
    np.testing.assert_array_equal(out[0], plain)
    np.testing.assert_array_equal(out[1], plain)
    assert out[2].shape == (len(pngs), 4) and not np.isnan(out[2]).any()
    if location.is_dir():
        assert not list(location.rglob("*.tmp")) and not list(location.rglob("*.seg"))


def test_a_changed_entry_is_recomputed_with_a_warning(pngs, tmp_path, extracted):
    est = ImagePixels(size=(4, 4), mode="L", memory=tmp_path / "cache")
    first = est.fit_transform(pngs)
    (segment,) = (tmp_path / "cache").rglob("*.seg")
    data = bytearray(segment.read_bytes())
    row = np.rint(first[2] * 255).astype(np.uint8).tobytes()  # stored as its 8-bit pixels
    at = bytes(data).index(row)  # the third entry's values, under a valid header
    data[at + 5] ^= 0xFF
    segment.write_bytes(bytes(data))
    forget()
    with pytest.warns(CacheWarning, match="does not match its checksum"):
        again = clone(est).fit_transform(pngs)
    np.testing.assert_array_equal(again, first)
    assert len(extracted) == len(pngs) + 1  # the changed entry only
    forget()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recomputed entry now wins: no warning
        np.testing.assert_array_equal(clone(est).fit_transform(pngs), first)


def test_a_damaged_segment_is_skipped(pngs, tmp_path):
    est = ImagePixels(size=(4, 4), mode="L", memory=tmp_path / "cache")
    first = est.fit_transform(pngs)
    (segment,) = (tmp_path / "cache").rglob("*.seg")
    segment.write_bytes(segment.read_bytes()[:30])  # a torn write of another tool
    forget()
    with pytest.warns(CacheWarning, match="damaged segment"):
        np.testing.assert_array_equal(clone(est).fit_transform(pngs), first)


def _transform_in_worker(location, paths):
    return ImagePixels(size=(4, 4), mode="L", memory=location).fit_transform(paths)


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_two_workers_writing_one_store(pngs, tmp_path, extracted, backend):
    location = str(tmp_path / "cache")
    items = pngs * 30  # 180 rows, 6 contents
    with joblib.parallel_backend(backend, n_jobs=2):
        outs = joblib.Parallel()(
            joblib.delayed(_transform_in_worker)(location, part)
            for part in (items, items[::-1], items[60:], items[:90])
        )
    expected = ImagePixels(size=(4, 4), mode="L").fit_transform(items)
    wanted = (expected, expected[::-1], expected[60:], expected[:90])
    for out, part in zip(outs, wanted, strict=True):
        np.testing.assert_array_equal(out, part)
    forget()
    extracted.clear()
    np.testing.assert_array_equal(_transform_in_worker(location, items), expected)
    assert extracted == []  # every entry came from the store the workers wrote
    # and extraction in parallel batches with the cache gives the same
    parallel = ImagePixels(size=(4, 4), mode="L", memory=location, n_jobs=2)
    np.testing.assert_array_equal(parallel.fit_transform(items), expected)


# -- path keys stored with the cache: a new process reads no unchanged file ----------------
def _key_files(location):
    return sorted((location / "mmsk_features" / "_paths").glob("*.keys"))


def test_a_new_process_finds_path_keys_on_disk(pngs, tmp_path, reads, extracted):
    location = tmp_path / "cache"
    est = ImagePixels(size=(4, 4), mode="L", memory=location)
    first = est.fit_transform(pngs)
    assert len(_key_files(location)) == 1 and len(reads) == len(pngs)
    forget()  # a new process: no path keys, no memory layer, no store index
    reads.clear()
    np.testing.assert_array_equal(clone(est).fit_transform(pngs), first)
    assert reads == [] and len(extracted) == len(pngs)  # one stat per file, rows from the store
    assert len(_key_files(location)) == 1  # nothing new to store
    # a stored key is served only under the extractor's file policy, as a remembered one
    forget()
    items = pd.Series(pngs[:1], index=["a"], name="img")
    small = os.path.getsize(pngs[0]) - 1
    tight = ImagePixels(size=(4, 4), mode="L", memory=location, max_file_bytes=small)
    with pytest.raises(ItemError, match=r"row 'a'.*more than the limit"):
        tight.fit_transform(items)


@pytest.mark.parametrize("change", ["touched", "rewritten", "replaced"])
def test_a_changed_file_invalidates_its_stored_path_key(pngs, tmp_path, reads, extracted, change):
    location = tmp_path / "cache"
    est = ImagePixels(size=(4, 4), mode="L", memory=location).fit(pngs)
    est.transform(pngs)
    target = max(pngs, key=os.path.getsize)
    old = os.stat(target)
    if change == "touched":  # same bytes, a new (old) time stamp: read and hashed, not decoded
        os.utime(target, ns=(OLD + 7, OLD + 7))
    else:  # another image, same size and time stamp: written in place, or renamed over it
        with open(min(pngs, key=os.path.getsize), "rb") as fh:
            data = fh.read()
        data += b"\0" * (old.st_size - len(data))  # (after the image's end: ignored)
        with open(
            target + ".new" if change == "replaced" else target,
            "r+b" if change == "rewritten" else "wb",
        ) as fh:
            fh.write(data)
        if change == "replaced":
            os.replace(target + ".new", target)
        os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert os.stat(target).st_size == old.st_size
    expected = ImagePixels(size=(4, 4), mode="L").fit_transform(pngs)
    forget()
    reads.clear()
    n = len(extracted)
    got = clone(est).fit_transform(pngs)
    assert reads == [os.path.basename(target)]  # only the changed file is read
    np.testing.assert_array_equal(got, expected)
    assert len(extracted) == n + (change != "touched")
    forget()  # its new key was stored: the next process reads nothing
    reads.clear()
    np.testing.assert_array_equal(clone(est).fit_transform(pngs), expected)
    assert reads == []


def test_a_file_changed_just_before_hashing_is_not_stored(pngs, tmp_path, reads):
    location = tmp_path / "cache"
    os.utime(pngs[0])  # changed now: its stat cannot vouch for its content yet
    est = ImagePixels(size=(4, 4), mode="L", memory=location)
    est.fit_transform(pngs)
    forget()
    reads.clear()
    est.transform(pngs)
    assert reads == [os.path.basename(pngs[0])]


def test_a_damaged_key_file_is_skipped(pngs, tmp_path, reads):
    location = tmp_path / "cache"
    est = ImagePixels(size=(4, 4), mode="L", memory=location)
    first = est.fit_transform(pngs)
    (keys,) = _key_files(location)
    data = bytearray(keys.read_bytes())
    data[-3] ^= 0xFF  # a path's bytes changed: the checksum fails, the file is skipped whole
    keys.write_bytes(bytes(data))
    forget()
    reads.clear()
    with pytest.warns(CacheWarning, match="damaged path-key file"):
        np.testing.assert_array_equal(clone(est).fit_transform(pngs), first)
    assert sorted(reads) == sorted(os.path.basename(p) for p in pngs)  # read and hashed again


def test_key_files_are_merged_past_the_limit(pngs, tmp_path, reads, monkeypatch):
    monkeypatch.setattr(mmsk._cache_paths, "COMPACT_FILES", 3)
    location = tmp_path / "cache"
    est = ImagePixels(size=(4, 4), mode="L", memory=location).fit(pngs)
    for path in pngs:  # one key file per transform that read a file
        est.transform([path])
    assert 1 <= len(_key_files(location)) <= 3
    forget()
    reads.clear()
    est.transform(pngs)
    assert reads == []  # every key survived the merges


def test_key_file_records_round_trip_and_skip_unnamable_paths():
    from mmsk._cache_paths import decode_records, encode_records

    records = [("a/é.png", (1, -2, 3, 2**63, 5), "0f" * 16), ("bad\ud800.png", (1,) * 5, "00" * 16)]
    assert decode_records(encode_records(records)) == records[:1]
    with pytest.raises(ValueError, match="damaged"):
        decode_records(encode_records(records)[:-1])


def test_library_versions_skip_the_metadata_scan_for_imported_modules(monkeypatch):
    import PIL

    def refuse(name):
        raise AssertionError(f"metadata scanned for {name}")

    monkeypatch.setattr(mmsk._cache.importlib.metadata, "version", refuse)
    found = dict(mmsk._cache.library_versions.__wrapped__(("Pillow",)))
    assert found["Pillow"] == PIL.__version__ and found["numpy"] == np.__version__


def test_an_embedder_stores_path_keys_too(pngs, tmp_path, reads):
    torch = pytest.importorskip("torch")
    from mmsk import ImageEncoder

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    enc = ImageEncoder(model=model, layer=None, size=(8, 8), memory=tmp_path / "cache")
    first = enc.fit_transform(pngs)
    assert len(_key_files(tmp_path / "cache")) == 1  # one key file for the transform
    forget()
    reads.clear()
    np.testing.assert_allclose(clone(enc).fit_transform(pngs), first)
    assert reads == []


def test_missing_and_failed_rows_are_nan_with_the_cache(pngs, tmp_path):
    """With ``memory=``, missing and failed rows are NaN and hit rows equal extraction."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    items = [None, pngs[0], "", str(bad), pngs[1], float("nan")]
    plain = ImagePixels(size=(4, 4), mode="L", on_error="nan")
    with pytest.warns(ItemWarning):
        expected = plain.fit_transform(items)
    cached = ImagePixels(size=(4, 4), mode="L", on_error="nan", memory=tmp_path / "cache")
    for _ in range(2):  # first: misses extracted; then: hits from the store
        with pytest.warns(ItemWarning):
            out = cached.fit_transform(items)
        np.testing.assert_array_equal(out, expected)
        assert np.isnan(out[[0, 2, 3, 5]]).all() and not np.isnan(out[[1, 4]]).any()
    mmsk._cache.MEMORY.clear()  # rows from disk, into a fresh (uninitialised) output
    with pytest.warns(ItemWarning):
        np.testing.assert_array_equal(cached.transform(items), expected)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_image_pixels_stores_its_8_bit_pixels(pngs, tmp_path, n_jobs):
    """The store holds one byte per pixel; hits, partial or whole, equal an extraction."""
    plain = ImagePixels(size=(5, 3), mode="RGB").fit(pngs)
    expected = plain.transform(pngs)
    cached = ImagePixels(size=(5, 3), mode="RGB", memory=tmp_path / "cache", n_jobs=n_jobs)
    half = len(pngs) // 2
    np.testing.assert_array_equal(cached.fit_transform(pngs[:half]), expected[:half])
    (segment,) = (tmp_path / "cache").rglob("*.seg")
    width = expected.shape[1]  # 45 values: 45 bytes a row, not 180
    assert width * half <= segment.stat().st_size < 4 * width * half
    for clear in (False, True):  # from the memory layer; then from disk, as a new process
        if clear:
            forget()
        mixed = cached.transform(pngs[::-1])  # hits and misses, out of order
        np.testing.assert_array_equal(mixed, expected[::-1])
        assert mixed.dtype == np.float32
