"""The host-to-device batch path: staged (pinned, non-blocking) copies, prefetch, densifying.

On a CPU the staged path is not taken (the data are where the compute is),
but prefetching, densifying and the host index of a sparse block share
their code with it and are tested for order and values; nothing in the
batch path may synchronise with a device. The ``gpu`` tests (deselected by
default) run the staged path on CUDA.
"""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse

from mmsk.fusion import FusionClassifier
from mmsk.fusion._data import BatchIterator, FusionDataset
from mmsk.fusion._transfer import densify, one_ahead

FAST = {"hidden_units": 16, "max_epochs": 30, "random_state": 0, "early_stopping": False}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")


def _dataset(n=37, seed=0):
    rng = np.random.RandomState(seed)
    dense = rng.normal(size=(n, 3)).astype(np.float32)
    rows = sparse.random(n, 5, density=0.4, format="csr", random_state=seed, dtype=np.float32)
    X = {"x0": dense, "x1": rows, "mask": np.ones((n, 2), bool)}
    return X, np.arange(n)


def test_densify_matches_toarray_and_sums_duplicates():
    rows = sparse.csr_matrix(
        (np.array([1.0, 2.0, 4.0], np.float32), np.array([0, 0, 2]), np.array([0, 2, 3])),
        shape=(2, 3),
    )  # (0, 0) twice, as a non-canonical CSR may hold it
    assert densify(rows, "cpu").tolist() == [[3.0, 0.0, 0.0], [0.0, 0.0, 4.0]]


def test_one_ahead_starts_the_next_item_before_yielding():
    started = []

    def items():
        for i in range(3):
            started.append(i)
            yield i

    seen = []
    for item in one_ahead(items()):
        seen.append((item, list(started)))
    assert seen == [(0, [0, 1]), (1, [0, 1, 2]), (2, [0, 1, 2])]
    assert list(one_ahead(iter([]))) == []


@pytest.mark.parametrize("subset", [False, True])
def test_prefetching_gives_the_same_batches_in_the_same_order(subset):
    X, y = _dataset()
    dataset = FusionDataset(X, y)
    if subset:
        dataset = torch.utils.data.Subset(dataset, np.arange(3, 30))
    plain = list(BatchIterator(dataset, batch_size=5, shuffle=True, seed=1, prefetch=False))
    ahead = list(BatchIterator(dataset, batch_size=5, shuffle=True, seed=1, prefetch=True))
    assert len(plain) == len(ahead) > 2
    for (xa, ya), (xb, yb) in zip(plain, ahead, strict=True):
        assert_array_equal(ya.numpy(), yb.numpy())
        for key in xa:
            assert_array_equal(xa[key].numpy(), xb[key].numpy())
    rows = np.concatenate([yb.numpy() for _, yb in ahead])
    assert sorted(rows) == (list(range(3, 30)) if subset else list(range(37)))
    index = ahead[0][1]
    assert_array_equal(ahead[0][0]["x1"].numpy(), X["x1"][index.numpy()].toarray())


def test_the_batch_path_never_syncs_with_the_device(monkeypatch):
    # no .cpu(), .item() nor .tolist() per batch: each would wait for a GPU
    X, y = _dataset()
    iterator = BatchIterator(FusionDataset(X, y), batch_size=4, shuffle=True, seed=0)

    def refuse(self, *args, **kwargs):
        raise AssertionError("a device sync in the batch path")

    for name in ("cpu", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    batches = list(iterator)
    monkeypatch.undo()
    assert sum(len(yb) for _, yb in batches) == 37


# -- on a GPU ----------------------------------------------------------------------------


@pytest.mark.gpu
@cuda
def test_cuda_staged_batches_are_pinned_copies_of_the_host_rows():
    X, y = _dataset()
    staged = FusionDataset(X, y, device="cuda", max_device_bytes=0)
    assert staged.staged and staged._stager.pin and staged._stager.stream is not None
    host = FusionDataset(X, y)
    iterator = BatchIterator(staged, batch_size=5, shuffle=True, seed=2)
    assert iterator.prefetch
    plain = list(BatchIterator(host, batch_size=5, shuffle=True, seed=2))
    for (xa, ya), (xb, yb) in zip(plain, iterator, strict=True):
        assert yb.is_cuda and all(t.is_cuda for t in xb.values())
        assert_array_equal(ya.numpy(), yb.cpu().numpy())
        for key in xa:
            assert_array_equal(xa[key].numpy(), xb[key].cpu().numpy())


@pytest.mark.gpu
@cuda
def test_cuda_fit_with_the_data_kept_on_the_host_and_a_sparse_block(blocks_data, monkeypatch):
    X, y = blocks_data
    X = {**X, "m2": sparse.csr_matrix(np.where(X["m2"] > 0.5, X["m2"], 0.0))}
    on_device = FusionClassifier(device="cuda", **FAST).fit(X, y)
    # every batch travels: FusionDataset's device budget set to 0 bytes
    monkeypatch.setattr(FusionDataset.__init__, "__defaults__", (None, None, 0))
    staged = FusionClassifier(device="cuda", **FAST).fit(X, y)
    assert staged.score(X, y) > 0.85
    assert_allclose(staged.predict_proba(X), on_device.predict_proba(X), atol=1e-3)
