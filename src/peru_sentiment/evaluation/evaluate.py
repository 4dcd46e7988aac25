"""The ``evaluate`` stage: the model and the baselines on the same test split, plus external sets."""

from __future__ import annotations

import logging

import pandas as pd

from peru_sentiment.config import EvaluateParams
from peru_sentiment.evaluation.baselines import run_baselines
from peru_sentiment.evaluation.metrics import breakdown, calibration, classification_metrics
from peru_sentiment.model.predictor import SentimentPredictor
from peru_sentiment.schema import LABEL_TO_ID

log = logging.getLogger(__name__)


def score_split(
    predictor: SentimentPredictor, frame: pd.DataFrame, params: EvaluateParams
) -> tuple[dict, pd.DataFrame]:
    """Metrics, calibration and breakdowns of the model on one split, and its predictions."""
    probabilities = predictor.predict_proba(frame["text"].tolist())
    predicted = [predictor.labels[i] for i in probabilities.argmax(axis=1)]
    result = classification_metrics(frame["label"], predicted, predictor.labels)
    result["calibration"] = calibration(
        probabilities, frame["label"].map(LABEL_TO_ID).to_numpy(), params.calibration_bins
    )
    result["breakdowns"] = {
        column: breakdown(frame, column, frame["label"], predicted) for column in params.breakdowns if column in frame
    }
    keep = [
        c
        for c in ("feedback_id", "text", "label", "language", "region", "channel", "timestamp", "source")
        if c in frame
    ]
    predictions = frame[keep].assign(
        predicted=predicted,
        confidence=probabilities.max(axis=1),
        **{f"p_{label}": probabilities[:, i] for i, label in enumerate(predictor.labels)},
    )
    return result, predictions


def evaluate_model(
    predictor: SentimentPredictor, splits: dict[str, pd.DataFrame], params: EvaluateParams
) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    """(headline metrics for DVC, the full evaluation, predictions per evaluated split)."""
    log.info("scoring the model on %d test texts", len(splits["test"]))
    test_result, test_predictions = score_split(predictor, splits["test"], params)
    log.info("training and scoring the baselines")
    baselines = {
        name: classification_metrics(splits["test"]["label"], predicted)
        for name, predicted in run_baselines(splits["train"], splits["validation"], splits["test"]).items()
    }
    full = {"test": {"model": test_result, "baselines": baselines}}
    predictions = {"test": test_predictions}
    headline = {
        "test": {
            "macro_f1": test_result["macro_f1"],
            "accuracy": test_result["accuracy"],
            "weighted_f1": test_result["weighted_f1"],
            "ece": test_result["calibration"]["ece"],
            **{f"{name}_macro_f1": result["macro_f1"] for name, result in baselines.items()},
        }
    }
    external = splits.get("external")
    if external is not None and len(external):
        for source, rows in external.groupby("source"):
            log.info("scoring external set %s (%d texts)", source, len(rows))
            rows = rows.reset_index(drop=True)
            result, source_predictions = score_split(predictor, rows, params)
            source_baselines = {
                name: classification_metrics(rows["label"], predicted)
                for name, predicted in run_baselines(splits["train"], splits["validation"], rows).items()
            }
            full[f"external/{source}"] = {"model": result, "baselines": source_baselines}
            predictions[f"external_{source}"] = source_predictions
            headline[f"external/{source}"] = {
                "macro_f1": result["macro_f1"],
                "accuracy": result["accuracy"],
                **{f"{name}_macro_f1": metrics["macro_f1"] for name, metrics in source_baselines.items()},
            }
    return headline, full, predictions
