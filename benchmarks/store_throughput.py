"""The scored-feedback store under load: throughput with the store on vs off, and nothing lost on SIGTERM.

For each store (SQLite under a temporary folder, and PostgreSQL in a throwaway
cluster on a Unix socket when its binaries are installed), in the same run:
the production server (gunicorn, the export bundle) with the store off, then
on, under ``--concurrency`` clients for ``--seconds`` (``measure`` of
serve_throughput.py, median of ``--repeats``); then a SIGTERM after
``--terminate-after`` seconds of load, and the acknowledged predictions (200s)
compared with the rows in the store.

Usage (after `dvc repro export`, or with any bundle):
    python benchmarks/store_throughput.py --seconds 8 --repeats 3
Writes reports/benchmarks/store_throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

import pandas as pd
from serve_throughput import measure

from peru_sentiment import paths
from peru_sentiment.serving.launch import start_server
from peru_sentiment.store.drain_check import sigterm_under_load, stored_ids
from peru_sentiment.store.local_postgres import LocalPostgres, postgres_binary

ROOT = Path(__file__).resolve().parents[1]


def run_store(name: str, url: str, args, texts: list[str], logs: Path) -> dict:
    result = {}
    for mode, store_url in (("off", ""), ("on", url)):
        process, server = start_server(args.bundle, logs / f"{name}_{mode}.log", SENTIMENT_STORE_URL=store_url)
        try:
            result[mode] = measure(process, server, texts, args.concurrency, args.seconds, args.repeats)
        finally:
            process.terminate()
            process.wait(timeout=60)
        print(name, mode, result[mode], flush=True)
    result["on_vs_off"] = round(result["on"]["predictions_per_s"] / result["off"]["predictions_per_s"], 3)
    before = len(stored_ids(url))
    process, server = start_server(args.bundle, logs / f"{name}_sigterm.log", SENTIMENT_STORE_URL=url)
    try:
        acknowledged, code = sigterm_under_load(
            process, server, texts, clients=args.concurrency, terminate_after_s=args.terminate_after
        )
    finally:
        process.kill()
    rows = stored_ids(url)
    result["sigterm"] = {
        "exit_code": code,
        "responses_200": len(acknowledged),
        "rows_stored": len(rows) - before,
        "acknowledged_missing": len(acknowledged - rows),
    }
    print(name, "sigterm", result["sigterm"], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / paths.EXPORT)
    parser.add_argument("--texts", type=Path, default=ROOT / paths.split_file("test"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--terminate-after", type=float, default=3.0, help="Seconds of load before SIGTERM.")
    parser.add_argument("--out", type=Path, default=ROOT / paths.BENCHMARKS / "store_throughput.json")
    args = parser.parse_args()

    texts = pd.read_parquet(args.texts)["text"].sample(n=2000, random_state=0, replace=True).tolist()
    logs = Path(tempfile.mkdtemp(prefix="store-throughput-"))
    results = {"concurrency": args.concurrency, "seconds": args.seconds, "repeats": args.repeats}
    results["sqlite"] = run_store("sqlite", f"sqlite:///{logs / 'predictions.sqlite'}", args, texts, logs)
    with contextlib.ExitStack() as stack:
        if postgres_binary("initdb"):
            server = stack.enter_context(LocalPostgres())
            results["postgresql"] = run_store("postgresql", server.url, args, texts, logs)
        else:
            print("PostgreSQL binaries not found: apt-get install postgresql (make system-deps)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.out}; server logs in {logs}\n")
    print("| store | predictions/s off | on | on/off | p99 ms off | on | SIGTERM: 200s | rows | missing |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("sqlite", "postgresql"):
        if name in results:
            r = results[name]
            cells = [
                name,
                f"{r['off']['predictions_per_s']:.1f}",
                f"{r['on']['predictions_per_s']:.1f}",
                f"{r['on_vs_off']:.2f}",
                f"{r['off']['p99_ms']:.0f}",
                f"{r['on']['p99_ms']:.0f}",
                r["sigterm"]["responses_200"],
                r["sigterm"]["rows_stored"],
                r["sigterm"]["acknowledged_missing"],
            ]
            print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
