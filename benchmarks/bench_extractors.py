"""Extractor throughput against a fair bare loop of the same library calls.

``AudioFeatures`` is timed against a hand-written loop of the same soundfile
and librosa calls, and ``ImagePixels`` against a loop of the same Pillow
calls, on the same real files, in the same run. The bare loops are set up
like mmsk: BLAS limited to one thread once around the whole loop (as mmsk
limits it once per batch), filter banks built once, the same features per
item. Then each extractor with ``n_jobs=2``.

Data: FSDD recordings (8 kHz WAV) and MNIST test images written as PNG files,
from ``--data-home`` (``fsdd/recordings``, ``mnist/``); without them, or with
``--quick``, the shipped sample (``mmsk.datasets.load_sample``: 300 WAV and
300 PNG files).

Run from the repository root, with this checkout's mmsk importable (the
first line printed names the mmsk that ran)::

    PYTHONPATH=. python benchmarks/bench_extractors.py --data-home ../shared/data
    PYTHONPATH=. python benchmarks/bench_extractors.py --quick

Protocol (``benchmarks/_timing.py``): the variants are interleaved (bare,
n_jobs=1, n_jobs=2, bare, ...), each line printed as it is timed, and the
report gives medians with their spread, and the median of the
per-repetition ratios. On a shared virtual machine the speed drifts by up
to half over seconds, more than a whole repetition lasts; so the bare loop
and mmsk ``n_jobs=1`` are also timed alternating in chunks of a twentieth
of the items (at least 20; CPU time, three passes, in turn first), where
the drift hits both alike: the steadiest of the figures. Targets: mmsk at >= 0.97x the bare
loop's speed; ``n_jobs=2`` >= 1.7x (audio) and >= 1.5x (images) the speed of
``n_jobs=1`` on a quiet 2-core machine (check the load average printed with
the figures).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import soundfile as sf
from _timing import add_common_arguments, interleaved, machine_line, paired_speed, report
from PIL import Image
from threadpoolctl import threadpool_limits

import mmsk
from mmsk import AudioFeatures, ImagePixels
from mmsk.datasets import get_data_home, load_sample

try:  # optional: the CPU time of the joblib workers (psutil is no dependency of mmsk)
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

AUDIO = dict(sr=8000, n_fft=512, hop_length=128, n_mfcc=20, n_mels=64, n_chroma=12, n_bands=5)
IMAGE_SIZE = (32, 32)  # MNIST is 28x28: both sides really resize
TARGETS = {"audio": (0.97, 1.7), "images": (0.97, 1.5)}


def bare_audio(paths: list[str]) -> np.ndarray:
    """The same soundfile + librosa calls as AudioFeatures(**AUDIO), by hand, BLAS on 1 thread."""
    sr, n_fft, hop = AUDIO["sr"], AUDIO["n_fft"], AUDIO["hop_length"]
    mel_fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=AUDIO["n_mels"], fmin=0.0)
    chroma_fb = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=AUDIO["n_chroma"], tuning=0.0)
    rows = 2 * AUDIO["n_mfcc"] + AUDIO["n_mels"] + (AUDIO["n_bands"] + 5) + AUDIO["n_chroma"] + 2
    out = np.empty((len(paths), 2 * rows), np.float32)  # mean and std of each frame row
    with threadpool_limits(limits=1, user_api="blas"):
        for i, path in enumerate(paths):
            y, file_sr = sf.read(path, dtype="float32")
            assert file_sr == sr and y.ndim == 1
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
            out[i] = np.stack([frames.mean(axis=1), frames.std(axis=1)], axis=1).reshape(-1)
    return out


def bare_image(paths: list[str]) -> np.ndarray:
    """The same Pillow calls as ImagePixels(size=IMAGE_SIZE, mode="L"), by hand."""
    out = np.empty((len(paths), IMAGE_SIZE[0] * IMAGE_SIZE[1]), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            grey = img if img.mode == "L" else img.convert("L")  # as mmsk: no copy if already L
            small = grey.resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
        out[i] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
    return out


def write_mnist_pngs(data_home: Path, folder: Path, n: int) -> list[str]:
    """Write the first ``n`` MNIST test images as PNG files; return their paths."""
    raw = gzip.open(data_home / "mnist" / "t10k-images-idx3-ubyte.gz").read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    paths = []
    for i, pixels in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
    return paths


def worker_cpu() -> dict[int, float]:
    """CPU seconds so far of each child process (the joblib workers), by pid."""
    if psutil is None:
        return {}
    out = {}
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        out[child.pid] = times.user + times.system
    return out


def chunk_interleaved(
    bare: Any, one: Any, items: list[str], *, chunk: int = 20, rounds: int = 3
) -> tuple[float, float, float, float]:
    """Time the bare loop and mmsk ``n_jobs=1`` alternating every ``chunk`` items (CPU time).

    The two run within milliseconds of each other, in turn first, so a drift
    of the machine's speed (seconds long on a shared virtual machine) hits
    both alike. Returns the total speed (bare over mmsk time) and the median
    and quartiles of the per-chunk speeds.
    """
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    speeds, total = [], {"bare": 0.0, "mmsk": 0.0}
    for r in range(rounds):
        for k, part in enumerate(chunks):
            spent = {}
            order = [("bare", bare), ("mmsk", one.transform)]
            for what, fn in order if (k + r) % 2 == 0 else order[::-1]:
                start = time.process_time()
                fn(part)
                spent[what] = time.process_time() - start
                total[what] += spent[what]
            if spent["mmsk"] > 0:
                speeds.append(spent["bare"] / spent["mmsk"])
    q1, median, q3 = statistics.quantiles(speeds, n=4) if len(speeds) > 1 else [speeds[0]] * 3
    return total["bare"] / total["mmsk"], median, q1, q3


def compare(
    name: str,
    bare: object,
    make: object,
    items: list[str],
    *,
    repeats: int,
    warmup: int,
    check: dict,
) -> dict[str, float]:
    """Time the bare loop, mmsk n_jobs=1 and n_jobs=2 interleaved; print the table."""
    one, two = make(n_jobs=1).fit(items[:1]), make(n_jobs=2).fit(items[:1])
    print(f"\n{name}: {len(items)} files  ({machine_line()})", flush=True)
    cpu: dict[str, list[float]] = {"bare loop": [], "mmsk n_jobs=1": []}

    def on_cpu(variant: str, fn: object) -> object:
        """``fn`` that also records this process's CPU time (robust to other load)."""

        def run() -> object:
            start = time.process_time()
            result = fn()
            cpu[variant].append(time.process_time() - start)
            return result

        return run

    parallel: list[tuple[float, float, float]] = []  # parent, workers, busiest worker

    def on_two() -> object:
        before, start = worker_cpu(), time.process_time()
        result = two.transform(items)
        parent, after = time.process_time() - start, worker_cpu()
        used = [after[pid] - before.get(pid, 0.0) for pid in after]
        parallel.append((parent, sum(used), max(used, default=0.0)))
        return result

    timings = interleaved(
        {
            "bare loop": on_cpu("bare loop", lambda: bare(items)),
            "mmsk n_jobs=1": on_cpu("mmsk n_jobs=1", lambda: one.transform(items)),
            "mmsk n_jobs=2": on_two,
        },
        repeats=repeats,
        warmup=warmup,
        label=name,
    )
    bare_cpu, one_cpu = (statistics.median(cpu[v][warmup:]) for v in cpu)
    expected = timings["bare loop"].last_result
    got = timings["mmsk n_jobs=1"].last_result
    np.testing.assert_allclose(got, expected, **check)
    np.testing.assert_array_equal(timings["mmsk n_jobs=2"].last_result, got)
    print(report(timings, baseline="bare loop"))
    bare_s = timings["bare loop"].median
    one_s, two_s = timings["mmsk n_jobs=1"].median, timings["mmsk n_jobs=2"].median
    speed, speedup = bare_s / one_s, one_s / two_s
    want_speed, want_speedup = TARGETS[name]
    paired = paired_speed(timings, "bare loop", "mmsk n_jobs=1")
    paired_two = paired_speed(timings, "mmsk n_jobs=1", "mmsk n_jobs=2")
    n = len(items)
    print(
        f"{name}: bare {n / bare_s:,.0f} items/s, mmsk n_jobs=1 {n / one_s:,.0f} items/s, "
        f"n_jobs=2 {n / two_s:,.0f} items/s\n"
        f"{name}: mmsk/bare speed {speed:.3f}x (target >= {want_speed}), "
        f"n_jobs=2/n_jobs=1 speed {speedup:.3f}x (target >= {want_speedup}); "
        f"{machine_line()}\n"
        f"{name}: by CPU time of this process (median {bare_cpu:.3f} s bare, {one_cpu:.3f} s "
        f"mmsk n_jobs=1): mmsk/bare speed {bare_cpu / one_cpu:.3f}x\n"
        f"{name}: median of the per-repetition ratios (back-to-back runs): mmsk/bare speed "
        f"{paired[0]:.3f}x [{paired[1]:.3f}, {paired[2]:.3f}], n_jobs=2/n_jobs=1 "
        f"{paired_two[0]:.3f}x [{paired_two[1]:.3f}, {paired_two[2]:.3f}]",
        flush=True,
    )
    chunk = max(20, len(items) // 20)  # 20 chunks a pass: mmsk's per-call work amortised
    fine = chunk_interleaved(bare, one, items, chunk=chunk)
    print(
        f"{name}: interleaved every {chunk} items (CPU time, 3 passes): "
        f"mmsk/bare speed {fine[0]:.3f}x in total, per chunk median {fine[1]:.3f}x "
        f"[quartiles {fine[2]:.3f}, {fine[3]:.3f}]",
        flush=True,
    )
    if psutil is not None:
        kept = parallel[warmup:]
        parent, workers, busiest = (statistics.median(v) for v in zip(*kept, strict=True))
        floor = max(busiest, (parent + workers) / 2)
        print(
            f"{name}: n_jobs=2 CPU time (medians): parent {parent:.3f} s, workers {workers:.3f} s "
            f"(busiest {busiest:.3f} s), against {one_cpu:.3f} s for n_jobs=1: on 2 free cores "
            f"a speed-up of at most {one_cpu / floor:.2f}x (a bound, not a measurement; on a "
            "loaded machine with autogroup scheduling, one session's processes share one slice)",
            flush=True,
        )
    return {
        "speed": speed,
        "speedup": speedup,
        "cpu_speed": bare_cpu / one_cpu,
        "paired_speed": paired[0],
        "paired_speedup": paired_two[0],
        "chunked_speed": fine[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder with fsdd/ and mnist/")
    parser.add_argument("--n-audio", type=int, default=3000, help="FSDD clips (default 3000)")
    parser.add_argument("--n-images", type=int, default=10000, help="MNIST images (default 10000)")
    add_common_arguments(parser, repeats=5)
    args = parser.parse_args(argv)
    repeats, warmup = (3, 0) if args.quick else (args.repeats, args.warmup)

    home = get_data_home(args.data_home)
    full = (home / "fsdd" / "recordings").is_dir() and (home / "mnist").is_dir()
    print(
        f"bench_extractors: mmsk from {Path(mmsk.__file__).parent}; {machine_line()}; "
        f"{repeats} interleaved repetitions",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if full and not args.quick:
            recordings = home / "fsdd" / "recordings"
            audio_paths = sorted(str(p) for p in recordings.glob("*.wav"))[: args.n_audio]
            image_paths = write_mnist_pngs(home, Path(tmp), args.n_images)
        else:
            if not full:
                print(f"(no fsdd/ and mnist/ under {home}: the shipped sample)", flush=True)
            frame = load_sample().frame
            audio_paths, image_paths = list(frame["audio"]), list(frame["image"])
        results = {}
        for what, paths, bare, make, check in (
            ("audio", audio_paths, bare_audio, AudioFeatures, dict(rtol=1e-4, atol=1e-4)),
            ("images", image_paths, bare_image, ImagePixels, dict(atol=1e-6)),
        ):
            if not paths:  # --n-audio 0 or --n-images 0: that half is left out
                print(f"\n{what}: none asked for, skipped", flush=True)
                continue
            params = AUDIO if make is AudioFeatures else dict(size=IMAGE_SIZE, mode="L")
            results[what] = compare(
                what,
                bare,
                lambda n_jobs, make=make, params=params: make(**params, n_jobs=n_jobs),
                paths,
                repeats=repeats,
                warmup=warmup,
                check=check,
            )
    parts = [
        f"{what} mmsk/bare {r['speed']:.3f}x (CPU time {r['cpu_speed']:.3f}x, paired "
        f"{r['paired_speed']:.3f}x, alternating chunks {r['chunked_speed']:.3f}x), "
        f"n_jobs=2 {r['speedup']:.3f}x "
        f"(paired {r['paired_speedup']:.3f}x)"
        for what, r in results.items()
    ]
    print(f"\nsummary: {'; '.join(parts)}; {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
