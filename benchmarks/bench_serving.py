"""Serving latency: one-row ``predict`` of a fitted pipeline against the bare work.

The model is ``make_multimodal_pipeline(image="image", audio="audio")``
fitted on the shipped sample (``mmsk.datasets.load_sample``, 300 pairs).
The bare work for one row is what the prediction cannot avoid, written by
hand with the same libraries: decode the PNG with Pillow and resize it,
read the WAV with soundfile, resample it with librosa (soxr) and compute
the same librosa features, then one forward pass of the fitted net's module
under ``torch.no_grad``. Both give the same numbers (checked before timing).

Printed, as the run goes (the protocol of ``benchmarks/_timing.py``: the
variants interleaved A B A B, medians and spread, the machine's load):

1. one-row latency of ``model.predict(row)`` and of the bare work, the two
   interleaved row by row (each on the same row in turn): wall-clock median,
   [min, max] and quartiles, the ratio of the medians (target: <= 1.3), and
   the same for the CPU time of the thread (less sensitive to other
   processes on a shared machine);
2. batch throughput of ``model.predict`` on all 300 rows against the bare
   work row by row over the same rows (rows/s, medians);
3. requests/s of ``mmsk.serve.create_app(model)`` under uvicorn on
   127.0.0.1, one record per request (media as base64), from 1, 4 and 16
   client threads using httpx (the client counts interleaved, rounds
   repeated: median and [min, max]), next to the in-process one-row rate.

torch runs on ``--torch-threads`` threads (default 1, what a server worker
process should use; the shared-machine noise of more threads would swamp
a 1 ms forward pass) on both sides, BLAS on one.

    python benchmarks/bench_serving.py            # full: 300 rows per side, 3 server rounds
    python benchmarks/bench_serving.py --quick    # a smoke run in about a minute

(from the repository root; this checkout's ``mmsk`` is imported).
"""

from __future__ import annotations

import argparse
import base64
import functools
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from PIL import Image
from threadpoolctl import threadpool_limits

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from _timing import Timing, add_common_arguments, interleaved, machine_line, report  # noqa: E402

from mmsk.compose import make_multimodal_pipeline  # noqa: E402
from mmsk.datasets import load_sample  # noqa: E402


def bare_row(image_path: str, audio_path: str, model) -> np.ndarray:
    """Decode, extract and run one row by hand; return the class probabilities."""
    features = model.named_steps["features"]
    image = features.named_transformers_["image"]
    audio = features.named_transformers_["audio"]
    fusion = model.named_steps["fusion"]
    width, height = image.size
    with Image.open(image_path) as img:
        small = img.convert(image.mode).resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float32).transpose(2, 0, 1).reshape(1, -1) / 255.0
    y, sr = sf.read(audio_path, dtype="float32")
    y = librosa.resample(y, orig_sr=sr, target_sr=audio.sr, res_type="soxr_hq")
    sound = bare_audio_features(y, audio).astype(np.float32)[np.newaxis]
    blocks = {"image": pixels, "audio": sound}
    module = fusion.net_.module_
    inputs = {f"x{i}": torch.from_numpy(blocks[name]) for i, name in enumerate(fusion.modalities_)}
    with torch.no_grad():
        logits = module(mask=torch.ones(1, len(blocks), dtype=torch.bool), **inputs)
    return torch.softmax(logits, dim=-1).numpy()


@functools.lru_cache(maxsize=4)
def filter_banks(sr: int, n_fft: int, n_mels: int, fmin: float, n_chroma: int):
    """The mel and chroma filters, built once (as a hand-written server would)."""
    mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin)
    chroma = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=0.0)
    return mel, chroma


