"""Finding modality blocks: prefixes, dict keys, explicit mappings, and checking them again."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy import sparse

from mmsk.fusion.blocks import BlockLayout, find_layout, is_dict, prefix_blocks


def test_prefix_blocks_group_by_first_double_underscore():
    names = ["image__px_0_0", "audio__mfcc_01_mean", "image__px_0_1", "text__svd__0"]
    assert prefix_blocks(names) == {"image": [0, 2], "audio": [1], "text": [3]}


def test_unprefixed_columns_form_the_other_block_in_order():
    assert prefix_blocks(["age", "image__a", "price", "__odd"]) == {
        "other": [0, 2, 3],
        "image": [1],
    }
    # a real "other" prefix keeps its name; the unprefixed block steps aside
    assert prefix_blocks(["other__a", "x"]) == {"other": [0], "other_": [1]}


def test_no_prefix_at_all_means_no_blocks():
    assert prefix_blocks(["a", "b"]) == {}


def test_find_layout_order_of_precedence():
    names = np.array(["image__a", "image__b", "audio__c"], dtype=object)
    X = np.zeros((3, 3))
    assert find_layout(X, names).source == "prefix"
    explicit = find_layout(X, names, {"left": [0], "right": slice(1, 3)})
    assert explicit.source == "modalities" and explicit.names == ["left", "right"]
    assert find_layout(X, None).source == "single"
    layout = find_layout({"b": np.zeros((3, 2)), "a": np.zeros((3, 1))}, None)
    assert (layout.source, layout.names, layout.dims) == ("dict", ["b", "a"], [2, 1])


def test_output_indices_with_an_empty_remainder_slice():
    indices = {"image": slice(0, 4), "audio": slice(4, 6), "remainder": slice(0, 0)}
    layout = find_layout(np.zeros((2, 6)), None, indices)
    assert layout.names == ["image", "audio"] and layout.dims == [4, 2]


def test_split_contiguous_blocks_are_views_and_others_are_gathered():
    X = np.arange(24, dtype=np.float32).reshape(4, 6)
    layout = find_layout(X, None, {"a": [0, 1, 2], "b": [5, 3, 4]})
    a, b = layout.split(X)
    assert np.shares_memory(a, X)
    assert_array_equal(b, X[:, [5, 3, 4]])
    a_sparse, b_sparse = layout.split(sparse.csr_matrix(X))
    assert_array_equal(b_sparse.toarray(), X[:, [5, 3, 4]])


def test_split_checks_a_dict_layout():
    layout = BlockLayout(["a", "b"], [2, 1], None, "dict")
    blocks = layout.split({"b": np.zeros((3, 1)), "a": np.zeros((3, 2))})
    assert [blk.shape[1] for blk in blocks] == [2, 1]  # fitted order, not the dict's
    with pytest.raises(ValueError, match=r"missing: \['b'\], unknown: \[\]"):
        layout.split({"a": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="modality 'b' has 4 features"):
        layout.split({"a": np.zeros((3, 2)), "b": np.zeros((3, 4))})


def test_a_dok_matrix_is_not_a_dict_of_blocks():
    assert is_dict({"a": np.zeros((1, 1))})
    assert not is_dict(sparse.dok_matrix((2, 2)))
    assert not is_dict(np.zeros((2, 2)))
