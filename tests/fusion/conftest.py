"""Fixtures for the fusion tests: small data, one torch thread.

The repository conftest seeds numpy and torch before every test.
"""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The test nets are tiny: one thread is faster than several, and stable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _make_blocks(n=240, seed=0, dims=(6, 4, 3), informative=(0, 1)):
    """Blocks ``m0, m1, ...``; the label is the sign of a sum over informative blocks."""
    rng = np.random.RandomState(seed)
    blocks = {f"m{i}": rng.normal(size=(n, d)) for i, d in enumerate(dims)}
    signal = sum(blocks[f"m{i}"][:, 0] for i in informative)
    y = (signal > 0).astype(int)
    return blocks, y


@pytest.fixture(scope="session")
def make_blocks():
    """The data factory, for tests that need other sizes."""
    return _make_blocks


@pytest.fixture
def blocks_data():
    """240 rows, blocks of 6, 4 and 3 features, a binary label (fresh copy per test)."""
    return _make_blocks()
