"""Streaming prediction (mmsk.predict_table) against predicting the whole file at once.

A generated CSV file (numeric and categorical columns, ``--rows`` rows) goes
through a small fitted pipeline, with predictions and probabilities written
to CSV, in three ways, each in a fresh process so that its peak memory is its
own:

- ``one-shot``: ``pandas.read_csv`` of the whole file, ``predict`` and
  ``predict_proba``, ``to_csv`` (what ``mmsk predict`` did before it streamed);
- ``stream``: :func:`mmsk.predict_table` with ``--chunk-size`` rows per chunk;
- ``stream 1/4``: the same on the file's first quarter: the same peak memory
  shows it does not grow with the row count.

Runs are interleaved (one-shot, stream, stream 1/4, one-shot, ...), after
``--warmup`` untimed rounds, with a line printed as each ends; every child
runs the same pipeline with the same torch and BLAS threads (``n_jobs=1``,
one BLAS thread). The time of a run is measured inside its child, from
reading the file to writing the predictions (process start and imports left
out). The tables give medians and [min, max] of the wall time (and the ratio
of medians to one-shot), of rows/s and of peak RSS above the RSS after
loading the model, and the most rows the features step ever received at once.
The outputs of one-shot and stream are compared byte for byte.

Run from the repository root::

    python benchmarks/bench_predict_stream.py            # 200,000 rows, 5 rounds
    python benchmarks/bench_predict_stream.py --quick    # 20,000 rows, 3 rounds, no warm-up
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout's mmsk, and _timing
from _timing import Timing, add_common_arguments, machine_line, report

FEATURES = ["x1", "x2", "x3", "x4", "shop", "colour"]
VARIANTS = ("one-shot", "stream", "stream 1/4")


def make_data(n_rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame({f"x{j}": rng.normal(size=n_rows).round(5) for j in range(1, 5)})
    frame.insert(0, "key", np.arange(n_rows))
    frame["shop"] = rng.choice([f"shop{k:02d}" for k in range(30)], n_rows)
    frame["colour"] = rng.choice(["red", "green", "blue", "black"], n_rows)
    frame.loc[rng.rand(n_rows) < 0.02, "x2"] = np.nan
    score = frame["x1"] - frame["x3"] + (frame["colour"] == "red") + 0.3 * rng.normal(size=n_rows)
    frame["label"] = np.where(score > 0.5, "yes", "no")
    return frame


def fit_model(frame: pd.DataFrame, path: Path) -> None:
    import joblib

    from mmsk.compose import make_multimodal_pipeline

    model = make_multimodal_pipeline(
        numeric=["x1", "x2", "x3", "x4"], categorical=["shop", "colour"],
        max_epochs=3, random_state=0, n_jobs=1,
    )  # fmt: skip
    train = frame.head(2000)
    joblib.dump(model.fit(train, train["label"]), path)


def reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: VmHWM, by writing 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mib() -> float:
    """Peak resident set size of this process (since reset_peak), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def child(variant: str, data: str, model_path: str, out: str, chunk_size: int) -> None:
    """One run in this process; print a JSON line with its figures."""
    import joblib
    from threadpoolctl import threadpool_limits

    from mmsk import predict_table

    threadpool_limits(1)  # BLAS threads as the model's torch threads (n_jobs=1), every variant
    model = joblib.load(model_path)
    features = model.named_steps["features"]
    seen = []
    transform = features.transform

    def recording(X, **params):
        seen.append(len(X))
        return transform(X, **params)

    features.transform = recording  # the pipeline calls it for every chunk
    base = current_rss_mib()
    reset = reset_peak()
    start = time.perf_counter()
    if variant == "one-shot":
        X = pd.read_csv(data)
        result = pd.DataFrame({"row": range(len(X))})
        result["prediction"] = model.predict(X)
        proba = model.predict_proba(X)
        for j, label in enumerate(model.classes_):
            result[f"proba_{label}"] = proba[:, j].round(6)
        result.to_csv(out, index=False)
        n_rows = len(result)
    else:
        n_rows = predict_table(
            model, data, out, chunk_size=chunk_size, method=["predict", "predict_proba"],
            columns=FEATURES, decimals=6, progress=False,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    figures = dict(
        rows=n_rows, seconds=seconds, peak_over_base=peak_mib() - base, base=base,
        max_rows_per_call=max(seen), peak_reset=reset,
    )  # fmt: skip
    print(json.dumps(figures))


def run_child(variant: str, data: Path, model: Path, out: Path, chunk_size: int) -> dict:
    command = [
        sys.executable, __file__, "--child", variant, "--data", str(data), "--model", str(model),
        "--out", str(out), "--chunk-size", str(chunk_size),
    ]  # fmt: skip
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}  # this checkout's mmsk
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def spread(values: list[float], fmt: str) -> str:
    median = statistics.median(values)
    return f"{median:{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    add_common_arguments(parser, repeats=5)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.model, args.out, args.chunk_size)
        return
    if args.quick:
        args.rows, args.repeats, args.warmup = 20_000, 3, 0
    print(machine_line(), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = make_data(args.rows)
        frame.to_csv(folder / "data.csv", index=False)
        frame.head(args.rows // 4).to_csv(folder / "quarter.csv", index=False)
        size = (folder / "data.csv").stat().st_size / 2**20
        print(f"data: {args.rows:,} rows, {len(frame.columns)} columns, {size:.1f} MiB of CSV")
        fit_model(frame, folder / "model.joblib")
        print(
            f"model fitted on 2,000 rows; chunk size {args.chunk_size:,}; {args.repeats} "
            f"round(s) after {args.warmup} warm-up round(s)",
            flush=True,
        )
        results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for round_ in range(1 - args.warmup, args.repeats + 1):
            for variant in VARIANTS:
                data = folder / ("quarter.csv" if variant == "stream 1/4" else "data.csv")
                out = folder / f"{variant.replace(' ', '_').replace('/', '-')}.csv"
                figures = run_child(variant, data, folder / "model.joblib", out, args.chunk_size)
                what = f"round {round_}" if round_ > 0 else f"warm-up {round_ + args.warmup}"
                print(
                    f"  {what} {variant:<11} {figures['seconds']:.3f} s "
                    f"{figures['rows'] / figures['seconds']:>9,.0f} rows/s  peak "
                    f"+{figures['peak_over_base']:.0f} MiB  max rows/call "
                    f"{figures['max_rows_per_call']:,}",
                    flush=True,
                )
                if round_ > 0:
                    results[variant].append(figures)
        same = digest(folder / "one-shot.csv") == digest(folder / "stream.csv")

    print(f"\n{machine_line()}\nwall time in the child (one-shot and stream: the whole file)")
    timings = {v: Timing(v, seconds=[r["seconds"] for r in rs]) for v, rs in results.items()}
    print(report(timings, baseline="one-shot"))
    print()
    print(f"{'variant':<11} {'rows':>8}  {'rows/s median [min, max]':<28} "
          f"{'peak RSS over base, MiB':<26} max rows/call")  # fmt: skip
    for variant, reports in results.items():
        rate = spread([r["rows"] / r["seconds"] for r in reports], ",.0f")
        peak = spread([r["peak_over_base"] for r in reports], ".0f")
        rows, most = reports[0]["rows"], max(r["max_rows_per_call"] for r in reports)
        print(f"{variant:<11} {rows:>8,}  {rate:<28} {peak:<26} {most:,}")
    base = statistics.median(r["base"] for r in results["stream"])
    print(f"(base: RSS after imports and loading the model, {base:.0f} MiB)")
    print(f"stream output identical to one-shot output: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
