"""Prediction server under load: the fast runtime against TensorFlow fp32 and the naive way, on loopback.

Starts the production server (``gunicorn -c serve/gunicorn.conf.py``, the
export bundle, micro-batching) twice, predicting with the bundle's fast model
(OpenVINO, ``fast``) and with its TensorFlow SavedModel (``tensorflow``), and,
in the same run, a naive server that calls ``model.predict`` on the trained
Keras model once per request with no batching.
An async client (aiohttp) keeps ``concurrency`` requests of one typical text
(sampled from the test split) in flight for ``--seconds`` and records each
latency; every measurement is repeated and the median run is reported with
predictions/s, p50/p95/p99 latency, errors and the server's CPU use. The
model's FLOP/s are compared with the float32 matmul peak measured in the same run.

Usage (after `dvc repro export`):
    python benchmarks/serve_throughput.py --concurrency 1 4 16 32 --seconds 10 --repeats 3
    (--modes fast tensorflow: without the naive server)
Writes reports/benchmarks/serve_throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from peru_sentiment import paths

ROOT = Path(__file__).resolve().parents[1]
# Server modes: the production server with the bundle's fast model or its SavedModel, and the naive server.
MODES = {"fast": "fast", "tensorflow": "tensorflow", "naive": "tensorflow"}


def speedups(mode: dict, reference: dict) -> dict:
    """Predictions/s ratio and both p99s at each concurrency measured in both modes."""
    return {
        c: {
            "ratio": round(mode[c]["predictions_per_s"] / reference[c]["predictions_per_s"], 2),
            "p99_ms": [mode[c]["p99_ms"], reference[c]["p99_ms"]],
        }
        for c in sorted(set(mode) & set(reference), key=int)
    }


def create_naive_app():
    """The naive server: one ``keras.Model.predict`` per request, no batching, no length sorting."""
    from flask import Flask, jsonify, request

    from peru_sentiment.model.inputs import pad_batch
    from peru_sentiment.model.predictor import SentimentPredictor
    from peru_sentiment.text.prepare import prepare_text

    predictor = SentimentPredictor.load(Path(os.environ["NAIVE_MODEL_DIR"]))
    encoder = predictor.encoder
    app = Flask(__name__)

    @app.get("/readyz")
    def ready():
        return jsonify({"status": "ready"})

    @app.post("/v1/predict")
    def predict():
        text = prepare_text(request.get_json()["text"])[0]
        probabilities = predictor.model.predict(pad_batch(encoder.encode([text]), encoder.pad_id), verbose=0)[0]
        return jsonify({"label": predictor.labels[int(probabilities.argmax())]})

    return app


async def _load(url: str, texts: list[str], concurrency: int, seconds: float) -> tuple[list[float], int, int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker(offset: int) -> None:
            nonlocal errors
            index = offset
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    async with session.post(f"{url}/v1/predict", json={"text": texts[index % len(texts)]}) as reply:
                        await reply.read()
                        ok = reply.status == 200
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1
                index += concurrency

        await asyncio.gather(*(worker(offset) for offset in range(concurrency)))
    return latencies, errors, len(latencies) + errors


def _server_cpu_seconds(process: subprocess.Popen) -> float:
    import psutil

    parent = psutil.Process(process.pid)
    return sum(p.cpu_times().user + p.cpu_times().system for p in [parent, *parent.children(recursive=True)])


def measure(process, url, texts, concurrency, seconds, repeats) -> dict:
    runs = []
    asyncio.run(_load(url, texts, concurrency, min(seconds, 3)))  # warm connections and caches
    for _ in range(repeats):
        cpu_before, start = _server_cpu_seconds(process), time.perf_counter()
        latencies, errors, sent = asyncio.run(_load(url, texts, concurrency, seconds))
        wall = time.perf_counter() - start
        cpu = (_server_cpu_seconds(process) - cpu_before) / wall
        percentiles = np.percentile(latencies, [50, 95, 99]) * 1000 if latencies else [float("nan")] * 3
        p50, p95, p99 = percentiles
        runs.append(
            {
                "predictions_per_s": len(latencies) / wall,
                "p50_ms": p50,
                "p95_ms": p95,
                "p99_ms": p99,
                "errors": errors,
                "requests": sent,
                "server_cores_busy": cpu,
            }
        )
    median = sorted(runs, key=lambda run: run["predictions_per_s"])[len(runs) // 2]
    return {key: round(float(value), 2) for key, value in median.items()} | {
        "runs_predictions_per_s": [round(run["predictions_per_s"], 2) for run in runs]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / paths.EXPORT)
    parser.add_argument("--trained", type=Path, default=ROOT / paths.TRAINED, help="Keras model for the naive way.")
    parser.add_argument("--checkpoint-config", type=Path, default=ROOT / paths.PRETRAINED / "config.json")
    parser.add_argument("--texts", type=Path, default=ROOT / paths.split_file("test"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--naive-concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / paths.BENCHMARKS / "serve_throughput.json")
    args = parser.parse_args()

    from train_throughput import matmul_peak

    from peru_sentiment.export.bundle import load_bundle
    from peru_sentiment.serving.launch import start_server

    texts = pd.read_parquet(args.texts)["text"].sample(n=2000, random_state=0).tolist()
    bundle = load_bundle(args.bundle)
    tokens = float(np.mean([len(ids) for ids in bundle.encoder.encode(texts)]))
    config = json.loads(args.checkpoint_config.read_text())
    hidden, layers, ff = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    flop_per_text = tokens * layers * 2 * (4 * hidden**2 + 2 * hidden * ff)
    peak = matmul_peak()
    del bundle

    results = {
        "tokens_per_text": round(tokens, 1),
        "gflop_per_text": round(flop_per_text / 1e9, 3),
        "peak_gflop_s": round(peak / 1e9, 1),
        "cores": os.cpu_count(),
        **{mode: {} for mode in args.modes},
    }
    logs = Path(tempfile.mkdtemp(prefix="serve-throughput-"))  # the servers' access logs, for a look afterwards
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for mode in args.modes:
        levels = args.naive_concurrency if mode == "naive" else args.concurrency
        environment = {"NAIVE_MODEL_DIR": str(args.trained)} if mode == "naive" else {}
        environment["SENTIMENT_MODEL_RUNTIME"] = MODES[mode]
        app = (
            ["--pythonpath", str(ROOT / "benchmarks"), "serve_throughput:create_naive_app()"] if mode == "naive" else []
        )
        process, url = start_server(args.bundle, logs / f"serve_{mode}.log", extra_args=app, **environment)
        try:
            for concurrency in levels:
                result = measure(process, url, texts, concurrency, args.seconds, args.repeats)
                result["share_of_peak"] = round(result["predictions_per_s"] * flop_per_text / peak, 3)
                results[mode][str(concurrency)] = result
                print(mode, concurrency, result, flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)
    for mode, reference in (("fast", "tensorflow"), ("tensorflow", "naive")):
        if mode in results and reference in results:
            results[f"speedup_{mode}_vs_{reference}"] = speedups(results[mode], results[reference])
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.out}; server logs in {logs}")

    print(
        f"\n{tokens:.1f} tokens per text, {flop_per_text / 1e9:.2f} GFLOP per prediction, "
        f"fp32 peak {peak / 1e9:.0f} GFLOP/s\n"
    )
    print("| server | concurrency | predictions/s | p50 ms | p95 ms | p99 ms | errors | server cores busy | of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in args.modes:
        for concurrency, r in results[mode].items():
            cells = [
                mode,
                concurrency,
                f"{r['predictions_per_s']:.1f}",
                f"{r['p50_ms']:.0f}",
                f"{r['p95_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                r["errors"],
                f"{r['server_cores_busy']:.2f}",
                f"{r['share_of_peak']:.0%}",
            ]
            print("| " + " | ".join(map(str, cells)) + " |")
    for key in (key for key in results if key.startswith("speedup_")):
        print(f"\n{key}: {results[key]}")


if __name__ == "__main__":
    main()
