"""The embedders decode the next chunk while the model runs: order, item policy, shutdown.

``ImageEncoder`` runs a tiny CNN built here, in-process (no ``n_jobs``),
with ``batch_size=2`` so that a handful of images makes several chunks and
the decoding thread (:func:`mmsk._embed.decoded_ahead`) is used. Each
result is compared with decoding in line (the thread swapped for a plain
loop), which must give the same numbers, the same errors and the same
warnings.
"""

import threading
import time
import warnings

import numpy as np
import pytest

import mmsk._embed
from mmsk import ImageEncoder, ItemError, ItemWarning
from mmsk._embed import decoded_ahead

torch = pytest.importorskip("torch")

SIZE = (8, 8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 5),
    )


def images(n=9, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, size=(10 + i, 12, 3), dtype=np.uint8) for i in range(n)]


def encoder(**kwargs):
    return ImageEncoder(model=tiny_cnn(), size=SIZE, batch_size=2, device="cpu", **kwargs)


def in_line(function, tasks, depth=None):
    return (function(*task) for task in tasks)


def _decode_threads():
    return [t for t in threading.enumerate() if t.name == "mmsk-decode"]


def test_decoded_ahead_keeps_order_and_raises_the_first_error_in_place():
    def square(i):
        if i == 3:
            raise ValueError("three")
        return i * i

    out = []
    with pytest.raises(ValueError, match="three"):
        for value in decoded_ahead(square, [(i,) for i in range(6)]):
            out.append(value)
    assert out == [0, 1, 4]  # results before the failing task, in order
    assert not _decode_threads()


def test_decoded_ahead_runs_ahead_in_a_bounded_queue_and_stops_when_closed():
    started = []

    def work(i):
        started.append(i)
        return i

    results = decoded_ahead(work, [(i,) for i in range(50)], depth=2)
    assert next(results) == 0
    deadline = time.monotonic() + 5
    while len(started) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    # item 0 taken, 2 waiting in the queue, at most one more in hand: bounded
    assert 3 <= len(started) <= 4
    results.close()
    assert not _decode_threads()
    assert len(started) <= 4


def test_image_encoder_decodes_in_a_thread_and_matches_in_line_decoding(monkeypatch):
    items = images()
    names = []
    real = mmsk._embed._prepare_chunk

    def spy(*args):
        names.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(mmsk._embed, "_prepare_chunk", spy)
    ahead = encoder().fit_transform(items)
    assert names.count("mmsk-decode") == 5  # 9 images, chunks of 2
    monkeypatch.setattr(mmsk._embed, "decoded_ahead", in_line)
    names.clear()
    plain = encoder().fit_transform(items)
    assert set(names) == {threading.current_thread().name}
    np.testing.assert_array_equal(ahead, plain)
    assert np.isfinite(ahead).all() and ahead.shape == (9, 16)


def test_decoding_of_the_next_chunk_overlaps_the_forward_pass():
    events = []
    model = tiny_cnn()

    class Slow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            events.append("forward")
            time.sleep(0.1)
            out = self.inner(x)
            events.append("forward done")
            return out

    real = mmsk._embed._prepare_chunk

    def spy(*args):
        events.append("decode")
        return real(*args)

    enc = ImageEncoder(model=Slow(), size=SIZE, batch_size=2, device="cpu", layer=None)
    enc.fit(images(4))
    events.clear()
    mp = pytest.MonkeyPatch()
    mp.setattr(mmsk._embed, "_prepare_chunk", spy)
    try:
        enc.transform(images(4))
    finally:
        mp.undo()
    first_done = events.index("forward done")
    assert events[:first_done].count("decode") == 2  # chunk 2 decoded during forward 1


def test_on_error_raise_names_the_row_as_in_line(monkeypatch):
    items = images(7)
    items[5] = b"not an image"
    with pytest.raises(ItemError) as ahead:
        encoder().fit_transform(items)
    assert not _decode_threads()
    monkeypatch.setattr(mmsk._embed, "decoded_ahead", in_line)
    with pytest.raises(ItemError) as plain:
        encoder().fit_transform(items)
    assert "row 5" in str(ahead.value)
    assert str(ahead.value) == str(plain.value)


def test_on_error_nan_gives_the_same_rows_and_warning_as_in_line(monkeypatch):
    items = images(7)
    items[1] = b"not an image"
    items[6] = None

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = encoder(on_error="nan").fit_transform(items)
        return out, [str(w.message) for w in caught if issubclass(w.category, ItemWarning)]

    ahead, ahead_warnings = run()
    monkeypatch.setattr(mmsk._embed, "decoded_ahead", in_line)
    plain, plain_warnings = run()
    np.testing.assert_array_equal(ahead, plain)
    assert np.isnan(ahead[[1, 6]]).all() and np.isfinite(np.delete(ahead, [1, 6], 0)).all()
    assert ahead_warnings == plain_warnings and len(ahead_warnings) == 1
    assert "row 1" in ahead_warnings[0]


def test_a_model_error_stops_the_decoding_thread():
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.inner = tiny_cnn()

        def forward(self, x):
            self.calls += 1
            if self.calls > 1:  # (the first call is fit's probe)
                raise RuntimeError("the device fell over")
            return self.inner(x)

    enc = ImageEncoder(model=Broken(), size=SIZE, batch_size=2, device="cpu", layer=None)
    enc.fit(images(2))
    with pytest.raises(RuntimeError, match="fell over"):
        enc.transform(images(9))
    assert not _decode_threads()


def test_normalisation_tensors_are_made_once_per_model(monkeypatch):
    enc = encoder().fit(images(2))
    model = enc._get_model()
    made = []
    real = torch.tensor

    def counting(*args, **kwargs):
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", counting)
    enc.transform(images(9))
    enc.transform(images(3))
    assert made == []  # the mean and std from fit's probe are reused
    shift, scale = model._stats(enc._stat(enc.mean), enc._stat(enc.std))
    assert tuple(shift.shape) == (1, 3, 1, 1) and shift.device.type == "cpu"
    np.testing.assert_allclose(scale.flatten().numpy(), enc.std, rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_image_encoder_on_cuda_with_overlap_matches_the_cpu():
    items = images(11)
    cpu = encoder().fit_transform(items)
    enc = ImageEncoder(model=tiny_cnn(), size=SIZE, batch_size=2, device="cuda")
    gpu = enc.fit_transform(items)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
    shift, _ = enc._get_model()._stats(enc._stat(enc.mean), enc._stat(enc.std))
    assert shift.is_cuda
