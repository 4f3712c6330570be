"""The prepared input: missing-modality masks, statistics, the dataset and batch iterator."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from torch.utils.data import DataLoader, Subset

from mmsk.fusion._data import (
    BatchIterator,
    FusionDataset,
    block_stats,
    check_block,
    mask_blocks,
)


def prepared(n=10, seed=0):
    rng = np.random.RandomState(seed)
    X = {
        "x0": rng.normal(size=(n, 3)).astype(np.float32),
        "x1": rng.normal(size=(n, 2)).astype(np.float32),
        "mask": np.ones((n, 2), dtype=bool),
    }
    return X, np.arange(n)


def test_all_nan_rows_are_masked_and_zero_filled_in_a_copy():
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    a[[1, 3]] = np.nan
    a.setflags(write=False)  # read-only input (memmap) is fine
    b = np.ones((4, 1), dtype=np.float32)
    out = mask_blocks([a, b], ["a", "b"], [None, None])
    assert_array_equal(out["mask"], [[True, True], [False, True], [True, True], [False, True]])
    assert_array_equal(out["x0"][[1, 3]], 0.0)
    assert np.isnan(a[1]).all()


def test_sparse_all_nan_rows_are_masked():
    dense = np.array([[1, 0, 2], [np.nan] * 3, [0, 0, 0]], dtype=np.float32)
    out = mask_blocks([sparse.csr_matrix(dense), np.ones((3, 1))], ["s", "d"], [None, None])
    assert_array_equal(out["mask"][:, 0], [True, False, True])
    assert sparse.issparse(out["x0"]) and out["x0"][1].nnz == 0


def test_partial_nan_and_empty_rows_are_errors():
    a = np.ones((3, 2), dtype=np.float32)
    a[2, 1] = np.nan
    with pytest.raises(ValueError, match="modality 'img': row 2 has NaN in column 'px1'"):
        mask_blocks([a], ["img"], [["px0", "px1"]])
    a[2] = np.nan
    with pytest.raises(ValueError, match=r"row 2 has no modality.*\['img'\]"):
        mask_blocks([a], ["img"], [None])


def test_check_block_rejects_infinity_and_strings():
    with pytest.raises(ValueError, match="infinity"):
        check_block([[np.inf, 1.0]], "X['a']")
    with pytest.raises(ValueError, match="could not convert"):
        check_block([["x", "y"]], "X['a']")


def test_block_stats_use_present_rows_only_and_match_for_sparse():
    X, _ = prepared()
    X["mask"][:4, 0] = False
    X["x0"][:4] = 0.0
    means, scales = block_stats(X, 2)
    assert_allclose(means[0], X["x0"][4:].mean(axis=0), rtol=1e-6)
    assert_allclose(scales[0], X["x0"][4:].std(axis=0), rtol=1e-5)
    Xs = dict(X, x0=sparse.csr_matrix(X["x0"]))
    assert_allclose(block_stats(Xs, 2)[0][0], means[0], rtol=1e-6)
    X["x1"][:, 0] = 3.0  # constant feature: scale 1
    assert block_stats(X, 2)[1][1][0] == 1.0


def test_dataset_batches_by_index_and_by_slice():
    X, y = prepared()
    X["x1"] = sparse.csr_matrix(X["x1"])
    ds = FusionDataset(X, y)
    xb, yb = ds.batch(torch.tensor([3, 1]))
    assert_array_equal(xb["x0"].numpy(), X["x0"][[3, 1]])
    assert_array_equal(xb["x1"].numpy(), X["x1"][[3, 1]].toarray())
    assert yb.tolist() == [3, 1]
    xs, ys = ds.batch(slice(2, 5))
    assert xs["mask"].shape == (3, 2) and ys.tolist() == [2, 3, 4]
    assert ds.batch(slice(0, 2))[1] is not None and FusionDataset(X).batch(slice(0, 2))[1] is None


def test_dataset_rows_work_with_a_plain_dataloader():
    X, y = prepared()
    X["x1"] = sparse.csr_matrix(X["x1"])
    xb, yb = next(iter(DataLoader(FusionDataset(X, y), batch_size=4)))
    assert xb["x1"].shape == (4, 2) and yb.tolist() == [0, 1, 2, 3]


def test_iterator_shuffles_every_pass_and_covers_each_row_once():
    X, y = prepared(n=50)
    it = BatchIterator(FusionDataset(X, y), batch_size=8, shuffle=True, seed=0)
    passes = [torch.cat([yb for _, yb in it]) for _ in range(2)]
    for order in passes:
        assert sorted(order.tolist()) == list(range(50))
    assert not torch.equal(passes[0], passes[1])
    again = BatchIterator(FusionDataset(X, y), batch_size=8, shuffle=True, seed=0)
    assert torch.equal(torch.cat([yb for _, yb in again]), passes[0])


def test_iterator_without_shuffle_keeps_order():
    X, y = prepared(n=20)
    got = torch.cat([yb for _, yb in BatchIterator(FusionDataset(X, y), batch_size=6)])
    assert got.tolist() == list(range(20))


def test_iterator_honours_a_subset():
    X, y = prepared(n=20)
    subset = Subset(FusionDataset(X, y), np.array([5, 2, 9, 11]))
    got = torch.cat([yb for _, yb in BatchIterator(subset, batch_size=3)])
    assert got.tolist() == [5, 2, 9, 11]


@pytest.mark.parametrize("n, sizes", [(17, [8, 9]), (16, [8, 8]), (9, [9]), (1, [1]), (0, [])])
def test_a_one_row_remainder_joins_the_previous_batch(n, sizes):
    X, y = prepared(n=n)
    it = BatchIterator(FusionDataset(X, y), batch_size=8)
    assert [len(yb) for _, yb in it] == sizes
    assert len(it) == len(sizes)


def test_iterator_needs_a_fusion_dataset():
    with pytest.raises(TypeError, match="needs a FusionDataset"):
        BatchIterator(torch.utils.data.TensorDataset(torch.zeros(3)), batch_size=2)
