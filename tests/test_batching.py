"""The extractor base's batches: BLAS limited once per batch, batch sizes, progress per item."""

import os
import threading

import numpy as np
import pytest
import threadpoolctl

import mmsk._batching
import mmsk.audio
from mmsk import AudioFeatures, ImagePixels, LogMelSpectrogram
from mmsk._batching import MAX_BATCH, MIN_BATCH, TASKS_PER_WORKER, batch_size, blas_threads

SR = 8000
FAST = dict(sr=SR, n_mfcc=8, n_mels=16, n_fft=256, hop_length=64)


def tones(n):
    t = np.arange(2000) / SR
    return [(0.5 * np.sin(2 * np.pi * (200 + 40 * i) * t)).astype(np.float32) for i in range(n)]


class FakeBlas:
    """A stand-in for one threadpoolctl BLAS controller that records every change."""

    def __init__(self, threads=4):
        self.threads = threads
        self.calls = []

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.calls.append(n)
        self.threads = n


@pytest.fixture
def fake_blas(monkeypatch):
    blas = FakeBlas()
    monkeypatch.setattr(mmsk._batching, "_blas_controllers", lambda: (blas,))
    return blas


@pytest.fixture
def seen_threads(monkeypatch, fake_blas):
    """The fake BLAS's thread count at each AudioFeatures clip."""
    seen = []
    real = mmsk.audio._clip_features

    def recording(y, sr, est):
        seen.append(fake_blas.threads)
        return real(y, sr, est)

    monkeypatch.setattr(mmsk.audio, "_clip_features", recording)
    return seen


# -- BLAS threads ------------------------------------------------------------------
def test_blas_is_limited_once_per_call_not_per_clip(fake_blas, seen_threads):
    est = AudioFeatures(**FAST).fit(tones(2))
    fake_blas.calls.clear()
    seen_threads.clear()
    X = est.transform([*tones(12), None])
    assert seen_threads == [1] * 12  # every clip ran on one BLAS thread
    assert fake_blas.calls == [1, 4]  # limited once, restored once: not twice per clip
    assert fake_blas.threads == 4 and np.isnan(X[-1]).all()


def test_blas_is_limited_once_per_batch_with_a_cache(fake_blas, seen_threads, tmp_path):
    est = AudioFeatures(**FAST, memory=tmp_path).fit(tones(2))
    fake_blas.calls.clear()
    seen_threads.clear()
    est.transform(tones(12))
    assert seen_threads == [1] * 12
    assert fake_blas.calls == [1, 4]
    seen_threads.clear()
    est.transform(tones(12))  # all hits: nothing extracted
    assert seen_threads == []


def test_extractors_without_blas_work_leave_it_alone(fake_blas):
    images = [np.full((5, 5), i, dtype=np.uint8) for i in range(10)]
    ImagePixels(size=(4, 4)).fit_transform(images)
    assert fake_blas.calls == []


def test_a_failing_clip_restores_blas(fake_blas):
    est = AudioFeatures(**FAST).fit(tones(1))
    with pytest.raises(ValueError, match="row 1"):
        est.transform([tones(1)[0], np.full(2000, np.nan, dtype=np.float32)])
    assert fake_blas.threads == 4


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores for 2 BLAS threads")
@pytest.mark.parametrize("cls", [AudioFeatures, LogMelSpectrogram])
def test_real_blas_runs_on_one_thread_inside_and_is_restored(cls, monkeypatch):
    seen = []
    real = cls._extract

    def recording(self, source):
        info = threadpoolctl.threadpool_info()
        seen.append({lib["num_threads"] for lib in info if lib["user_api"] == "blas"})
        return real(self, source)

    monkeypatch.setattr(cls, "_extract", recording)
    params = FAST if cls is AudioFeatures else dict(sr=SR, n_mels=16, n_fft=256, hop_length=64)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        cls(**params).fit_transform(tones(3))
        after = {lib["num_threads"] for lib in threadpoolctl.threadpool_info()}
    assert seen == [{1}] * 3
    assert 2 in after


def test_concurrent_blocks_share_the_limit(fake_blas):
    inside, leave_first = threading.Event(), threading.Event()

    def first():
        with blas_threads(1):
            inside.set()
            leave_first.wait(5)

    worker = threading.Thread(target=first)
    worker.start()
    inside.wait(5)
    with blas_threads(1):
        leave_first.set()
        worker.join(5)
        assert fake_blas.threads == 1  # the other block ended: still limited for this one
    assert fake_blas.threads == 4 and fake_blas.calls == [1, 4]


# -- batch sizes -------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 100, 600, 3000, 10_000, 100_000])
@pytest.mark.parametrize("workers", [2, 4])
def test_batches_spread_the_work_over_the_workers(n, workers):
    size = batch_size(n, workers)
    tasks = -(-n // size)
    assert MIN_BATCH <= size <= MAX_BATCH
    if n >= MIN_BATCH * workers * TASKS_PER_WORKER:  # enough items: about TASKS_PER_WORKER each
        assert tasks * 5 >= 4 * TASKS_PER_WORKER * workers  # (the size is rounded up)
    if size < MAX_BATCH:  # not more tasks than needed to even out the workers
        assert tasks <= TASKS_PER_WORKER * workers or size == MIN_BATCH
    assert batch_size(n, 1) == MAX_BATCH


# -- progress ----------------------------------------------------------------------
class Bar:
    """Records what the extractor base tells tqdm."""

    made = []

    def __init__(self, total=None, **kwargs):
        self.total, self.updates, self.closed = total, [], False
        Bar.made.append(self)

    def update(self, n=1):
        self.updates.append(n)

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    import tqdm.auto

    Bar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    return Bar.made


def test_progress_moves_per_item(bars):
    images = [np.full((5, 5), i % 256, dtype=np.uint8) for i in range(300)]
    images[7] = None
    ImagePixels(size=(4, 4), verbose=1).fit_transform(images)
    (bar,) = bars
    assert bar.total == 300 and bar.updates == [1] * 300 and bar.closed


def test_progress_with_a_cache_moves_per_hit_batch_and_per_miss(bars, tmp_path):
    images = [np.full((5, 5), i, dtype=np.uint8) for i in range(40)]
    est = ImagePixels(size=(4, 4), memory=tmp_path, verbose=1).fit(images)
    est.transform(images[:30])
    est.transform(images)
    first, second = bars
    assert first.updates == [0] + [1] * 30
    assert second.updates == [30] + [1] * 10  # the 30 hits at once, then each miss


def test_progress_with_two_workers_moves_in_small_steps(bars):
    images = [np.full((5, 5), i % 256, dtype=np.uint8) for i in range(600)]
    one = ImagePixels(size=(4, 4)).fit_transform(images)
    two = ImagePixels(size=(4, 4), n_jobs=2, verbose=1).fit_transform(images)
    np.testing.assert_array_equal(one, two)
    (bar,) = bars
    assert sum(bar.updates) == 600
    assert max(bar.updates) <= batch_size(600, 2) < 600 // 8
    assert len(bar.updates) >= 2 * TASKS_PER_WORKER
