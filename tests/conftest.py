"""Shared fixtures: tiny WAV and PNG files, real-data location, seeding."""

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seeds_fixed():
    random.seed(0)
    np.random.seed(0)
    if "torch" in sys.modules:  # never import torch just to seed it
        sys.modules["torch"].manual_seed(0)


@pytest.fixture
def full_disk(monkeypatch):
    """Call it to make the feature cache's segment writes fail with ENOSPC after 10 bytes."""
    import errno

    import mmsk._cache_segments

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.fh = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, mode="r", *args, **kwargs):  # the file policy reads with "rb"
        return Full(fd, mode) if "w" in mode else real_fdopen(fd, mode, *args, **kwargs)

    return lambda: monkeypatch.setattr(mmsk._cache_segments.os, "fdopen", fdopen)


@pytest.fixture
def count_extractions(monkeypatch):
    """Return ``count(cls)``: a list that gets one entry per item ``cls`` extracts.

    An extractor with a wire form (ImagePixels: 8-bit pixels) extracts every
    item through ``_extract_wire``, whichever path it takes (``_extract``, the
    cache, joblib workers); the others through ``_extract``.
    """

    def count(cls):
        calls = []
        name = "_extract_wire" if "_extract_wire" in vars(cls) else "_extract"
        real = getattr(cls, name)
        monkeypatch.setattr(cls, name, lambda self, source: calls.append(1) or real(self, source))
        return calls

    return count


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: tiny models run fastest so, and shared CI cores spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_data_dir() -> Path | None:
    """The real data folder: $MMSK_DATA, else the repository's ../shared/data."""
    env = os.environ.get("MMSK_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for path in candidates:
        if (path / "fsdd" / "recordings").is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not found: set MMSK_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def wav_paths(tmp_path_factory):
    """Six 8 kHz, 0.25 s tones of rising pitch, as WAV files."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("wav")
    sr = 8000
    t = np.arange(int(0.25 * sr)) / sr
    paths = []
    for freq in [220, 330, 440, 660, 880, 1320]:
        path = folder / f"tone_{freq}.wav"
        sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype("float32"), sr)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="session")
def png_paths(tmp_path_factory):
    """Six small grey PNG images with different patterns."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("png")
    rng = np.random.RandomState(0)
    paths = []
    for i in range(6):
        pixels = (rng.rand(20, 24) * 255 * (i + 1) / 6).astype("uint8")
        path = folder / f"img_{i}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
    return paths
