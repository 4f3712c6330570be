"""Regenerate the AV-digits sample shipped in ``mmsk/data/av_digits/`` from the full data.

The sample is the rows of the full AV-digits set (``mmsk.datasets.load_av_digits``)
whose FSDD take is in ``mmsk.datasets.SAMPLE_TAKES`` (0, 10, 20, 30, 40): 6 speakers
x 10 digits x 5 takes = 300 pairs. For each row it writes

- ``audio/{digit}_{speaker}_{take}.wav``: the FSDD recording, copied byte for byte;
- ``images/{mnist_index}.png``: the paired MNIST test image, an 8-bit grey PNG;
- ``av_digits.csv``: image, audio (paths relative to the folder), label, speaker,
  take, mnist_index, in the full set's row order.

The output is the same on every run (the pairing is fixed; PNG encoding is
deterministic), so ``git diff`` after a run shows nothing. Usage::

    MMSK_DATA=../shared/data python scripts/make_av_digits_sample.py
    python scripts/make_av_digits_sample.py --data-home ../shared/data --check

``--check`` compares the existing sample with what would be written and exits
with status 1 if they differ, writing nothing.
"""

from __future__ import annotations

import argparse
import filecmp
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's mmsk, installed or not

from mmsk.datasets import SAMPLE_TAKES, get_data_home, load_av_digits  # noqa: E402

OUT = ROOT / "mmsk" / "data" / "av_digits"


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grey PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def build(data_home: Path, out: Path) -> int:
    """Write the sample's files into ``out`` (which must be empty); return the row count."""
    av = load_av_digits(data_home=data_home)
    frame = av.frame[av.frame["take"].isin(SAMPLE_TAKES)].reset_index(drop=True)
    (out / "audio").mkdir(parents=True)
    (out / "images").mkdir()
    rows = []
    for image, audio, label, speaker, take, index in frame[
        ["image", "audio", "label", "speaker", "take", "mnist_index"]
    ].itertuples(index=False):
        wav = f"audio/{Path(audio).name}"
        png = f"images/{index}.png"
        shutil.copyfile(audio, out / wav)
        (out / png).write_bytes(png_bytes(image))
        rows.append(f"{png},{wav},{label},{speaker},{take},{index}\n")
    with open(out / "av_digits.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write("image,audio,label,speaker,take,mnist_index\n")
        fh.writelines(rows)
    return len(rows)


def same_tree(a: Path, b: Path) -> bool:
    """Tell whether two folders hold the same files with the same bytes."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b:
        return False
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", help="folder with fsdd/ and mnist/ (default: MMSK_DATA)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"sample folder (default: {OUT})")
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args(argv)
    data_home = get_data_home(args.data_home)

    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "av_digits"
        n = build(data_home, fresh)
        generated = ["av_digits.csv", "audio", "images"]
        current = Path(tmp) / "current"
        current.mkdir()
        for name in generated:
            src = args.out / name
            if src.is_dir():
                shutil.copytree(src, current / name)
            elif src.is_file():
                shutil.copy2(src, current / name)
        unchanged = same_tree(fresh, current)
        if args.check:
            print(
                f"{n} pairs; the sample in {args.out} is {'up to date' if unchanged else 'STALE'}"
            )
            return 0 if unchanged else 1
        args.out.mkdir(parents=True, exist_ok=True)
        for name in generated:  # replace only the generated files; README.md stays
            target = args.out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(fresh / name), str(target))
    print(f"wrote {n} pairs to {args.out} ({'unchanged' if unchanged else 'updated'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
