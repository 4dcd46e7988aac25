"""Cheap proxies of how well a synthetic corpus transfers to real feedback.

For each synthetic corpus (a ``generate`` output) and each real labelled set
(a directory of ``<set>/<set>.csv`` files with columns ``text,label``):

- domain-classifier ROC AUC, real vs the synthetic texts in the set's
  languages (0.5 = indistinguishable);
- TF-IDF + logistic regression trained on the synthetic corpus, macro-F1 and
  per-class recall on the real set's test portion (70/30 stratified, seed 0,
  at most 1,500 rows);
- with ``--e5 DIR`` (a checkpoint built by ``peru-sentiment pretrained``): a
  linear probe (logistic regression) on frozen mean-pooled e5 embeddings,
  trained on ``--probe-train`` synthetic texts, tested on ``--probe-test``
  texts of each set's test portion;
- with ``--e5 DIR --fine-tune N``: e5 fine-tuned on N synthetic texts for
  ``--fine-tune-epochs`` (the pipeline's classifier and ``params.yaml: train``
  with the sweep's best hyperparameters when ``--best`` exists, no aspect
  heads), tested on the same texts as the probe. A frozen probe or TF-IDF
  says little about what fine-tuning learns from a corpus, so judge a
  generator change with this before a full pipeline run: 4,000 texts and 1
  epoch take 8-13 minutes per corpus on 2 cores and gave the same real-text
  mean as the default run's model (0.588 vs 0.583 on the five sets of the
  transfer protocol).

Macro-F1 averages over the classes present in the real set (a set without
neutral texts still counts neutral predictions as errors).

    .venv/bin/python benchmarks/generator_transfer.py --real ../shared/data/real \\
        --synthetic old=/tmp/old.parquet new=data/raw/synthetic.parquet --e5 /tmp/e5 --out /tmp/transfer.json
    .venv/bin/python benchmarks/generator_transfer.py --real ../shared/data/real --probe-only \\
        --synthetic old=/tmp/old.parquet new=data/raw/synthetic.parquet --e5 models/pretrained \\
        --fine-tune 4000 --probe-train 0 --probe-test 1500 --out /tmp/fine_tuned.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline

from peru_sentiment import paths
from peru_sentiment.evaluation.realism import domain_auc, same_languages
from peru_sentiment.schema import LABELS

log = logging.getLogger("generator_transfer")
ROOT = Path(__file__).resolve().parents[1]
TEST_SHARE, TEST_CAP, SEED = 0.3, 1500, 0


def real_test_portions(directory: Path) -> dict[str, pd.DataFrame]:
    """Each set's test portion: 30% stratified by label (seed 0), at most 1,500 rows."""
    portions = {}
    for path in sorted(directory.glob("*/*.csv")):
        frame = pd.read_csv(path, usecols=["text", "label", "language"]).dropna(subset=["text", "label"])
        frame = frame[frame["label"].isin(LABELS)]
        _, test = train_test_split(frame, test_size=TEST_SHARE, stratify=frame["label"], random_state=SEED)
        if len(test) > TEST_CAP:
            test, _ = train_test_split(test, train_size=TEST_CAP, stratify=test["label"], random_state=SEED)
        portions[path.stem] = test.reset_index(drop=True)
    if not portions:
        raise SystemExit(f"no <set>/<set>.csv files under {directory}")
    return portions


def scores(truth: pd.Series, predicted: np.ndarray) -> dict:
    present = [label for label in LABELS if (truth == label).any()]
    recall = recall_score(truth, predicted, labels=present, average=None, zero_division=0)
    return {
        "macro_f1": round(float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)), 4),
        "recall": {label: round(float(value), 4) for label, value in zip(present, recall, strict=True)},
    }


def tfidf_classifier(texts: pd.Series, labels: pd.Series) -> Pipeline:
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=100000)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 4), min_df=3, sublinear_tf=True, max_features=100000
                ),
            ),
        ]
    )
    model = Pipeline([("features", features), ("lr", LogisticRegression(max_iter=3000, class_weight="balanced"))])
    return model.fit(texts, labels)


class E5Embedder:
    """Mean-pooled, L2-normalised embeddings of a frozen e5 checkpoint ("query: " prefix).

    With ``cache``, embeddings are kept in that folder under a digest of the texts.
    """

    def __init__(self, checkpoint: Path, cache: Path | None = None, max_length: int = 128, batch_size: int = 64):
        from peru_sentiment.model.checkpoints import load_backbone, load_tokenizer

        self.tokenizer = load_tokenizer(str(checkpoint))
        self.backbone = load_backbone(str(checkpoint))
        self.max_length, self.batch_size, self.cache = max_length, batch_size, cache

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.cache is None:
            return self._embed(texts)
        digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        path = self.cache / f"{digest}.npy"
        if not path.is_file():
            self.cache.mkdir(parents=True, exist_ok=True)
            np.save(path, self._embed(texts))
        return np.load(path)

    def _embed(self, texts: list[str]) -> np.ndarray:
        log.info("embedding %d texts", len(texts))
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = [f"query: {text}" for text in texts[start : start + self.batch_size]]
            encoded = [e.ids[: self.max_length] for e in self.tokenizer.encode_batch(batch)]
            width = max(len(ids) for ids in encoded)
            ids = np.zeros((len(encoded), width), dtype="int32")
            mask = np.zeros_like(ids)
            for row, piece in enumerate(encoded):
                ids[row, : len(piece)], mask[row, : len(piece)] = piece, 1
            hidden = np.asarray(
                self.backbone({"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)})[
                    "sequence_output"
                ]
            )
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out)


