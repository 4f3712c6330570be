"""A grid search with and without the feature cache: file reads, extractions, time.

The grid: ``GridSearchCV`` (5 folds, 8 candidates that vary only the
``FusionClassifier``'s parameters, then the refit) over
``ColumnTransformer([AudioFeatures(memory=...), ImagePixels(memory=...)])``
on 600 AV-digits items: real FSDD recordings (the WAV files under
``<data_home>/fsdd``) paired with real MNIST test images (written as 28x28
PNG files), the first 60 rows of each digit. Without the data home, the
shipped 300-pair sample is used twice (each file copied under a second
name: 600 paths, 300 contents).

Each grid runs three ways, interleaved round by round:

- ``no cache``: ``memory=None``;
- ``fresh cache``: an empty cache folder, and this process as new (no path
  keys, no memory layer: ``mmsk._cache.forget()``);
- ``warm cache``: the folder the fresh run filled, the process as new.

Printed: file reads per item (every ``open`` of an item's path, every
opening through the file policy (``mmsk._files.open_regular``) and every
``soundfile.SoundFile`` opened on it, counted by wrappers), extractions per
item and extractor (calls of ``_extract``), the median time of each way, and
the cost of one cache hit against extracting one 28x28 image. The network
is small (16 hidden units, 5 epochs) and torch runs on one thread, so that,
as for a user with costly extractors, extraction is most of the no-cache
time. The targets: at most 2 reads per file over the whole grid, one
extraction per item and extractor setting, warm >= 3x and fresh >= 2x
faster than no cache, a hit <= 0.2x of an extraction.

    python benchmarks/bench_gridsearch.py --data-home ../shared/data
    python benchmarks/bench_gridsearch.py --quick     # 200 items, 3 folds, 4 candidates

(from the repository root, with this checkout's mmsk importable, e.g.
``PYTHONPATH=.``). The grid runs in this process (``n_jobs=None``), so that
the wrappers see every read.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

import mmsk._cache
import mmsk._files
from mmsk import AudioFeatures, FusionClassifier, ImagePixels
from mmsk.datasets import get_data_home, load_av_digits, load_sample

GRID = {
    "fusion__hidden_units": [8, 16],
    "fusion__fusion": ["concat", "late"],
    "fusion__lr": [1e-3, 3e-3],
}
QUICK_GRID = {"fusion__hidden_units": [8, 16], "fusion__fusion": ["concat", "late"]}


def make_items(folder: Path, data_home: str | None, per_digit: int) -> tuple[pd.DataFrame, str]:
    """600 (image path, audio path, label) rows of real files; say which data."""
    home = get_data_home(data_home)
    if (home / "fsdd" / "recordings").is_dir() and (home / "mnist").is_dir():
        frame = load_av_digits(data_home=home).frame
        frame = frame.groupby("label").head(per_digit).reset_index(drop=True)
        paths = []
        for i, pixels in enumerate(frame["image"]):
            path = folder / f"mnist_{i:04d}.png"
            Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").save(path)
            paths.append(str(path))
        frame = frame.assign(image=paths)
        what = f"AV-digits from {home}: FSDD WAV files, MNIST images written as PNG files"
    else:
        sample = load_sample().frame
        sample = sample.groupby("label").head(max(1, per_digit // 2)).reset_index(drop=True)
        rows = []
        for copy in (0, 1):
            for r in sample.itertuples():
                image = folder / f"{copy}_{Path(r.image).name}"
                audio = folder / f"{copy}_{Path(r.audio).name}"
                shutil.copy(r.image, image)
                shutil.copy(r.audio, audio)
                rows.append({"image": str(image), "audio": str(audio), "label": r.label})
        frame = pd.DataFrame(rows)
        what = "the shipped sample, each file copied under two names (2 paths per content)"
    return frame[["image", "audio", "label"]], what


def make_search(memory, grid: dict, folds: int, epochs: int) -> GridSearchCV:
    features = ColumnTransformer(
        [
            ("audio", AudioFeatures(sr=16000, memory=memory), "audio"),
            ("image", ImagePixels(size=(28, 28), mode="L", memory=memory), "image"),
        ]
    ).set_output(transform="pandas")
    fusion = FusionClassifier(
        hidden_units=16, max_epochs=epochs, early_stopping=False, n_jobs=1, random_state=0
    )
    model = Pipeline([("features", features), ("fusion", fusion)])
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    return GridSearchCV(model, grid, cv=cv)


class Counters:
    """Count item-file opens and extractor calls while installed."""

    def __init__(self, paths: set[str]) -> None:
        self.paths = paths
        self.reads: collections.Counter = collections.Counter()
        self.extractions: collections.Counter = collections.Counter()
        self._open, self._sf_init = builtins.open, sf.SoundFile.__init__
        self._open_regular = mmsk._files.open_regular  # (every path item goes through it)
        self._extract = {cls: cls._extract for cls in (AudioFeatures, ImagePixels)}

    def install(self) -> None:
        counters, real_open, real_sf = self, self._open, self._sf_init

        def counting_open(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) in counters.paths:
                counters.reads[os.fspath(file)] += 1
            return real_open(file, *args, **kwargs)

        def counting_open_regular(file, *args, _real=self._open_regular, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) in counters.paths:
                counters.reads[os.fspath(file)] += 1
            return _real(file, *args, **kwargs)

        def counting_sf(self, file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) in counters.paths:
                counters.reads[os.fspath(file)] += 1
            return real_sf(self, file, *args, **kwargs)

        builtins.open = counting_open
        mmsk._files.open_regular = counting_open_regular
        sf.SoundFile.__init__ = counting_sf
        for cls, real in self._extract.items():

            def extract(est, source, _real=real, _name=cls.__name__):
                counters.extractions[_name] += 1
                return _real(est, source)

            cls._extract = extract

    def uninstall(self) -> None:
        builtins.open, sf.SoundFile.__init__ = self._open, self._sf_init
        mmsk._files.open_regular = self._open_regular
        for cls, real in self._extract.items():
            cls._extract = real

    def reset(self) -> None:
        self.reads.clear()
        self.extractions.clear()


def run_grid(how: str, frame, cache_dir: Path, counters: Counters, args, grid) -> float:
    if how == "fresh cache" and cache_dir.exists():
        shutil.rmtree(cache_dir)
    memory = None if how == "no cache" else str(cache_dir)
    mmsk._cache.forget()  # every way starts as a new process would
    search = make_search(memory, grid, args.folds, args.epochs)
    counters.reset()
    start = time.perf_counter()
    search.fit(frame[["image", "audio"]], frame["label"])
    return time.perf_counter() - start


def hit_cost(frame, cache_dir: Path, repeat: int) -> None:
    """Per-item cost of a cache hit against extracting a 28x28 image."""
    paths = frame["image"].tolist()
    n = len(paths)
    location = cache_dir / "hits"
    plain = ImagePixels(size=(28, 28), mode="L").fit(paths)
    cached = ImagePixels(size=(28, 28), mode="L", memory=str(location)).fit(paths)
    cached.transform(paths)  # fill the store, the memory layer and the path keys
    ways = {"extract": [], "memory hit": [], "disk hit": [], "disk hit, file hashed": []}
    for _ in range(repeat):
        for way in ways:
            if way == "disk hit":
                mmsk._cache.MEMORY.clear()  # path keys kept: a stat, then the store
            elif way == "disk hit, file hashed":
                mmsk._cache.forget()  # a new process: read and hash the file, then the store
            est = plain if way == "extract" else cached
            start = time.perf_counter()
            est.transform(paths)
            ways[way].append((time.perf_counter() - start) / n)
            if way != "extract":
                cached.transform(paths)  # back to a warm memory layer
    base = statistics.median(ways["extract"])
    for way, times in ways.items():
        med = statistics.median(times)
        print(
            f"  {way:<22} {med * 1e6:8.1f} us per item  ({med / base:.3f}x of extracting)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder with fsdd/ and mnist/")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    args.folds = args.folds or (3 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    grid = QUICK_GRID if args.quick else GRID
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "items").mkdir()
        frame, what = make_items(tmp / "items", args.data_home, 20 if args.quick else 60)
        n = len(frame)
        print(f"data: {n} rows, {what}")
        print(
            f"grid: {args.folds} folds x {n_candidates} candidates + refit "
            f"({args.folds * n_candidates + 1} fits); torch threads: 1; "
            f"FusionClassifier(hidden_units=16, max_epochs={args.epochs}); cores: {os.cpu_count()}",
            flush=True,
        )
        paths = set(frame["image"]) | set(frame["audio"])
        counters = Counters(paths)
        times: dict[str, list[float]] = {"no cache": [], "fresh cache": [], "warm cache": []}
        counts = {}
        counters.install()
        try:
            for r in range(rounds):
                for how in times:
                    seconds = run_grid(how, frame, tmp / "cache", counters, args, grid)
                    times[how].append(seconds)
                    if r == 0:
                        counts[how] = (dict(counters.reads), dict(counters.extractions))
                    print(f"  round {r + 1}/{rounds}: {how:<11} {seconds:7.1f} s", flush=True)
        finally:
            counters.uninstall()

        print("\nper item, over the whole grid (first round):")
        for how, (reads, extractions) in counts.items():
            per_file = [reads.get(p, 0) for p in paths]
            ext = ", ".join(
                f"{name} {extractions.get(name, 0) / n:.2f}"
                for name in ("AudioFeatures", "ImagePixels")
            )
            print(
                f"  {how:<11} file reads: mean {np.mean(per_file):.2f}, max {max(per_file)} "
                f"per file | extractions per item: {ext}"
            )
        base = statistics.median(times["no cache"])
        print(f"\ntimes (median of {rounds} rounds):")
        for how, values in times.items():
            med = statistics.median(values)
            spread = f"{min(values):.1f}-{max(values):.1f}"
            print(f"  {how:<11} {med:7.1f} s (range {spread})  speed-up {base / med:.2f}x")

        print("\none cache hit against extracting one 28x28 PNG (ImagePixels, per item):")
        hit_cost(frame, tmp / "cache", 3 if args.quick else 7)
    return 0


if __name__ == "__main__":
    sys.exit(main())
