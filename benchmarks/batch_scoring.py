"""Batch scoring: `predict` (TensorFlow fp32 and the fast model) and `predict-beam` with 1 and 2 workers, one run.

Scores the same Parquet file of ``--rows`` texts (sampled with replacement from
``--texts``, seed 0) each way and reports rows/s, measured from loading the
model to the finished output file, and the ratios: fast vs TensorFlow
``predict``, and Beam's scaling from 1 to 2 worker processes (DirectRunner,
``multi_processing``; each worker's fast model on cores // workers threads).
Beam runs need Apache Beam installed (see the README, batch scoring).

Usage (after `dvc repro export`):
    python benchmarks/batch_scoring.py --rows 100000 --workers 1 2
    python benchmarks/batch_scoring.py --rows 100000 --predict fast --workers 1 2   # without the slow TensorFlow run
Writes reports/benchmarks/batch_scoring.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from peru_sentiment import paths

ROOT = Path(__file__).resolve().parents[1]


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / paths.EXPORT)
    parser.add_argument("--texts", type=Path, default=ROOT / paths.split_file("test"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Beam worker processes; none: no Beam")
    parser.add_argument(
        "--predict",
        nargs="*",
        choices=["tensorflow", "fast"],
        default=["tensorflow", "fast"],
        help="`predict` runtimes to time; none: Beam only",
    )
    parser.add_argument("--chunk-rows", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=ROOT / paths.BENCHMARKS / "batch_scoring.json")
    args = parser.parse_args()

    from peru_sentiment.export.bundle import load_bundle
    from peru_sentiment.serving.predict_file import predict_file

    work = Path(tempfile.mkdtemp(prefix="batch-scoring-"))
    source = work / "input.parquet"
    texts = pd.read_parquet(args.texts, columns=["text"])
    texts.sample(n=args.rows, replace=True, random_state=0).reset_index(drop=True).to_parquet(source)
    cores = os.cpu_count() or 1

    def run_predict(runtime: str) -> None:
        bundle = load_bundle(args.bundle, runtime=runtime)
        predict_file(bundle, source, work / f"predict-{runtime}.parquet", "text", args.chunk_rows, progress=False)

    def run_beam(workers: int) -> None:
        from peru_sentiment.serving.predict_beam import predict_with_beam

        options = ["--direct_running_mode", "multi_processing", "--direct_num_workers", str(workers)]
        predict_with_beam(
            args.bundle,
            source,
            work / f"beam-{workers}.parquet",
            "text",
            pipeline_args=options,
            chunk_rows=args.chunk_rows,
            model_threads=max(1, cores // workers),
        )

    runtimes = {"tensorflow": "tensorflow", "fast": "auto"}
    runs = {f"predict {way}": lambda way=way: run_predict(runtimes[way]) for way in args.predict}
    runs |= {f"beam {workers} worker(s)": lambda workers=workers: run_beam(workers) for workers in args.workers}
    results = {"rows": args.rows, "cores": cores, "rows_per_s": {}}
    for name, run in runs.items():
        results["rows_per_s"][name] = round(args.rows / timed(run), 1)
        print(name, results["rows_per_s"][name], "rows/s", flush=True)
    speed = results["rows_per_s"]
    if {"tensorflow", "fast"} <= set(args.predict):
        results["fast_vs_tensorflow"] = round(speed["predict fast"] / speed["predict tensorflow"], 2)
    if 1 in args.workers and 2 in args.workers:
        results["beam_2_vs_1_workers"] = round(speed["beam 2 worker(s)"] / speed["beam 1 worker(s)"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{args.rows} rows, {cores} cores\n\n| way | rows/s |\n|---|---:|")
    for name, value in speed.items():
        print(f"| {name} | {value} |")
    print({key: value for key, value in results.items() if "_vs_" in key})


if __name__ == "__main__":
    main()
