"""Training speed of FusionClassifier against a bare torch loop and plain skorch.

The same module (mmsk's FusionModule, built with the kwargs FusionClassifier
used) is trained on the same data, for the same epochs and batch size,
three ways in one run:

1. ``bare``: a hand-written torch loop over tensors made once (shuffled
   index slices, forward, loss, backward, step);
2. ``skorch``: skorch's ``NeuralNetClassifier`` with its defaults (Dataset,
   DataLoader) on a dict of arrays, no validation split, shuffled, quiet;
3. ``mmsk``: ``FusionClassifier.fit`` on a dict of the three blocks (input
   validation and missing-modality checks included).

Each way runs ``--repeats`` times, interleaved; the best time counts.

    python benchmarks/bench_fusion.py                 # 20,000 rows, 10 epochs
    python benchmarks/bench_fusion.py --rows 4000 --epochs 2   # quick
    python benchmarks/bench_fusion.py --sparse        # also: a sparse block vs dense
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from scipy import sparse
from skorch import NeuralNetClassifier

from mmsk._torch import resolve_device
from mmsk.fusion import FusionClassifier
from mmsk.fusion.modules import FusionModule

DIMS = (64, 256, 40)


def make_data(rows: int, n_classes: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.RandomState(seed)
    blocks = {f"b{i}": rng.normal(size=(rows, d)).astype(np.float32) for i, d in enumerate(DIMS)}
    logits = sum(b[:, :n_classes] for b in blocks.values())
    return blocks, logits.argmax(axis=1).astype(np.int64)


def bare_loop(kwargs, blocks, y, *, epochs, batch_size, lr, device) -> float:
    module = FusionModule(**kwargs).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
    criterion = torch.nn.CrossEntropyLoss()
    xs = {f"x{i}": torch.from_numpy(b).to(device) for i, b in enumerate(blocks.values())}
    mask = torch.ones(len(y), len(xs), dtype=torch.bool, device=device)
    target = torch.from_numpy(y).to(device)
    _sync(device)
    start = time.perf_counter()
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), device=device)
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            batch = {k: v[idx] for k, v in xs.items()}
            loss = criterion(module(mask=mask[idx], **batch), target[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def plain_skorch(kwargs, blocks, y, *, epochs, batch_size, lr, device) -> float:
    X = {f"x{i}": b for i, b in enumerate(blocks.values())}
    X["mask"] = np.ones((len(y), len(blocks)), dtype=bool)
    net = NeuralNetClassifier(
        FusionModule,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=lr,
        max_epochs=epochs,
        batch_size=batch_size,
        train_split=None,
        iterator_train__shuffle=True,
        device=device,
        verbose=0,
        **{f"module__{k}": v for k, v in kwargs.items()},
    )
    _sync(device)
    start = time.perf_counter()
    net.fit(X, y)
    _sync(device)
    return time.perf_counter() - start


def fusion(blocks, y, *, epochs, batch_size, lr, device, fusion_kind) -> tuple[float, dict]:
    clf = FusionClassifier(
        fusion=fusion_kind,
        max_epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        device=device,
        random_state=0,
    )
    _sync(device)
    start = time.perf_counter()
    clf.fit(blocks, y)
    _sync(device)
    return time.perf_counter() - start, clf


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--fusion", default="concat")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sparse",
        action="store_true",
        help="also time the 256-wide block as a 95%%-zero CSR matrix vs dense",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.device = resolve_device(args.device)
    blocks, y = make_data(args.rows, args.classes)
    lr = 0.01
    common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=lr)
    # warm-up on a slice, and the module kwargs FusionClassifier uses
    small = {k: v[:512] for k, v in blocks.items()}
    _, clf = fusion(
        small,
        y[:512],
        epochs=1,
        batch_size=args.batch_size,
        lr=lr,
        device=args.device,
        fusion_kind=args.fusion,
    )
    device = clf.device_
    kwargs = clf.net_.get_params_for("module")
    bare_loop(kwargs, small, y[:512], device=device, **{**common, "epochs": 1})
    plain_skorch(kwargs, small, y[:512], device=device, **{**common, "epochs": 1})

    times: dict[str, list[float]] = {"bare": [], "skorch": [], "mmsk": []}
    for _ in range(args.repeats):
        times["bare"].append(bare_loop(kwargs, blocks, y, device=device, **common))
        times["skorch"].append(plain_skorch(kwargs, blocks, y, device=device, **common))
        times["mmsk"].append(fusion(blocks, y, device=device, fusion_kind=args.fusion, **common)[0])
    best = {k: min(v) for k, v in times.items()}
    print(
        f"device={device} ({platform.processor() or platform.machine()}), torch "
        f"{torch.__version__}, threads={torch.get_num_threads()}, rows={args.rows}, "
        f"blocks={DIMS}, batch={args.batch_size}, epochs={args.epochs}, "
        f"fusion={args.fusion}, best of {args.repeats}"
    )
    for name, label in [
        ("bare", "bare torch loop"),
        ("skorch", "plain skorch (defaults)"),
        ("mmsk", "FusionClassifier.fit"),
    ]:
        rate = args.rows * args.epochs / best[name]
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        median = float(np.median(times[name]) / np.median(times["bare"]))
        print(
            f"  {label:24s} {best[name]:6.2f} s  {rate:7.0f} rows/s  "
            f"x{best[name] / best['bare']:.2f} of bare (median x{median:.2f}; runs: {runs})"
        )

    if args.sparse:
        rng = np.random.RandomState(1)
        wide = blocks["b1"] * (rng.uniform(size=blocks["b1"].shape) < 0.05)
        dense_blocks = {**blocks, "b1": wide}
        sparse_blocks = {**blocks, "b1": sparse.csr_matrix(wide)}
        t_dense = min(
            fusion(dense_blocks, y, device=device, fusion_kind=args.fusion, **common)[0]
            for _ in range(args.repeats)
        )
        t_sparse = min(
            fusion(sparse_blocks, y, device=device, fusion_kind=args.fusion, **common)[0]
            for _ in range(args.repeats)
        )
        print(
            f"  sparse 256-wide block (5% non-zero): dense {t_dense:.2f} s, "
            f"CSR {t_sparse:.2f} s, x{t_sparse / t_dense:.2f} of dense"
        )


if __name__ == "__main__":
    main()
