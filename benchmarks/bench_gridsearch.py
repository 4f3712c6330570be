"""A grid search with and without the feature cache: file reads, extractions, time.

The grid: ``GridSearchCV`` (5 folds, 8 candidates that vary only the
``FusionClassifier``'s parameters, then the refit) over
``ColumnTransformer([AudioFeatures(memory=...), ImagePixels(memory=...)])``
on 600 AV-digits items: real FSDD recordings (the WAV files under
``<data_home>/fsdd``) paired with real MNIST test images (written as 28x28
PNG files), the first 60 rows of each digit. Without the data home, the
shipped 300-pair sample is used twice (each file copied under a second
name: 600 paths, 300 contents). The files this script writes get a time
stamp an hour old, as data files have (a file changed within 2 s of being
hashed is not trusted by its stat, see docs/design.md).

Each grid runs three ways, interleaved (no cache, fresh, warm; no cache,
fresh, warm; ...; ``benchmarks/_timing.py``), after an untimed warm-up of
each extractor on a few items (librosa's JIT, Pillow's plugins):

- ``no cache``: ``memory=None``;
- ``fresh cache``: an empty cache folder, and this process as new (no path
  keys, no memory layer: ``mmsk._cache.forget()``);
- ``warm cache``: the folder the fresh run filled, the process as new.

Printed: a line per grid as it ends; file reads per file (every ``open`` of
an item's path, every opening through the file policy
(``mmsk._files.open_regular``) and every ``soundfile.SoundFile`` opened on
it, counted by wrappers), extractions per item and extractor (calls of
``_extract``, or of ``ImagePixels._extract_wire``, which every image goes
through), the median and spread of each way's time and its speed-up.

Then the cost of one cache hit against extracting one 28x28 PNG
(``ImagePixels``), each way in **new processes** (a subprocess per
measurement, interleaved extract / hit, ``--repeats`` times): ``extract``
is the median of three ``transform`` calls after a first one, ``memory=None``
(steady state: the cheaper baseline); the ``cold-process hit`` is the first
``transform`` of a new process over a filled cache: the token, the stored
path keys (one ``stat`` per file), the segments' key tables and the rows all
come from disk, and its files read are counted (target: none). In that
process, a second ``transform`` after ``MEMORY.clear()`` is the ``disk hit``
and a third the ``memory hit``. Each worker's output is compared with the
extraction's: a hit must give the same rows. Each is reported in wall-clock
time and in CPU time (``time.process_time``), which on a loaded machine
leaves out the waits for a core.

The network is small (16 hidden units, 5 epochs) and torch runs on one
thread, so that, as for a user with costly extractors, extraction is most
of the no-cache time. The targets: at most 2 reads per file over the whole
grid, one extraction per item and extractor setting, warm >= 3x and fresh
>= 2x faster than no cache, a cold-process hit <= 0.2x of an extraction.

    python benchmarks/bench_gridsearch.py --data-home ../shared/data
    python benchmarks/bench_gridsearch.py --quick     # 200 items, 3 folds, 4 candidates
    python benchmarks/bench_gridsearch.py --data-home ../shared/data --hits-only

(from the repository root, with this checkout's mmsk importable, e.g.
``PYTHONPATH=.``; the hit workers get the same ``mmsk``). The grid runs in
this process (``n_jobs=None``), so that the wrappers see every read.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from _timing import Timing, add_common_arguments, interleaved, machine_line, report
from PIL import Image
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

import mmsk
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
    hour_ago = time.time_ns() - 3600 * 10**9  # as data files are: older than the racy window
    for path in folder.iterdir():
        os.utime(path, ns=(hour_ago, hour_ago))
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
        # the method every extraction goes through: ImagePixels' 8-bit wire form, else _extract
        self._extract = {
            (cls, name): getattr(cls, name)
            for cls, name in ((AudioFeatures, "_extract"), (ImagePixels, "_extract_wire"))
        }

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
        for (cls, name), real in self._extract.items():

            def extract(est, source, _real=real, _name=cls.__name__):
                counters.extractions[_name] += 1
                return _real(est, source)

            setattr(cls, name, extract)

    def uninstall(self) -> None:
        builtins.open, sf.SoundFile.__init__ = self._open, self._sf_init
        mmsk._files.open_regular = self._open_regular
        for (cls, name), real in self._extract.items():
            setattr(cls, name, real)

    def reset(self) -> None:
        self.reads.clear()
        self.extractions.clear()


def run_grid(how: str, frame, cache_dir: Path, counters: Counters, args, grid) -> tuple:
    """Fit the grid one way; return the reads per file and the extractions per extractor."""
    if how == "fresh cache" and cache_dir.exists():
        shutil.rmtree(cache_dir)
    memory = None if how == "no cache" else str(cache_dir)
    mmsk._cache.forget()  # every way starts as a new process would
    search = make_search(memory, grid, args.folds, args.epochs)
    counters.reset()
    search.fit(frame[["image", "audio"]], frame["label"])
    return dict(counters.reads), dict(counters.extractions)


# -- one cache hit in a new process ------------------------------------------------------------
def hit_worker(spec: dict) -> dict:
    """In a new process: time ImagePixels' transforms of ``spec["paths"]`` one way."""
    import hashlib

    import mmsk._files
    from mmsk import ImagePixels

    opened = []
    real = mmsk._files.open_regular

    def counting(path, *a, **k):
        opened.append(path)
        return real(path, *a, **k)

    mmsk._files.open_regular = counting
    X = pd.DataFrame({"image": spec["paths"]})  # a column, as a ColumnTransformer passes it
    est = ImagePixels(size=(28, 28), mode="L", memory=spec["memory"]).fit(X)

    def timed() -> tuple[float, float, np.ndarray]:
        start, cpu = time.perf_counter(), time.process_time()
        out = est.transform(X)
        return time.perf_counter() - start, time.process_time() - cpu, out

    def median3() -> tuple[float, float]:
        runs = [timed()[:2] for _ in range(3)]
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    result: dict = {"mmsk": mmsk.__file__}
    *first, out = timed()
    result["digest"] = hashlib.blake2b(np.ascontiguousarray(out).tobytes()).hexdigest()
    if spec["memory"] is None:
        result["extract, first in process"] = first
        result["extract"] = median3()
    else:
        result["cold-process hit"], result["files read"] = first, len(opened)
        mmsk._cache.MEMORY.clear()  # path keys and key tables kept: rows from disk
        result["disk hit"] = timed()[:2]
        result["memory hit"] = median3()
    return result  # each way: (wall, CPU) seconds


