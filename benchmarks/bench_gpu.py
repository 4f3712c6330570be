"""Fusion training throughput on the GPU against 2 CPU cores, per precision.

``FusionClassifier.fit`` (no validation split, no early stopping) on three
dense blocks (64, 256 and 40 features, 10 classes), with a large batch,
timed per variant, interleaved (A B C, A B C, ...) with the shared helpers
of ``benchmarks/_timing.py``; the report gives each variant's median, its
spread and its throughput in rows per second (rows x epochs / median
seconds) twice: of the whole ``fit`` (input checks and set-up included) and
of the training epochs alone (skorch's per-epoch ``dur``), each with the
speedup over ``cpu-32``.

Variants:

- ``cpu-32``, ``cpu-bf16``: ``device="cpu"``, ``n_jobs`` torch threads
  (default 2, the 2 CPU cores of the target), ``precision="32"`` and
  ``"bf16"``;
- with a CUDA device: ``cuda-32``, ``cuda-bf16``, ``cuda-16-mixed`` (the
  data on the device, within its 2 GiB budget), and ``cuda-32-host``
  (the data kept in host memory: pinned, non-blocking copies, the next batch
  prefetched; FusionDataset's device budget set to 0 bytes).

On a machine without CUDA it says so and measures the CPU variants only.
The issue's target is ``cuda-*`` >= 20x ``cpu-32`` on a large batch.

    python benchmarks/bench_gpu.py --quick      # 100,000 rows, 1 epoch; no cpu-bf16
    python benchmarks/bench_gpu.py              # 200,000 rows, 3 epochs, batch 4096
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # _timing, and the mmsk of this checkout
from _timing import Timing, add_common_arguments, interleaved, machine_line, report  # noqa: E402

from mmsk.fusion import FusionClassifier  # noqa: E402
from mmsk.fusion._data import FusionDataset  # noqa: E402

DIMS = (64, 256, 40)


def make_data(rows: int, n_classes: int = 10, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.RandomState(seed)
    blocks = {f"b{i}": rng.normal(size=(rows, d)).astype(np.float32) for i, d in enumerate(DIMS)}
    logits = sum(b[:, :n_classes] for b in blocks.values())
    return blocks, logits.argmax(axis=1).astype(np.int64)


@contextlib.contextmanager
def data_on_host() -> Iterator[None]:
    """Within the block, FusionDataset keeps every block in host memory (budget 0 bytes)."""
    init = FusionDataset.__init__
    before = init.__defaults__
    init.__defaults__ = (None, None, 0)
    try:
        yield
    finally:
        init.__defaults__ = before


def fit_call(
    blocks: dict,
    y: np.ndarray,
    *,
    device: str,
    precision: str,
    host: bool,
    args: Any,
    epoch_seconds: list[float] | None = None,
) -> Callable[[], float]:
    """Return a function that fits once and returns the final training loss.

    The seconds of the training epochs alone (skorch's ``dur``: no input
    checks, no set-up) go to ``epoch_seconds``.
    """

    def run() -> float:
        clf = FusionClassifier(
            hidden_units=args.hidden_units,
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            lr=1e-3,
            lr_schedule=None,
            early_stopping=False,
            device=device,
            precision=precision,
            n_jobs=args.threads,
            random_state=0,
        )
        with data_on_host() if host else contextlib.nullcontext():
            clf.fit(blocks, y)
        if device == "cuda":
            torch.cuda.synchronize()
        if epoch_seconds is not None:
            epoch_seconds.append(float(sum(clf.history_[:, "dur"])))
        return float(clf.history_[-1, "train_loss"])

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="default 200,000 (quick: 100,000)")
    parser.add_argument("--epochs", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--hidden-units", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the CPU fits")
    parser.add_argument("--no-cpu", action="store_true", help="time the GPU variants only")
    add_common_arguments(parser, repeats=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 3, 0
    if args.rows is None:
        args.rows = 100_000 if args.quick else 200_000
    if args.epochs is None:
        args.epochs = 1 if args.quick else 3
    cuda = torch.cuda.is_available()
    print(machine_line(), flush=True)
    print(
        f"torch {torch.__version__}; rows={args.rows} blocks={DIMS} epochs={args.epochs} "
        f"batch={args.batch_size} hidden_units={args.hidden_units} "
        f"cpu threads={args.threads}",
        flush=True,
    )
    if cuda:
        print(f"device: {torch.cuda.get_device_name(0)}", flush=True)
    else:
        print("no CUDA device present: measuring the CPU variants only", flush=True)
    blocks, y = make_data(args.rows)
    plan: dict[str, tuple[str, str, bool]] = {}
    if not args.no_cpu or not cuda:
        plan["cpu-32"] = ("cpu", "32", False)
        if not args.quick:  # (not the target; bfloat16 on a CPU depends on its instructions)
            plan["cpu-bf16"] = ("cpu", "bf16", False)
    if cuda:
        plan["cuda-32"] = ("cuda", "32", False)
        plan["cuda-bf16"] = ("cuda", "bf16", False)
        plan["cuda-16-mixed"] = ("cuda", "16-mixed", False)
        plan["cuda-32-host"] = ("cuda", "32", True)
        # CUDA context, cuBLAS and autocast kernels: once, untimed, on a slice
        small = {k: v[: 4 * args.batch_size] for k, v in blocks.items()}
        start = time.perf_counter()
        for precision in ("32", "bf16", "16-mixed"):
            fit_call(
                small,
                y[: len(small["b0"])],
                device="cuda",
                precision=precision,
                host=False,
                args=args,
            )()
        print(f"device warm-up: {time.perf_counter() - start:.1f} s", flush=True)
    epochs: dict[str, list[float]] = {name: [] for name in plan}
    variants = {
        name: fit_call(
            blocks,
            y,
            device=device,
            precision=precision,
            host=host,
            args=args,
            epoch_seconds=epochs[name],
        )
        for name, (device, precision, host) in plan.items()
    }
    timings: dict[str, Timing] = interleaved(
        variants, repeats=args.repeats, warmup=args.warmup, label="fit"
    )
    baseline = "cpu-32" if "cpu-32" in timings else next(iter(timings))
    print(report(timings, baseline=baseline))
    work = args.rows * args.epochs
    base = timings[baseline].median
    # the training epochs alone (skorch's dur), of the timed repetitions (not the warm-up)
    train = {name: statistics.median(seconds[-args.repeats :]) for name, seconds in epochs.items()}
    print(
        f"\n{'variant':<14}  fit rows/s  speedup  | epochs rows/s  speedup  "
        f"(medians; vs {baseline})  final train_loss"
    )
    for name, t in timings.items():
        print(
            f"{name:<14}  {work / t.median:10.0f}  {base / t.median:6.2f}x"
            f"  | {work / train[name]:13.0f}  {train[baseline] / train[name]:6.2f}x"
            f"  {t.last_result:.4f}"
        )
    gpu = [name for name in timings if name.startswith("cuda")]
    if gpu and "cpu-32" in timings:
        print()
        for what, table in (("fit", {n: t.median for n, t in timings.items()}), ("epochs", train)):
            best = min(gpu, key=lambda name: table[name])
            speedup = table["cpu-32"] / table[best]
            verdict = "met" if speedup >= 20 else "NOT met"
            print(f"target >= 20x cpu-32 ({what}): best {best} at {speedup:.1f}x ({verdict})")
    elif not gpu:
        print("\nno GPU figures: the >= 20x target was not measured")
    print(machine_line(), flush=True)


if __name__ == "__main__":
    main()