def fine_tuned_learner(corpus: pd.DataFrame, checkpoint: Path, rows: int, epochs: int, best: Path):
    """e5 fine-tuned on `rows` texts of `corpus` (stratified), validated on 1,000 others."""
    from peru_sentiment.config import load_params
    from peru_sentiment.training.adaptation import BertLearner
    from peru_sentiment.training.retrain import best_train_params
    from peru_sentiment.training.trainer import sample_rows

    params = load_params(ROOT / paths.PARAMS)
    train_params = best_train_params(params, best)
    aspects = train_params.aspects.model_copy(update={"enabled": False})
    train_params = train_params.model_copy(update={"epochs": epochs, "aspects": aspects})
    train = sample_rows(corpus, rows, SEED)
    validation = sample_rows(corpus[~corpus["feedback_id"].isin(train["feedback_id"])], 1000, SEED)
    learner = BertLearner(str(checkpoint), train_params, params.model.text_prefix)
    log.info("fine-tuning on %d texts for %d epoch(s)", len(train), epochs)
    learner.fit(train, validation)
    return learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, required=True, help="directory of <set>/<set>.csv real labelled sets")
    parser.add_argument("--synthetic", nargs="+", required=True, help="NAME=PATH of generated parquet corpora")
    parser.add_argument("--e5", type=Path, help="e5 checkpoint directory for the linear probe (optional)")
    parser.add_argument("--cache", type=Path, help="folder that keeps e5 embeddings between runs")
    parser.add_argument("--probe-train", type=int, default=4000, help="0: no frozen-e5 probe")
    parser.add_argument("--probe-test", type=int, default=500)
    parser.add_argument("--train-rows", type=int, default=10000, help="synthetic rows the TF-IDF model trains on")
    parser.add_argument("--auc-rows", type=int, default=1000, help="texts per side of the domain classifier")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    parser.add_argument("--probe-only", action="store_true", help="skip the domain AUC and the TF-IDF model")
    parser.add_argument("--fine-tune", type=int, default=0, help="with --e5: fine-tune on this many texts (0: off)")
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--best", type=Path, default=ROOT / paths.BEST_HPARAMS, help="sweep's best")
    args = parser.parse_args()
    if args.fine_tune and not args.e5:
        parser.error("--fine-tune needs --e5 (the checkpoint to fine-tune)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    real = real_test_portions(args.real)
    embedder = E5Embedder(args.e5, args.cache) if args.e5 and args.probe_train else None
    probe_tests = {name: test.sample(min(args.probe_test, len(test)), random_state=SEED) for name, test in real.items()}
    real_embeddings = {name: embedder(list(test["text"])) for name, test in probe_tests.items()} if embedder else {}
    results: dict = {}
    for spec in args.synthetic:
        corpus_name, path = spec.split("=", 1)
        corpus = pd.read_parquet(path)
        started = time.perf_counter()
        fine_tuned = (
            fine_tuned_learner(corpus, args.e5, args.fine_tune, args.fine_tune_epochs, args.best)
            if args.fine_tune
            else None
        )
        corpus = corpus.sample(min(len(corpus), args.train_rows), random_state=SEED)
        tfidf = None if args.probe_only else tfidf_classifier(corpus["text"], corpus["label"])
        probe = None
        if embedder:
            train = pd.concat(
                rows.sample(min(len(rows), args.probe_train // 3), random_state=SEED)
                for _, rows in corpus.groupby("label")
            )
            probe = LogisticRegression(max_iter=3000, class_weight="balanced", C=4.0)
            probe.fit(embedder(list(train["text"])), train["label"])
        entry = {}
        for name, test in real.items():
            entry[name] = {}
            if tfidf is not None:
                same = corpus["language"].isin(same_languages(corpus, test["language"]))
                auc = domain_auc(corpus.loc[same, "text"], test["text"], max_rows=args.auc_rows, seed=SEED)
                entry[name] = {"domain_auc": round(auc, 4), "tfidf": scores(test["label"], tfidf.predict(test["text"]))}
            if probe is not None:
                entry[name]["e5_probe"] = scores(probe_tests[name]["label"], probe.predict(real_embeddings[name]))
            if fine_tuned is not None:
                probabilities = fine_tuned.predict_proba(probe_tests[name])
                entry[name]["e5_fine_tuned"] = scores(
                    probe_tests[name]["label"], np.asarray(LABELS)[probabilities.argmax(1)]
                )
            log.info("%s vs %s: %s", corpus_name, name, entry[name])
        for method in ("tfidf", "e5_probe", "e5_fine_tuned"):
            values = [entry[name][method]["macro_f1"] for name in real if method in entry[name]]
            if values:
                entry[f"mean_{method}_macro_f1"] = round(float(np.mean(values)), 4)
        if tfidf is not None:
            entry["mean_domain_auc"] = round(float(np.mean([entry[name]["domain_auc"] for name in real])), 4)
        entry["seconds"] = round(time.perf_counter() - started, 1)
        results[corpus_name] = entry
    args.out.write_text(json.dumps(results, indent=2))
    for corpus_name, entry in results.items():
        print(corpus_name, {k: v for k, v in entry.items() if k.startswith("mean")})


if __name__ == "__main__":
    main()
