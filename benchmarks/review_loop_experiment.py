"""Does the review loop pay? Margin sampling vs random sampling of texts to review, on a real labelled set.

Simulated reviewers: the real set's own labels. Cheap learner, said plainly:
the project's TF-IDF + class-balanced logistic regression baseline
(``evaluation.baselines.tfidf_pipeline``), not the BERT model, so that each of
the many refits takes a second on 2 cores. Start: trained on synthetic
feedback only (``generate`` with ``--synthetic-rows``). The real set is split
(stratified, seeded) into a review pool and a held-out part; each round
reviews ``--per-round`` pool texts, chosen by the smallest top-two margin of
the current model or at random, adds them to the training rows and refits.
Macro-F1 on the held-out part after each round is the curve; random sampling
is averaged over ``--random-seeds`` seeds.

Usage:
    python benchmarks/review_loop_experiment.py --real path/to/real_set.csv   # columns text, label
Writes reports/benchmarks/review_loop.json and review_loop.png, prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from peru_sentiment import paths
from peru_sentiment.config import load_params, load_yaml
from peru_sentiment.data import synthetic
from peru_sentiment.evaluation.baselines import tfidf_pipeline
from peru_sentiment.regions import load_regions
from peru_sentiment.schema import LABELS
from peru_sentiment.text.prepare import prepare_text

ROOT = Path(__file__).resolve().parents[1]


def synthetic_rows(rows: int) -> pd.DataFrame:
    params = load_params(ROOT / paths.PARAMS).generate.model_copy(update={"rows": rows})
    frame = synthetic.generate_feedback(
        params,
        load_regions(ROOT / paths.REGIONS),
        synthetic.load_phrasebook(ROOT / paths.PHRASEBOOK, ROOT / paths.STYLES),
        load_yaml(ROOT / paths.VOCABULARY),
        progress=False,
    )
    return frame[["text", "label"]]


def curve(
    strategy: str,
    base: pd.DataFrame,
    pool: pd.DataFrame,
    held_out: pd.DataFrame,
    rounds: int,
    per_round: int,
    seed: int,
) -> list[float]:
    rng = np.random.default_rng(seed)
    reviewed = np.zeros(len(pool), dtype=bool)
    scores = []
    for round_number in range(rounds + 1):
        training = pd.concat([base, pool[reviewed]], ignore_index=True)
        model = tfidf_pipeline(seed).fit(training["text"], training["label"])
        scores.append(float(f1_score(held_out["label"], model.predict(held_out["text"]), average="macro")))
        if round_number == rounds:
            break
        candidates = np.flatnonzero(~reviewed)
        if strategy == "margin":
            probabilities = np.sort(model.predict_proba(pool["text"].iloc[candidates]), axis=1)
            chosen = candidates[np.argsort(probabilities[:, -1] - probabilities[:, -2], kind="stable")[:per_round]]
        else:
            chosen = rng.choice(candidates, size=per_round, replace=False)
        reviewed[chosen] = True
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, required=True, help="CSV with text and label (negative/neutral/positive).")
    parser.add_argument("--synthetic-rows", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--held-out", type=float, default=0.3)
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / paths.BENCHMARKS / "review_loop.json")
    args = parser.parse_args()

    real = pd.read_csv(args.real)[["text", "label"]].dropna()
    real = real[real["label"].isin(LABELS)]
    real["text"] = [prepare_text(text)[0] for text in real["text"]]
    pool, held_out = train_test_split(real, test_size=args.held_out, stratify=real["label"], random_state=0)
    base = synthetic_rows(args.synthetic_rows)
    base["text"] = [prepare_text(text)[0] for text in base["text"]]
    pool, held_out = pool.reset_index(drop=True), held_out.reset_index(drop=True)

    margin = curve("margin", base, pool, held_out, args.rounds, args.per_round, seed=0)
    randoms = [
        curve("random", base, pool, held_out, args.rounds, args.per_round, seed) for seed in range(args.random_seeds)
    ]
    random_mean = np.mean(randoms, axis=0).tolist()
    reviewed = [n * args.per_round for n in range(args.rounds + 1)]
    result = {
        "real_set": args.real.name,
        "pool_rows": len(pool),
        "held_out_rows": len(held_out),
        "synthetic_rows": len(base),
        "learner": "TF-IDF (word 1-2 grams) + class-balanced logistic regression",
        "reviewed": reviewed,
        "margin_macro_f1": [round(v, 4) for v in margin],
        "random_macro_f1_mean": [round(v, 4) for v in random_mean],
        "random_macro_f1_runs": [[round(v, 4) for v in run] for run in randoms],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(reviewed, margin, marker="o", label="margin sampling")
    axis.plot(reviewed, random_mean, marker="s", label=f"random (mean of {args.random_seeds})")
    axis.set(xlabel="reviewed real texts", ylabel="macro-F1 on held-out real texts", title=args.real.stem)
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out.with_suffix(".png"), dpi=120)
    print(f"results in {args.out}\n\n| reviewed | margin | random (mean) |\n|---:|---:|---:|")
    for n, m, r in zip(reviewed, margin, random_mean, strict=True):
        print(f"| {n} | {m:.3f} | {r:.3f} |")


if __name__ == "__main__":
    main()