def bare_audio_features(y: np.ndarray, est) -> np.ndarray:
    """AudioFeatures' default groups and stats (mean, std) with librosa, by hand."""
    sr, n_fft, hop = est.sr, est.n_fft, est.hop_length
    if y.shape[0] < n_fft:
        y = np.pad(y, (0, n_fft - y.shape[0]))
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    power = S**2
    mel_fb, chroma_fb = filter_banks(sr, n_fft, est.n_mels, est.fmin, est.n_chroma)
    log_mel = librosa.power_to_db(mel_fb @ power)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=est.n_mfcc)
    delta = librosa.feature.delta(mfcc, mode="interp" if mfcc.shape[-1] >= 9 else "nearest")
    centroid = librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft)
    frames = np.concatenate(
        [
            mfcc,
            delta,
            log_mel,
            centroid,
            librosa.feature.spectral_bandwidth(S=S, sr=sr, n_fft=n_fft, centroid=centroid),
            librosa.feature.spectral_contrast(S=S, sr=sr, n_fft=n_fft, n_bands=est.n_bands),
            librosa.feature.spectral_rolloff(S=S, sr=sr, n_fft=n_fft),
            librosa.feature.spectral_flatness(S=S),
            librosa.util.normalize(chroma_fb @ power, norm=np.inf, axis=-2),
            librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
            librosa.feature.rms(S=S, frame_length=n_fft, hop_length=hop),
        ]
    )
    return np.stack([frames.mean(axis=1), frames.std(axis=1)], axis=1).reshape(-1)


def start_server(app):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    return server, thread, sock, sock.getsockname()[1]


