"""What the aspect heads cost the prediction server (issue 12): the exported bundle against the same
trained weights without the heads, in interleaved pairs on the same machine.

Exports the trained model's overall head alone (``classifier.head_model``) with the export code
(``bundle.write_bundle``, its fast OpenVINO model too; no accuracy gate, which is the same
network's), then starts the production server on each bundle in turn
(``benchmarks/serve_throughput.py``'s client and measurement) and reports each pair's
predictions/s, their ratio and the median ratio. Interleaving matters: the machine is shared
and its speed drifts between runs by more than the difference measured.

Usage (after `dvc repro export`):
    python benchmarks/serve_aspects_cost.py --pairs 6 --concurrency 16 --seconds 10
Writes reports/benchmarks/serve_aspects_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import pandas as pd

from peru_sentiment import paths

ROOT = Path(__file__).resolve().parents[1]


def export_without_heads(trained: Path, bundle: Path, out_root: Path) -> Path:
    """The trained model's overall head alone, exported like `bundle` (same preprocessing and settings)."""
    from peru_sentiment.export.bundle import (
        DISTRIBUTION_FILE,
        MANIFEST_FILE,
        MODEL_FILE,
        PREPROCESSING_FILE,
        write_bundle,
    )
    from peru_sentiment.model.classifier import OVERALL_OUTPUT, head_model
    from peru_sentiment.model.predictor import SentimentPredictor

    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    if "fast_model" not in manifest:
        raise SystemExit(f"{bundle} has no fast model; export it with export.fast_runtime: openvino")
    predictor = SentimentPredictor.load(trained)
    about = json.loads((bundle / MODEL_FILE).read_text())
    return write_bundle(
        head_model(predictor.network, OVERALL_OUTPUT),
        predictor.encoder.tokenizer,
        out_root / f"{bundle.name}-without-heads",
        labels=predictor.labels,
        checkpoint=about["checkpoint"],
        explain_steps=about["explain_steps"],
        preprocessing=json.loads((bundle / PREPROCESSING_FILE).read_text()),
        training_distribution=json.loads((bundle / DISTRIBUTION_FILE).read_text()),
        fast_model_check=lambda saved_model, fast_model: {
            "runtime": "openvino",
            "precision": manifest["fast_model"]["precision"],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / paths.EXPORT)
    parser.add_argument("--trained", type=Path, default=ROOT / paths.TRAINED)
    parser.add_argument("--texts", type=Path, default=ROOT / paths.split_file("test"))
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / paths.BENCHMARKS / "serve_aspects_cost.json")
    args = parser.parse_args()

    from serve_throughput import measure

    from peru_sentiment.export.bundle import resolve_bundle
    from peru_sentiment.serving.launch import start_server

    with_heads = resolve_bundle(args.bundle)
    texts = pd.read_parquet(args.texts)["text"].sample(n=2000, random_state=0).tolist()
    pairs = []
    with tempfile.TemporaryDirectory(prefix="serve-aspects-cost-") as folder:  # the head-less bundle: ~1 GB
        scratch = Path(folder)
        without_heads = export_without_heads(args.trained, with_heads, scratch)

        def predictions_per_s(bundle: Path) -> dict:
            process, url = start_server(bundle, scratch / "server.log", SENTIMENT_MODEL_RUNTIME="fast")
            try:
                return measure(process, url, texts, args.concurrency, args.seconds, repeats=1)
            finally:
                process.terminate()
                process.wait(timeout=60)

        for pair in range(args.pairs):
            with_aspects, without = predictions_per_s(with_heads), predictions_per_s(without_heads)
            ratio = with_aspects["predictions_per_s"] / without["predictions_per_s"]
            pairs.append({"with_aspects": with_aspects, "without": without, "ratio": round(ratio, 3)})
            print(
                f"pair {pair + 1}: with aspects {with_aspects['predictions_per_s']:.1f}/s "
                f"(p99 {with_aspects['p99_ms']:.0f} ms), without {without['predictions_per_s']:.1f}/s "
                f"(p99 {without['p99_ms']:.0f} ms): {ratio:.3f}",
                flush=True,
            )
    result = {
        "bundle": with_heads.name,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "pairs": pairs,
        "median_ratio": round(statistics.median(pair["ratio"] for pair in pairs), 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"median ratio with / without aspects: {result['median_ratio']}; results in {args.out}")


if __name__ == "__main__":
    main()
