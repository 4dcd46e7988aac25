"""The aspect heads on hand-annotated real texts: detection and polarity scores with their counts.

The annotations are a CSV with a ``text`` column and one ``aspect_<name>``
column per aspect (-1, 0, 1, or empty when the text does not mention it; see
``configs/annotation/aspects.md``); an optional ``--group`` column (e.g. the
domain) gets its own scores. Texts are prepared as the pipeline prepares them.

Usage (after `dvc repro train`):
    python benchmarks/aspect_annotations.py --annotations annotated.csv --group domain
Writes reports/benchmarks/aspect_annotations.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from peru_sentiment import paths
from peru_sentiment.evaluation.metrics import aspect_breakdown, aspect_metrics
from peru_sentiment.model.inputs import aspect_targets
from peru_sentiment.model.predictor import SentimentPredictor
from peru_sentiment.schema import aspect_column
from peru_sentiment.text.prepare import prepare_text

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=ROOT / paths.TRAINED)
    parser.add_argument("--group", help="a column of the annotations to break the scores down by")
    parser.add_argument("--out", type=Path, default=ROOT / paths.BENCHMARKS / "aspect_annotations.json")
    args = parser.parse_args()

    predictor = SentimentPredictor.load(args.model)
    aspects = list(predictor.aspects)
    annotations = pd.read_csv(args.annotations)
    missing = [column for column in ["text", *map(aspect_column, aspects)] if column not in annotations]
    if missing:
        raise SystemExit(f"error: {args.annotations} lacks the columns {missing}; see configs/annotation/aspects.md")
    texts = [prepare_text(text)[0] for text in annotations["text"].astype(str)]
    truth = aspect_targets(annotations.drop(columns="source", errors="ignore"), aspects)
    predicted = predictor.predict_with_aspects(texts)[1].argmax(axis=2)
    result = {"texts": len(texts), "model": str(args.model), **aspect_metrics(truth, predicted, aspects)}
    if args.group:
        result["by_group"] = aspect_breakdown(annotations[args.group].tolist(), truth, predicted)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{len(texts)} texts; results in {args.out}\n")
    print("| aspect | mentions | detected | precision | recall | F1 | polarity macro-F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for aspect, scores in result["per_aspect"].items():
        rates = [f"{scores[key]:.2f}" for key in ("precision", "recall", "f1")]
        cells = [aspect, scores["present"], scores["detected"], *rates, f"{scores['polarity']['macro_f1']:.2f}"]
        print("| " + " | ".join(map(str, cells)) + " |")
    detection = result["detection"]
    print(
        f"| all (micro) | {sum(s['present'] for s in result['per_aspect'].values())} | "
        f"{sum(s['detected'] for s in result['per_aspect'].values())} | {detection['precision']:.2f} | "
        f"{detection['recall']:.2f} | {detection['f1']:.2f} | {result['polarity']['macro_f1']:.2f} |"
    )


if __name__ == "__main__":
    main()