def run_worker(paths: list[str], memory: str | None) -> dict:
    """Run :func:`hit_worker` in a new interpreter that imports this process's mmsk."""
    root = str(Path(mmsk.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    spec = json.dumps({"paths": paths, "memory": memory})
    done = subprocess.run(
        [sys.executable, __file__, "--hit-worker"],
        input=spec,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["mmsk"]).resolve() != Path(mmsk.__file__).resolve():
        raise RuntimeError(f"the worker imported another mmsk: {result['mmsk']}")
    return result


def hit_cost(frame, cache_dir: Path, repeats: int) -> tuple[dict, dict]:
    """Time extraction and cache hits of the images, each in new processes, interleaved.

    Returns the wall-clock and the CPU-time (``time.process_time``: what a
    loaded machine's waits leave out) timings of each way.
    """
    paths = frame["image"].tolist()
    location = str(cache_dir / "hits")
    run_worker(paths, location)  # fill the store and the stored path keys (untimed)
    ways = ["extract, first in process", "extract", "cold-process hit", "disk hit", "memory hit"]
    wall = {way: Timing(way) for way in ways}
    cpu = {way: Timing(way) for way in ways}
    reads, digests = [], set()
    for r in range(repeats):
        for memory in (None, location):
            result = run_worker(paths, memory)
            digests.add(result["digest"])
            for way in ways:
                if way in result:
                    wall[way].seconds.append(result[way][0])
                    cpu[way].seconds.append(result[way][1])
            line = ", ".join(
                f"{w} {result[w][0] * 1e3:.1f} ms (CPU {result[w][1] * 1e3:.1f})"
                for w in ways
                if w in result
            )
            if memory is not None:
                reads.append(result["files read"])
                line += f", files read {result['files read']}"
            print(f"  rep {r + 1}/{repeats} ({len(paths)} images): {line}", flush=True)
    if len(digests) != 1:
        raise RuntimeError("a cache hit gave other rows than the extraction")
    print(f"  files read by the cold-process hit: max {max(reads)} of {len(paths)}")
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--hit-worker"]:
        print(json.dumps(hit_worker(json.loads(sys.stdin.read()))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None, help="folder with fsdd/ and mnist/")
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--hit-repeats", type=int, default=None, help="new processes per hit way (default 7)"
    )
    parser.add_argument("--hits-only", action="store_true", help="skip the grids")
    add_common_arguments(parser, repeats=3)
    parser.set_defaults(warmup=0)  # (a grid is 41 fits: the extractors are warmed up instead)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = min(args.repeats, 3), 0
    args.folds = args.folds or (3 if args.quick else 5)
    hit_repeats = args.hit_repeats or (3 if args.quick else 7)
    grid = QUICK_GRID if args.quick else GRID
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    torch.set_num_threads(1)

    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "items").mkdir()
        frame, what = make_items(tmp / "items", args.data_home, 20 if args.quick else 60)
        n = len(frame)
        print(f"data: {n} rows, {what}")
        print(
            f"grid: {args.folds} folds x {n_candidates} candidates + refit "
            f"({args.folds * n_candidates + 1} fits); torch threads: 1; "
            f"FusionClassifier(hidden_units=16, max_epochs={args.epochs}); "
            f"{args.repeats} repetitions",
            flush=True,
        )
        # warm-up: librosa's JIT and Pillow's plugins, so that no way pays for them
        AudioFeatures(sr=16000).fit_transform(frame["audio"][:4])
        ImagePixels(size=(28, 28), mode="L").fit_transform(frame["image"][:4])
        if not args.hits_only:
            grids(frame, tmp, args, grid)
        print(
            f"\none cache hit against extracting one 28x28 PNG (ImagePixels), "
            f"new processes, {hit_repeats} repetitions:",
            flush=True,
        )
        wall, cpu = hit_cost(frame, tmp / "cache", hit_repeats)
        for what, hits in (("wall clock", wall), ("CPU time", cpu)):
            print(f"per transform of {n} images, {what}:")
            print(report(hits, baseline="extract", unit="ms"))
        for what, hits in (("wall clock", wall), ("CPU time", cpu)):
            hit, extract = hits["cold-process hit"].median / n, hits["extract"].median / n
            print(
                f"  cold-process hit ({what}): {hit * 1e6:.1f} us per item, {hit / extract:.3f}x "
                f"of extracting ({extract * 1e6:.1f} us per item; target <= 0.2x)"
            )
        print(machine_line(), flush=True)
    return 0


def grids(frame, tmp: Path, args, grid) -> None:
    """Run the grid the three ways, interleaved; print reads, extractions and times."""
    n = len(frame)
    paths = set(frame["image"]) | set(frame["audio"])
    counters = Counters(paths)
    ways = {
        how: functools.partial(run_grid, how, frame, tmp / "cache", counters, args, grid)
        for how in ("no cache", "fresh cache", "warm cache")
    }
    counters.install()
    try:
        times = interleaved(ways, repeats=args.repeats, warmup=args.warmup, label="grid")
    finally:
        counters.uninstall()

    print("\nper file and item, over the whole grid (last repetition):")
    for how, timing in times.items():
        reads, extractions = timing.last_result
        per_file = [reads.get(p, 0) for p in paths]
        ext = ", ".join(
            f"{name} {extractions.get(name, 0) / n:.2f}"
            for name in ("AudioFeatures", "ImagePixels")
        )
        print(
            f"  {how:<11} file reads: mean {np.mean(per_file):.2f}, max {max(per_file)} "
            f"per file | extractions per item: {ext}"
        )
    print(f"\ngrid times ({args.repeats} repetitions, interleaved):")
    print(report(times, baseline="no cache"))
    base = times["no cache"].median
    for how in ("fresh cache", "warm cache"):
        print(f"  {how}: {base / times[how].median:.2f}x faster than no cache (medians)")


if __name__ == "__main__":
    sys.exit(main())
