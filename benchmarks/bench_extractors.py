"""Extractor throughput against a bare loop of the same library calls.

``AudioFeatures`` is timed against a hand-written loop of the same soundfile
and librosa calls, and ``ImagePixels`` against a loop of the same Pillow
calls, on the same real items (FSDD recordings; MNIST test images written as
PNG files), in the same run. Then each extractor with ``n_jobs=2``.

Run from the repository root::

    python benchmarks/bench_extractors.py --data-home ../shared/data

Prints items/s, the ratio to the bare loop (>= 0.95 is the target) and the
speed-up from ``n_jobs=2`` (targets: 1.6x audio, 1.4x images). Each timing
is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from PIL import Image

from mmsk import AudioFeatures, ImagePixels
from mmsk.datasets import get_data_home

AUDIO = dict(sr=8000, n_fft=512, hop_length=128, n_mfcc=20, n_mels=64, n_chroma=12, n_bands=5)
IMAGE_SIZE = (32, 32)  # MNIST is 28x28: both sides really resize


def bare_audio(paths: list[str]) -> np.ndarray:
    """The same soundfile + librosa calls as AudioFeatures' defaults, by hand."""
    sr, n_fft, hop = AUDIO["sr"], AUDIO["n_fft"], AUDIO["hop_length"]
    mel_fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=AUDIO["n_mels"], fmin=0.0)
    chroma_fb = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=AUDIO["n_chroma"], tuning=0.0)
    rows = []
    for path in paths:
        y, file_sr = sf.read(path, dtype="float32")
        assert file_sr == sr
        if y.shape[0] < n_fft:
            y = np.pad(y, (0, n_fft - y.shape[0]))
        S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
        power = S**2
        log_mel = librosa.power_to_db(mel_fb @ power)
        mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=AUDIO["n_mfcc"])
        delta = librosa.feature.delta(mfcc, mode="interp" if mfcc.shape[-1] >= 9 else "nearest")
        centroid = librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft)
        frames = np.concatenate(
            [
                mfcc,
                delta,
                log_mel,
                centroid,
                librosa.feature.spectral_bandwidth(S=S, sr=sr, n_fft=n_fft, centroid=centroid),
                librosa.feature.spectral_contrast(S=S, sr=sr, n_fft=n_fft, n_bands=5),
                librosa.feature.spectral_rolloff(S=S, sr=sr, n_fft=n_fft),
                librosa.feature.spectral_flatness(S=S),
                librosa.util.normalize(chroma_fb @ power, norm=np.inf, axis=-2),
                librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
                librosa.feature.rms(S=S, frame_length=n_fft, hop_length=hop),
            ]
        )
        rows.append(np.stack([frames.mean(axis=1), frames.std(axis=1)], axis=1).reshape(-1))
    return np.asarray(rows, dtype=np.float32)


def bare_image(paths: list[str]) -> np.ndarray:
    """The same Pillow calls as ImagePixels(mode="L", resize="stretch"), by hand."""
    out = np.empty((len(paths), IMAGE_SIZE[0] * IMAGE_SIZE[1]), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            small = img.convert("L").resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
        out[i] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
    return out


def best_of(repeat: int, fn, *args):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def write_mnist_pngs(data_home: Path, folder: Path, n: int) -> list[str]:
    raw = gzip.open(data_home / "mnist" / "t10k-images-idx3-ubyte.gz").read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    paths = []
    for i, pixels in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
    return paths


def report(name: str, n: int, bare_s: float, one_s: float, two_s: float) -> None:
    print(
        f"{name:<13} {n:>6} items | bare loop {n / bare_s:8.0f} items/s | "
        f"mmsk n_jobs=1 {n / one_s:8.0f} items/s (ratio {bare_s / one_s:.2f}x) | "
        f"n_jobs=2 {n / two_s:8.0f} items/s (speed-up {one_s / two_s:.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder with fsdd/ and mnist/")
    parser.add_argument("--n-audio", type=int, default=3000)
    parser.add_argument("--n-images", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    home = get_data_home(args.data_home)
    recordings = home / "fsdd" / "recordings"
    if not recordings.is_dir() or not (home / "mnist").is_dir():
        print(f"data not found under {home} (need fsdd/recordings and mnist/)", file=sys.stderr)
        return 2
    print(f"cores: {os.cpu_count()}; best of {args.repeat} runs each")

    audio_paths = sorted(str(p) for p in recordings.glob("*.wav"))[: args.n_audio]
    audio = AudioFeatures(**AUDIO)
    AudioFeatures(**AUDIO, n_jobs=2).fit_transform(audio_paths[:16])  # start the workers
    bare_audio(audio_paths[:4])  # warm librosa's caches and JIT in this process
    bare_s, expected = best_of(args.repeat, bare_audio, audio_paths)
    one_s, got = best_of(args.repeat, audio.fit_transform, audio_paths)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    two_s, got2 = best_of(args.repeat, audio.set_params(n_jobs=2).fit_transform, audio_paths)
    np.testing.assert_array_equal(got2, got)
    report("AudioFeatures", len(audio_paths), bare_s, one_s, two_s)

    with tempfile.TemporaryDirectory() as tmp:
        image_paths = write_mnist_pngs(home, Path(tmp), args.n_images)
        pixels = ImagePixels(size=IMAGE_SIZE, mode="L")
        ImagePixels(size=IMAGE_SIZE, n_jobs=2).fit_transform(image_paths[:16])
        bare_s, expected = best_of(args.repeat, bare_image, image_paths)
        one_s, got = best_of(args.repeat, pixels.fit_transform, image_paths)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        two_s, got2 = best_of(args.repeat, pixels.set_params(n_jobs=2).fit_transform, image_paths)
        np.testing.assert_array_equal(got2, got)
        report("ImagePixels", len(image_paths), bare_s, one_s, two_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
