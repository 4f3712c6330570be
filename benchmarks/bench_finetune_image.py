"""CPU cost per epoch of fine-tuning a pretrained image backbone ("pretrained_image" tower).

Protocol
--------
The backbone is a small CNN (three conv blocks with batch norm, 64 pooled
features, about 24 k weights), "pretrained" here on scikit-learn's shipped
8x8 handwritten digits (``load_digits``, 1,797 images, upscaled to 28x28;
nothing is downloaded) and saved as a state dict file. It is then
fine-tuned inside ``FusionClassifier`` on the images of the shipped
AV-digits sample (MNIST digits, 28x28 grey; the sample's ``train`` rows;
accuracy on its ``test`` rows), one block of ``ImagePixels(mode="L")``:

- ``conv (scratch)``: the baseline, a ``"conv"`` tower trained from scratch;
- ``frozen (0)``: the pretrained backbone frozen (``trainable_layers=0``),
  only the projection and head train;
- ``top layer (1)``: the top conv block trains too;
- ``all``: every weight of the backbone trains (its own ``lr=1e-3``).

Each variant fits ``--epochs`` epochs (no early stopping), interleaved
(A B C D, A B C D, ...), ``--repeats`` times; the pixels are extracted once,
before the timings. Seconds per epoch = fit time / epochs (median and
spread over the repetitions). Torch runs on ``--threads`` threads. The GPU
cost is not measured by this script on a CPU-only machine (``device`` is
``"auto"``).

Run::

    python benchmarks/bench_finetune_image.py              # 3 repetitions, 10 epochs
    python benchmarks/bench_finetune_image.py --quick      # 1 repetition, 2 epochs
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from _timing import add_common_arguments, interleaved, machine_line, report
from sklearn.datasets import load_digits
from torch import nn

from mmsk import FusionClassifier, ImagePixels
from mmsk.datasets import load_sample


class SmallCNN(nn.Module):
    """Three conv blocks (16, 32, 64 channels, batch norm), global average pool, a head."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))


def pretrain(path: str, epochs: int, seed: int = 0) -> float:
    """Train SmallCNN on load_digits (upscaled to 28x28); save its state dict; return accuracy."""
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    y = torch.tensor(digits.target)
    model = SmallCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
        print(f"  pretraining epoch {epoch + 1}/{epochs}", flush=True)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    torch.save(model.state_dict(), path)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, repeats=3)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per fit (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (n_jobs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--weights",
        help="state dict file of the pretrained CNN: reused when it exists, else written "
        "(default: a new temporary file)",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup, args.epochs = 1, 0, 2
    print(machine_line(), flush=True)

    torch.set_num_threads(args.threads)
    weights = args.weights or os.path.join(tempfile.mkdtemp(prefix="mmsk-bench-"), "cnn.pt")
    if os.path.isfile(weights):
        print(f"pretrained CNN: {weights} (reused)", flush=True)
    else:
        t0 = time.perf_counter()
        train_accuracy = pretrain(weights, epochs=2 if args.quick else 4)
        print(
            f"pretrained on load_digits in {time.perf_counter() - t0:.1f} s "
            f"(training accuracy {train_accuracy:.3f}), saved to {weights}",
            flush=True,
        )

    sample = load_sample()
    frame = sample.frame
    train = (frame["split"] == "train").to_numpy()
    t0 = time.perf_counter()
    pixels = ImagePixels(size=(28, 28), mode="L").set_output(transform="pandas")
    X = pixels.fit_transform(frame["image"]).add_prefix("image__")
    y = np.asarray(sample.target)
    print(
        f"ImagePixels on {len(X)} images: {time.perf_counter() - t0:.2f} s "
        f"({int(train.sum())} train / {int((~train).sum())} test rows)",
        flush=True,
    )

    def tower(trainable):
        options = {"model": SmallCNN, "weights": weights, "mean": (0.5,), "std": (0.5,)}
        return ("pretrained_image", {**options, "trainable_layers": trainable, "lr": 1e-3})

    towers = {
        "conv (scratch)": "conv",
        "frozen (0)": tower(0),
        "top layer (1)": tower(1),
        "all": tower("all"),
    }
    common = dict(
        max_epochs=args.epochs,
        early_stopping=False,
        batch_size=args.batch_size,
        lr=1e-3,
        n_jobs=args.threads,
        random_state=0,
    )

    def fit(spec):
        return lambda: FusionClassifier(towers={"image": spec}, **common).fit(X[train], y[train])

    timings = interleaved(
        {name: fit(spec) for name, spec in towers.items()},
        repeats=args.repeats,
        warmup=args.warmup,
    )
    per_epoch = {}
    for name, timing in timings.items():
        timing.seconds = [s / args.epochs for s in timing.seconds]
        per_epoch[name] = timing
    print(f"\nseconds per epoch ({int(train.sum())} rows, {args.epochs} epochs per fit)")
    print(report(per_epoch, baseline="conv (scratch)"))
    print("\ntest accuracy (last fit of each variant)")
    for name, timing in timings.items():
        accuracy = float((timing.last_result.predict(X[~train]) == y[~train]).mean())
        print(f"  {name:<15} {accuracy:.3f}")
    print(machine_line(), flush=True)


if __name__ == "__main__":
    main()
