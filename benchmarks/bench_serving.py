"""Serving latency: one-row ``predict`` of a fitted pipeline against the bare work.

The model is ``make_multimodal_pipeline(image="image", audio="audio")``
fitted on the shipped sample (``mmsk.datasets.load_sample``, 300 pairs).
The bare work for one row is what the prediction cannot avoid, written by
hand with the same libraries: decode the PNG with Pillow and resize it,
read the WAV with soundfile, resample it with librosa (soxr) and compute
the same librosa features, then one forward pass of each fitted net's
module (``nets_``: the ``n_estimators`` members of the ensemble) under
``torch.no_grad`` and the average of their probabilities. Both give the
same numbers (checked before timing).

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
   127.0.0.1 with ``mmsk serve``'s HTTP protocol (``TCP_NODELAY`` on each
   connection), one record per request (media as base64), from 1, 4 and 16
   client threads, each with one keep-alive client (``--client``:
   :mod:`http.client` by default, or httpx, about 0.4 ms slower), next to
   the in-process one-row rate on the same records (their bytes, measured
   in each round before the servers); beside it, interleaved with it (rounds
   repeated: median and [min, max]), the floor, a trivial FastAPI endpoint
   on the same route that does no work, and the same app under uvicorn's
   default protocol, as it ran before (Nagle on: each answer waits 40 ms
   for the client's delayed ACK). Each server runs in its own spawned
   process, as ``mmsk serve`` does, so the client threads do not share its
   interpreter lock; its socket is bound as uvicorn binds those of
   ``--workers`` (proto 0, which asyncio leaves with Nagle on).

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
import json
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
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
    inputs = {f"x{i}": torch.from_numpy(blocks[name]) for i, name in enumerate(fusion.modalities_)}
    mask = torch.ones(1, len(blocks), dtype=torch.bool)
    probabilities = []
    with torch.no_grad():  # each member of the ensemble (n_estimators), then their average
        for net in fusion.__dict__.get("nets_") or [fusion.net_]:
            logits = net.module_(mask=mask, **inputs)
            probabilities.append(torch.softmax(logits, dim=-1).numpy().astype(np.float64))
    return np.mean(probabilities, axis=0)


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


#: The servers of section 3: name -> (what runs, uvicorn's HTTP protocol).
SERVERS = {
    "mmsk app": ("model", "mmsk"),
    "trivial endpoint": ("trivial", "mmsk"),
    "mmsk app, uvicorn's default protocol": ("model", "default"),
}


def trivial_app():
    """A FastAPI app with the same route and a sync endpoint that does no work: the floor."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict) -> dict:
        return {"predictions": [len(body["records"])]}

    return app


def server_process(model_bytes: bytes, what: str, protocol: str, torch_threads: int, conn) -> None:
    """Run one server in this (spawned) process until terminated; send its port on ``conn``.

    The socket is bound here, before uvicorn starts, as uvicorn binds the
    sockets of ``mmsk serve --workers N`` (``socket.socket(AF_INET,
    SOCK_STREAM)``, proto 0): on such a socket asyncio leaves Nagle's
    algorithm on, which ``mmsk serve``'s protocol turns off.
    """
    import pickle

    import uvicorn

    from mmsk.serve import _HTTP_PROTOCOL, create_app

    torch.set_num_threads(torch_threads)
    threadpool_limits(1)
    app = create_app(pickle.loads(model_bytes)) if what == "model" else trivial_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    http = _HTTP_PROTOCOL if protocol == "mmsk" else "auto"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", http=http))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            conn.send(None)
            return
        time.sleep(0.02)
    conn.send(sock.getsockname()[1])
    thread.join()


def start_servers(model, torch_threads: int) -> tuple[dict[str, int], list]:
    """Start the servers of :data:`SERVERS`, each in its own process; return their ports."""
    import multiprocessing
    import pickle

    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as `mmsk serve` is
    model_bytes = pickle.dumps(model)
    ports, processes = {}, []
    for name, (what, protocol) in SERVERS.items():
        parent, child = context.Pipe()
        args = (model_bytes, what, protocol, torch_threads, child)
        process = context.Process(target=server_process, args=args, daemon=True)
        process.start()
        processes.append(process)
        if not parent.poll(120) or (port := parent.recv()) is None:
            raise RuntimeError(f"the server {name!r} did not start")
        ports[name] = port
    return ports, processes


class StdlibClient:
    """A keep-alive JSON client on :mod:`http.client`: the lightest a Python client gets.

    httpx costs about 0.4 ms more per request on this machine (its
    transport and model layers), which a benchmark of the server would
    count as the server's; ``--client httpx`` measures with it.
    """

    def __init__(self, port: int):
        import http.client

        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, route: str, payload: dict) -> tuple[int, bytes]:
        body = json.dumps(payload).encode()  # http.client sends head and body in one write
        headers = {"Content-Type": "application/json"}
        self.connection.request("POST", route, body=body, headers=headers)
        answer = self.connection.getresponse()
        return answer.status, answer.read()

    def close(self) -> None:
        self.connection.close()