def requests_per_second(port: int, records: list[dict], clients: int, seconds: float) -> float:
    import httpx

    stop = time.monotonic() + seconds
    counts = [0] * clients

    def client(c: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            k = c
            while time.monotonic() < stop:
                answer = http.post("/predict", json={"records": [records[k % len(records)]]})
                if answer.status_code != 200:
                    raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")
                counts[c] += 1
                k += clients

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return sum(counts) / (time.monotonic() - start)


def one_row_latency(
    model, frame, repeats: int, warmup: int, chunk: int = 20
) -> tuple[dict[str, Timing], dict[str, list[float]]]:
    """Time ``model.predict(row)`` and the bare work, interleaved, each on the same rows in turn.

    Returns the wall-clock timings (``_timing.Timing``) and the CPU time of
    the thread per call, by variant. A progress line (running medians)
    follows every ``chunk`` rounds.
    """
    paths = frame[["image", "audio"]].reset_index(drop=True)
    rows = [paths.iloc[[i]] for i in range(len(paths))]
    cpu: dict[str, list[float]] = {"mmsk predict": [], "bare work": []}
    turn = {"mmsk predict": 0, "bare work": 0}

    def timed(name, work):
        def call():
            i = turn[name] % len(rows)
            turn[name] += 1
            start = time.thread_time()
            result = work(i)
            cpu[name].append(time.thread_time() - start)
            return result

        return call

    variants = {
        "mmsk predict": timed("mmsk predict", lambda i: model.predict(rows[i])),
        "bare work": timed(
            "bare work",
            lambda i: bare_row(paths["image"][i], paths["audio"][i], model).argmax(axis=1),
        ),
    }
    interleaved(variants, repeats=0, warmup=warmup, verbose=False)
    for name in cpu:  # warm-up calls are not timed
        cpu[name].clear()
        turn[name] = 0
    timings = {name: Timing(name) for name in variants}
    done = 0
    while done < repeats:
        step = min(chunk, repeats - done)
        for name, t in interleaved(variants, repeats=step, warmup=0, verbose=False).items():
            timings[name].seconds.extend(t.seconds)
        done += step
        mm, bare = timings["mmsk predict"], timings["bare work"]
        cpu_ratio = statistics.median(cpu["mmsk predict"]) / statistics.median(cpu["bare work"])
        print(
            f"  {done}/{repeats} rows: mmsk {mm.median * 1e3:.2f} ms, bare "
            f"{bare.median * 1e3:.2f} ms, ratio of medians {mm.median / bare.median:.2f}x "
            f"(CPU {cpu_ratio:.2f}x)",
            flush=True,
        )
    return timings, cpu


def quartiles(seconds: list[float]) -> str:
    q1, q3 = np.percentile(np.asarray(seconds) * 1e3, [25, 75])
    return f"{q1:.2f}-{q3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, repeats=300)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--server-seconds", type=float, default=None, help="per client count and round"
    )
    parser.add_argument(
        "--server-rounds", type=int, default=None, help="rounds of 1, 4, 16 clients"
    )
    args = parser.parse_args(argv)
    repeats = 40 if args.quick and args.repeats == 300 else args.repeats
    warmup = max(5, args.warmup)
    server_seconds = args.server_seconds or (1.5 if args.quick else 6.0)
    server_rounds = args.server_rounds or (1 if args.quick else 3)
    torch.set_num_threads(args.torch_threads)
    threadpool_limits(1)  # BLAS on one thread on both sides (mmsk's audio features do that anyway)
    print(machine_line(), f"torch threads: {torch.get_num_threads()}, BLAS threads: 1", flush=True)

    frame = load_sample().frame
    model = make_multimodal_pipeline(
        image="image", audio="audio", max_epochs=10 if args.quick else 30, random_state=0
    )
    start = time.perf_counter()
    model.fit(frame[["image", "audio"]], frame["label"])
    fusion = model.named_steps["fusion"]
    print(
        f"fitted on {len(frame)} rows in {time.perf_counter() - start:.1f} s; "
        f"blocks {fusion.modality_dims_}",
        flush=True,
    )
    # the bare work computes what the model computes
    for i in range(3):
        row = frame[["image", "audio"]].iloc[[i]]
        expected = model.predict_proba(row)
        got = bare_row(row["image"].iloc[0], row["audio"].iloc[0], model)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    print(f"one-row latency, {repeats} rows per side, interleaved (warm-up {warmup}):", flush=True)
    timings, cpu = one_row_latency(model, frame, repeats, warmup)
    print(report(timings, baseline="bare work", unit="ms"))
    for name, t in timings.items():
        print(f"  {name}: wall quartiles {quartiles(t.seconds)}; CPU {quartiles(cpu[name])}")
    wall = timings["mmsk predict"].median / timings["bare work"].median
    cpu_ratio = statistics.median(cpu["mmsk predict"]) / statistics.median(cpu["bare work"])
    print(
        f"one-row ratio of medians: wall {wall:.2f}x, CPU of the thread {cpu_ratio:.2f}x "
        "(target <= 1.3x)",
        flush=True,
    )

    batch = frame[["image", "audio"]]
    paths = batch.reset_index(drop=True)

    def bare_loop():
        for i in range(len(paths)):
            bare_row(paths["image"][i], paths["audio"][i], model)

    print(f"batch of {len(batch)} rows, interleaved:", flush=True)
    runs = interleaved(
        {"mmsk predict (batch)": lambda: model.predict(batch), "bare work (row loop)": bare_loop},
        repeats=2 if args.quick else 5,
        warmup=0 if args.quick else 1,
        label="batch",
    )
    print(report(runs, baseline="bare work (row loop)"))
    for name, t in runs.items():
        print(f"  {name}: {len(batch) / t.median:.0f} rows/s (median)", flush=True)

    try:
        from mmsk.serve import create_app
    except ImportError as exc:  # pragma: no cover - the serve extra is missing
        print(f"server skipped: {exc}")
        return 0
    records = [
        {
            "image": {"base64": base64.b64encode(Path(r.image).read_bytes()).decode()},
            "audio": {"base64": base64.b64encode(Path(r.audio).read_bytes()).decode()},
        }
        for r in frame.head(50).itertuples()
    ]
    server, thread, sock, port = start_server(create_app(model))
    rates: dict[int, list[float]] = {1: [], 4: [], 16: []}
    try:
        requests_per_second(port, records, 1, 0.5)  # warm up
        print(
            f"server: {server_rounds} round(s) of 1, 4, 16 clients, {server_seconds:g} s each:",
            flush=True,
        )
        for r in range(server_rounds):
            for clients in rates:
                rate = requests_per_second(port, records, clients, server_seconds)
                rates[clients].append(rate)
                print(f"  round {r + 1}: {clients:>2} clients {rate:7.1f} requests/s", flush=True)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    in_process = 1 / timings["mmsk predict"].median
    for clients, values in rates.items():
        print(
            f"server, {clients:>2} concurrent clients: {statistics.median(values):7.1f} requests/s "
            f"(median of {len(values)}, [{min(values):.1f}, {max(values):.1f}]; in-process "
            f"one-row predict: {in_process:.1f}/s)",
            flush=True,
        )
    print(machine_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
