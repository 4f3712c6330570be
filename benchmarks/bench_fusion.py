"""Training speed of FusionClassifier.fit against a bare torch loop and plain skorch.

One network (mmsk's ``FusionModule``, built with the very kwargs
``FusionClassifier`` used, input scaling included) is trained on the same
data, with the same optimizer (AdamW, same ``lr`` and ``weight_decay``),
loss, batch size, epochs, torch threads, BLAS threads and device, four ways,
interleaved and rotated (A B C D, B C D A, C D A B, ...: on a loaded machine
the variant right after the skorch dict path seemed slower, so no variant
always takes that place):

1. ``bare``: a hand-written torch loop over tensors made once (a seeded
   permutation per epoch, index_select per block, forward, loss, backward,
   step); a sparse block is sliced with scipy and densified batch by batch,
   as mmsk does;
2. ``skorch array``: a plain ``skorch.NeuralNetClassifier`` (its default
   Dataset and DataLoader) on **one** concatenated array (a CSR matrix when
   a block is sparse; skorch densifies it row by row), the module splitting
   the columns back into the blocks;
3. ``skorch dict``: the same net on the dict of blocks (dense blocks only:
   skorch's DataLoader cannot collate a CSR block inside a dict);
4. ``mmsk``: ``FusionClassifier.fit`` on the dict of blocks (input
   validation, missing-modality checks and the scaling statistics included).

Each is timed for dense blocks and again with the 256-wide block as a
95%-zero CSR matrix. By default every variant trains on all rows with no
held-out rows (``FusionClassifier(early_stopping=False, lr_schedule=None, n_estimators=1)``).
With ``--validation`` every variant holds out 10% of the rows and computes
the validation loss after each epoch, as mmsk's default early stopping does:
mmsk runs ``early_stopping=True, validation_fraction=0.1`` with a patience
longer than the run (so all variants train the same epochs), and the bare
loop keeps a copy of the best weights as skorch's ``EarlyStopping(load_best=True)``
does.

The report gives per variant the median wall time, [min, max] and the ratio
of medians to ``bare``, the same for the process's CPU time (steadier on a
loaded machine with ``--threads 1``), and the training accuracy reached (a sanity check that
all variants learn alike). Run from the repository root::

    python benchmarks/bench_fusion.py --quick          # a smoke run (seconds)
    python benchmarks/bench_fusion.py                  # 20,000 rows, 10 epochs, 5 repeats
    python benchmarks/bench_fusion.py --validation     # with a held-out evaluation per epoch
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import sparse
from skorch import NeuralNetClassifier
from skorch.dataset import ValidSplit
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's mmsk, and _timing
from _timing import (  # noqa: E402
    add_common_arguments,
    interleaved,
    machine_line,
    paired_speed,
    report,
)

import mmsk  # noqa: E402
from mmsk._torch import resolve_device  # noqa: E402
from mmsk.fusion import FusionClassifier  # noqa: E402
from mmsk.fusion.modules import FusionModule  # noqa: E402

DIMS = (64, 256, 40)
SPARSE_BLOCK = 1  # the 256-wide block
VALIDATION = 0.1
LR = 0.01
WEIGHT_DECAY = 0.01


def make_data(rows: int, n_classes: int, seed: int = 0) -> tuple[dict[str, Any], np.ndarray]:
    rng = np.random.RandomState(seed)
    blocks = {f"b{i}": rng.normal(size=(rows, d)).astype(np.float32) for i, d in enumerate(DIMS)}
    logits = sum(b[:, :n_classes] for b in blocks.values())
    return blocks, logits.argmax(axis=1).astype(np.int64)


def sparsify(blocks: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    """The 256-wide block with 95% zeros, as a CSR matrix."""
    key = f"b{SPARSE_BLOCK}"
    rng = np.random.RandomState(seed)
    wide = blocks[key] * (rng.uniform(size=blocks[key].shape) < 0.05)
    return {**blocks, key: sparse.csr_matrix(wide.astype(np.float32))}


def split_rows(y: np.ndarray, fraction: float | None, seed: int = 0) -> tuple[np.ndarray, Any]:
    """Training and held-out row indices (None: all rows train)."""
    if fraction is None:
        return np.arange(len(y)), None
    perm = np.random.RandomState(seed).permutation(len(y))
    n_valid = int(np.ceil(fraction * len(y)))
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def batch_edges(n: int, batch_size: int) -> list[int]:
    """Batch boundaries, a one-row remainder merged into the last batch (batch norm)."""
    edges = [*range(0, n, batch_size), n]
    if len(edges) > 2 and edges[-1] - edges[-2] == 1:
        del edges[-2]
    return edges


def _sync(device: Any) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# -- 1. the bare torch loop ---------------------------------------------------------
def bare_loop(kwargs, blocks, y, *, epochs, batch_size, device, fraction, seed=0):
    """Train with a hand-written loop; return the module (in eval mode)."""
    torch.manual_seed(seed)
    module = FusionModule(**kwargs).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    criterion = torch.nn.CrossEntropyLoss()
    train, valid = split_rows(y, fraction)
    values = list(blocks.values())

    def tensors(rows):
        out = {}
        for i, b in enumerate(values):
            part = b[rows]
            out[f"x{i}"] = part if sparse.issparse(part) else torch.from_numpy(part).to(device)
        return out, torch.from_numpy(y[rows]).to(device)

    def gather(xs, idx, idx_np):
        out = {}
        for k, v in xs.items():
            if sparse.issparse(v):
                out[k] = torch.from_numpy(v[idx_np].toarray()).to(device)
            else:
                out[k] = v.index_select(0, idx)
        return out

    xs, target = tensors(train)
    mask = torch.ones(len(train), len(values), dtype=torch.bool, device=device)
    edges = batch_edges(len(train), batch_size)
    generator = torch.Generator().manual_seed(seed)
    if valid is not None:
        xv, tv = tensors(valid)
        mv = torch.ones(len(valid), len(values), dtype=torch.bool, device=device)
        valid_edges = batch_edges(len(valid), max(batch_size, 1024))
        best, best_state = np.inf, None
    for _ in range(epochs):
        module.train()
        perm_cpu = torch.randperm(len(train), generator=generator)
        perm = perm_cpu.to(device)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            idx = perm[a:b]
            batch = gather(xs, idx, perm_cpu[a:b].numpy())
            loss = criterion(module(mask=mask[idx], **batch), target[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if valid is not None:  # the held-out loss, and a copy of the best weights
            module.eval()
            total = 0.0
            with torch.no_grad():
                for a, b in zip(valid_edges[:-1], valid_edges[1:], strict=True):
                    part = {
                        k: torch.from_numpy(v[a:b].toarray()).to(device)
                        if sparse.issparse(v)
                        else v[a:b]
                        for k, v in xv.items()
                    }
                    out = module(mask=mv[a:b], **part)
                    total += criterion(out, tv[a:b]).item() * (b - a)
            if total / len(valid) < best:
                best, best_state = total / len(valid), copy.deepcopy(module.state_dict())
    if valid is not None:
        module.load_state_dict(best_state)
    _sync(device)
    return module.eval()


def module_accuracy(module, blocks, y, device) -> float:
    with torch.no_grad():
        xs = {
            f"x{i}": torch.from_numpy(b.toarray() if sparse.issparse(b) else b).to(device)
            for i, b in enumerate(blocks.values())
        }
        mask = torch.ones(len(y), len(xs), dtype=torch.bool, device=device)
        pred = module(mask=mask, **xs).argmax(1).cpu().numpy()
    return float((pred == y).mean())


# -- 2. and 3. plain skorch ---------------------------------------------------------------
class OneArrayModule(torch.nn.Module):
    """``FusionModule`` fed by one concatenated array, cut back into the blocks."""

    def __init__(self, widths: list[int], **kwargs: Any) -> None:
        super().__init__()
        self.widths = list(widths)
        self.fusion = FusionModule(**kwargs)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        parts = torch.split(X, self.widths, dim=1)
        mask = torch.ones(X.shape[0], len(parts), dtype=torch.bool, device=X.device)
        return self.fusion(mask=mask, **{f"x{i}": p for i, p in enumerate(parts)})


def plain_skorch(module, module_kwargs, X, y, *, epochs, batch_size, device, fraction):
    """Fit a plain skorch NeuralNetClassifier (its own Dataset and DataLoader)."""
    torch.manual_seed(0)
    train_split = None if fraction is None else ValidSplit(fraction, stratified=True)
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=WEIGHT_DECAY,
        lr=LR,
        max_epochs=epochs,
        batch_size=batch_size,
        train_split=train_split,
        iterator_train__shuffle=True,
        iterator_valid__batch_size=max(batch_size, 1024),
        device=device,
        verbose=0,
        **{f"module__{k}": v for k, v in module_kwargs.items()},
    )
    net.fit(X, y)
    _sync(device)
    return net


def one_array(blocks: dict[str, Any]) -> Any:
    values = list(blocks.values())
    if any(sparse.issparse(b) for b in values):
        return sparse.hstack(values, format="csr", dtype=np.float32)
    return np.ascontiguousarray(np.hstack(values), dtype=np.float32)


# -- 4. mmsk ---------------------------------------------------------------------------------
def make_fusion(args, *, epochs: int | None = None) -> FusionClassifier:
    validating = args.validation
    return FusionClassifier(
        max_epochs=args.epochs if epochs is None else epochs,
        batch_size=args.batch_size,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        lr_schedule=None,
        early_stopping=validating,
        validation_fraction=VALIDATION if validating else None,
        n_iter_no_change=args.epochs + 1,  # never stops: every variant trains every epoch
        n_estimators=1,  # one network, as every other variant ("auto" trains 5 up to 10,000 rows)
        device=args.device,
        n_jobs=args.threads,
        random_state=0,
    )


def variants(args, blocks, y) -> dict[str, Callable[[], Any]]:
    """The timed callables for one set of blocks; each returns its training accuracy."""
    fraction = VALIDATION if args.validation else None
    common = dict(epochs=args.epochs, batch_size=args.batch_size, fraction=fraction)
    # the module kwargs (sizes, scaling statistics) mmsk derives from these blocks
    kwargs = make_fusion(args, epochs=1).fit(blocks, y).net_.get_params_for("module")
    device = resolve_device(args.device)
    widths = [b.shape[1] for b in blocks.values()]
    X_one = one_array(blocks)
    X_dict = {f"x{i}": b for i, b in enumerate(blocks.values())}
    X_dict["mask"] = np.ones((len(y), len(blocks)), dtype=bool)

    # each returns a function giving the training accuracy, called after timing
    def bare():
        module = bare_loop(kwargs, blocks, y, device=device, **common)
        return lambda: module_accuracy(module, blocks, y, device)

    def skorch_array():
        net = plain_skorch(
            OneArrayModule, {"widths": widths, **kwargs}, X_one, y, device=device, **common
        )
        return lambda: float((net.predict(X_one) == y).mean())

    def skorch_dict():
        net = plain_skorch(FusionModule, kwargs, X_dict, y, device=device, **common)
        return lambda: float((net.predict(X_dict) == y).mean())

    def mmsk():
        clf = make_fusion(args).fit(blocks, y)
        _sync(device)
        return lambda: float((clf.predict(blocks) == y).mean())

    out = {"bare": bare, "skorch array": skorch_array}
    if not any(sparse.issparse(b) for b in blocks.values()):
        out["skorch dict"] = skorch_dict
    out["mmsk"] = mmsk
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    parser.add_argument(
        "--blocks", choices=["dense", "sparse", "both"], default="both", help="which block sets"
    )
    parser.add_argument(
        "--validation",
        action="store_true",
        help="hold out 10%% and compute the validation loss each epoch (mmsk's early stopping)",
    )
    add_common_arguments(parser, repeats=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.epochs, args.repeats, args.warmup = 3000, 2, 3, 0
    args.device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    print(machine_line(), flush=True)
    print(
        f"device={args.device} ({platform.processor() or platform.machine()}), torch "
        f"{torch.__version__}, torch/BLAS threads={args.threads}, rows={args.rows}, "
        f"blocks={DIMS}, batch={args.batch_size}, epochs={args.epochs}, optimizer=AdamW "
        f"(lr={LR}, weight_decay={WEIGHT_DECAY}), "
        + (
            f"held-out {VALIDATION:.0%} scored per epoch"
            if args.validation
            else "no held-out rows (mmsk: early_stopping=False)"
        )
        + f"; {args.repeats} repeats interleaved and rotated, {args.warmup} warm-up; mmsk from "
        f"{Path(mmsk.__file__).parent}",
        flush=True,
    )
    dense, y = make_data(args.rows, args.classes)
    sets = {"dense": dense, "sparse": sparsify(dense)}
    chosen = list(sets) if args.blocks == "both" else [args.blocks]
    tables = []
    with threadpool_limits(args.threads):
        for name in chosen:
            print(f"\n[{name} blocks]", flush=True)
            timed = interleaved(
                variants(args, sets[name], y),
                repeats=args.repeats,
                warmup=args.warmup,
                label=name,
                rotate=True,
            )
            wall = report(timed, baseline="bare")
            cpu = report(timed, baseline="bare", clock="cpu")
            accuracy = "  ".join(f"{k}: {t.last_result():.3f}" for k, t in timed.items())
            paired = "  ".join(
                "{}: {:.3f}x [{:.3f}, {:.3f}]".format(k, *paired_speed(timed, k, "bare"))
                for k in timed
                if k != "bare"
            )
            tables.append(
                f"[{name} blocks]\n{wall}\n{cpu}\ntraining accuracy: {accuracy}\n"
                f"median of the per-repetition ratios to bare (wall): {paired}"
            )
            print(tables[-1], flush=True)
    print(f"\n{machine_line()}\n" + "\n\n".join(tables))


if __name__ == "__main__":
    main()