class HttpxClient:
    """The same with one keep-alive :class:`httpx.Client`."""

    def __init__(self, port: int):
        import httpx

        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def post(self, route: str, payload: dict) -> tuple[int, bytes]:
        answer = self.client.post(route, json=payload)
        return answer.status_code, answer.content

    def close(self) -> None:
        self.client.close()


CLIENTS = {"stdlib": StdlibClient, "httpx": HttpxClient}


def requests_per_second(
    port: int, records: list[dict], clients: int, seconds: float, kind: str = "stdlib"
) -> float:
    """Requests/s from ``clients`` threads, each with one keep-alive client, for ``seconds``.

    Each thread sends one record per request and checks every answer.
    """
    stop = time.monotonic() + seconds
    counts = [0] * clients

    def client(c: int) -> None:
        http = CLIENTS[kind](port)
        try:
            k = c
            while time.monotonic() < stop:
                status, body = http.post("/predict", {"records": [records[k % len(records)]]})
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
                counts[c] += 1
                k += clients
        finally:
            http.close()

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return sum(counts) / (time.monotonic() - start)


def in_process_rate(model, rows: list, seconds: float) -> float:
    """One-row ``model.predict`` calls per second, back to back, for ``seconds``."""
    stop, k = time.monotonic() + seconds, 0
    start = time.monotonic()
    while time.monotonic() < stop:
        model.predict(rows[k % len(rows)])
        k += 1
    return k / (time.monotonic() - start)


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
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="stdlib",
        help="HTTP client of the client threads: http.client (default) or httpx",
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

    needed = ("fastapi", "uvicorn", *(("httpx",) if args.client == "httpx" else ()))
    missing = [name for name in needed if find_spec(name) is None]
    if missing:  # pragma: no cover - the serve extra is missing
        print(f"server skipped: {', '.join(missing)} not installed")
        return 0
    records = [
        {
            "image": {"base64": base64.b64encode(Path(r.image).read_bytes()).decode()},
            "audio": {"base64": base64.b64encode(Path(r.audio).read_bytes()).decode()},
        }
        for r in frame.head(50).itertuples()
    ]
    # the rows the server predicts on: one record each, its files' bytes (not paths)
    byte_rows = [
        pd.DataFrame({name: [base64.b64decode(r[name]["base64"])] for name in ("image", "audio")})
        for r in records
    ]
    print("starting the servers (one process each):", ", ".join(SERVERS), flush=True)
    ports, processes = start_servers(model, args.torch_threads)
    counts = (1, 4, 16)
    rates: dict[tuple[str, int], list[float]] = {(n, c): [] for n in SERVERS for c in counts}
    local: list[float] = []  # in-process one-row predict on the same records, each round
    try:
        for port in ports.values():
            requests_per_second(port, records, 1, 0.5, args.client)  # warm up
        print(
            f"server: {server_rounds} round(s) of 1, 4, 16 clients x {len(SERVERS)} servers "
            f"(interleaved), {server_seconds:g} s each, client {args.client}:",
            flush=True,
        )
        for r in range(server_rounds):
            for clients in counts:
                if clients == 1:
                    local.append(in_process_rate(model, byte_rows, server_seconds))
                    print(
                        f"  round {r + 1}: in-process one-row predict: {local[-1]:7.1f}/s",
                        flush=True,
                    )
                for name, port in ports.items():
                    rate = requests_per_second(port, records, clients, server_seconds, args.client)
                    rates[name, clients].append(rate)
                    print(
                        f"  round {r + 1}: {clients:>2} clients, {name}: {rate:7.1f} requests/s",
                        flush=True,
                    )
    finally:
        for process in processes:
            process.terminate()
            process.join(timeout=10)
    in_process = statistics.median(local)
    print(
        f"in-process one-row predict (the same records): {in_process:.1f}/s (median of "
        f"{len(local)}, [{min(local):.1f}, {max(local):.1f}]; section 1: "
        f"{1 / timings['mmsk predict'].median:.1f}/s)",
        flush=True,
    )
    for clients in counts:
        for name in SERVERS:
            values = rates[name, clients]
            print(
                f"server, {clients:>2} concurrent clients, {name}: "
                f"{statistics.median(values):7.1f} requests/s (median of {len(values)}, "
                f"[{min(values):.1f}, {max(values):.1f}])",
                flush=True,
            )
    single = statistics.median(rates["mmsk app", 1])
    floor = statistics.median(rates["trivial endpoint", 1])
    print(
        f"one client: in-process rate / server rate = {in_process / single:.2f} (target <= 2); "
        f"per request {1e3 / single:.2f} ms = predict {1e3 / in_process:.2f} ms + HTTP "
        f"{1e3 / single - 1e3 / in_process:.2f} ms, of which the trivial endpoint's floor "
        f"{1e3 / floor:.2f} ms",
        flush=True,
    )
    print(machine_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
