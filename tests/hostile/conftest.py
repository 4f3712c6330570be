"""Fixtures of the hostile-input suite: deadlines, hostile files, the item-policy contract.

Every test here runs under a deadline (``SIGALRM``, 20 s unless marked
``@pytest.mark.deadline(s)``), so a regression that hangs fails instead of
stalling the run; calls that could block inside C code (opening a FIFO)
also go through ``hostile_helpers.within``, a thread with a timeout, and every FIFO is
released at teardown so that no reader stays blocked.
"""

import os
import signal

import numpy as np
import pytest

DEFAULT_DEADLINE = 20.0


class DeadlineExceeded(BaseException):  # noqa: N818 - not an Exception: no item policy may catch it
    """A test ran past its deadline."""


@pytest.fixture(autouse=True)
def deadline(request):
    """Fail the test (raise in the main thread) once it has run for its deadline."""
    marker = request.node.get_closest_marker("deadline")
    seconds = float(marker.args[0]) if marker else DEFAULT_DEADLINE

    def fire(signum, frame):
        raise DeadlineExceeded(f"{request.node.name} ran past its {seconds:g} s deadline: a hang?")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield seconds
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path):
    """A FIFO (named pipe) with no writer; any reader left blocked is released at teardown."""
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    yield str(path)
    try:  # a blocked reader (a regression) gets a writer, then end of file
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass  # no reader waiting: nothing to release


@pytest.fixture(scope="session", autouse=True)
def _audio_warmed_up(media):
    """Run the audio extractors once before any deadline starts.

    Their first call in a process compiles librosa's numba kernels and loads the
    resampler: seconds in a fresh virtualenv, which a deadline meant to catch a
    hang must not count.
    """
    from mmsk import AudioFeatures, LogMelSpectrogram

    for extractor in (AudioFeatures(sr=8000, n_fft=256, hop_length=128), LogMelSpectrogram()):
        extractor.fit_transform([media["wav0"]])


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Small good files, and hostile ones next to them, in one folder."""
    import soundfile as sf
    from PIL import Image

    folder = tmp_path_factory.mktemp("media")
    rng = np.random.RandomState(0)
    t = np.arange(2000) / 8000
    files = {}
    for i, freq in enumerate((220, 440, 880)):
        path = folder / f"tone_{i}.wav"
        sf.write(path, (0.5 * np.sin(2 * np.pi * freq * t)).astype("float32"), 8000)
        files[f"wav{i}"] = str(path)
    for i in range(3):
        path = folder / f"img_{i}.png"
        Image.fromarray((rng.rand(12, 10) * 255).astype("uint8"), mode="L").save(path)
        files[f"png{i}"] = str(path)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "empty.png").write_bytes(b"")
    files["empty_wav"], files["empty_png"] = str(folder / "empty.wav"), str(folder / "empty.png")
    (folder / "subdir").mkdir()
    files["dir"] = str(folder / "subdir")
    outside = tmp_path_factory.mktemp("outside")
    for key in ("wav0", "png0"):
        target = outside / os.path.basename(files[key])
        target.write_bytes(open(files[key], "rb").read())
        files[f"outside_{key}"] = str(target)
        link = folder / f"escape_{os.path.basename(files[key])}"
        link.symlink_to(target)
        files[f"escape_{key}"] = str(link)
        files[f"dotdot_{key}"] = f"{folder}/../{outside.name}/{target.name}"
    files["folder"], files["outside"] = str(folder), str(outside)
    return files
