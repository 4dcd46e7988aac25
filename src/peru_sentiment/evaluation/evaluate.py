"""The ``evaluate`` stage: the model and the baselines on the same test split, plus external sets.

Each external source also gets its label prior estimated by EM (label shift,
``evaluation.label_shift``) and macro-F1 with and without the adjustment to it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from peru_sentiment.config import EvaluateParams
from peru_sentiment.errors import DataError
from peru_sentiment.evaluation.baselines import run_baselines
from peru_sentiment.evaluation.label_shift import LabelShift
from peru_sentiment.evaluation.metrics import (
    aspect_breakdown,
    aspect_metrics,
    breakdown,
    calibration,
    classification_metrics,
)
from peru_sentiment.model.inputs import aspect_targets
from peru_sentiment.model.predictor import SentimentPredictor
from peru_sentiment.schema import (
    ASPECT_POLARITIES,
    LABEL_TO_ID,
    LABELS,
    predicted_aspect_column,
    true_aspect_column,
)

log = logging.getLogger(__name__)


def score_split(
    predictor: SentimentPredictor, frame: pd.DataFrame, params: EvaluateParams, probabilities: np.ndarray | None = None
) -> tuple[dict, pd.DataFrame]:
    """Metrics, calibration and breakdowns of the model (or of given `probabilities`) on one split, and predictions."""
    if probabilities is None:
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
    predictor: SentimentPredictor,
    splits: dict[str, pd.DataFrame],
    params: EvaluateParams,
    class_balanced: bool = True,
) -> tuple[dict, dict, dict[str, pd.DataFrame]]:
    """(headline metrics for DVC, the full evaluation, predictions per evaluated split).

    Scores ``test`` and each source of ``external``; ``unlabelled`` rows, if
    given, only estimate the label prior of the external sources mapped to
    them (``params.label_shift.prior_from``). `class_balanced` says whether
    the model was trained with class-balanced weights (its training prior).
    """
    log.info("scoring the model on %d test texts", len(splits["test"]))
    test = splits["test"]
    if predictor.aspects:
        probabilities, aspect_probabilities = predictor.predict_with_aspects(test["text"].tolist())
        test_result, test_predictions = score_split(predictor, test, params, probabilities)
        truth, predicted = aspect_targets(test, predictor.aspects), aspect_probabilities.argmax(axis=2)
        test_result["aspects"] = aspect_metrics(truth, predicted, predictor.aspects)
        test_result["aspects"]["breakdowns"] = {
            column: aspect_breakdown(test[column], truth, predicted) for column in params.breakdowns if column in test
        }
        test_predictions = test_predictions.assign(**aspect_columns(truth, predicted, predictor.aspects))
    else:
        test_result, test_predictions = score_split(predictor, test, params)
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
    if "aspects" in test_result:
        aspects = test_result["aspects"]
        headline["test"]["aspects"] = {
            "rows": aspects["rows"],
            "detection_micro_precision": aspects["detection"]["precision"],
            "detection_micro_recall": aspects["detection"]["recall"],
            "detection_micro_f1": aspects["detection"]["f1"],
            "polarity_macro_f1": aspects["polarity"]["macro_f1"],
            "detection_f1": {name: scores["f1"] for name, scores in aspects["per_aspect"].items()},
        }
    external = splits.get("external")
    if external is not None and len(external):
        label_shift = label_shift_model(predictor, splits, params, class_balanced)
        for source, rows in external.groupby("source"):
            log.info("scoring external set %s (%d texts)", source, len(rows))
            rows = rows.reset_index(drop=True)
            probabilities = predictor.predict_proba(rows["text"].tolist())
            target_prior, shift = prior_shift(
                predictor, str(source), probabilities, label_shift, splits.get("unlabelled"), params
            )
            adjusted = label_shift.adjust(probabilities, target_prior)
            shift["macro_f1_unadjusted"] = macro_f1(rows["label"], probabilities)
            shift["macro_f1_adjusted"] = macro_f1(rows["label"], adjusted)
            used = adjusted if params.label_shift.adjust else probabilities
            result, source_predictions = score_split(predictor, rows, params, used)
            result["label_shift"] = shift
            source_baselines = {
                name: classification_metrics(rows["label"], predicted)
                for name, predicted in run_baselines(splits["train"], splits["validation"], rows).items()
            }
            full[f"external/{source}"] = {"model": result, "baselines": source_baselines}
            predictions[f"external_{source}"] = source_predictions
            headline[f"external/{source}"] = {
                "macro_f1": result["macro_f1"],
                "accuracy": result["accuracy"],
                "macro_f1_unadjusted": shift["macro_f1_unadjusted"],
                "macro_f1_prior_adjusted": shift["macro_f1_adjusted"],
                "estimated_prior": shift["estimated_prior"],
                **{f"{name}_macro_f1": metrics["macro_f1"] for name, metrics in source_baselines.items()},
            }
    return headline, full, predictions


def aspect_columns(truth: np.ndarray, predicted: np.ndarray, aspects: tuple[str, ...]) -> dict[str, list]:
    """Per aspect, the true and predicted polarity names (``ASPECT_POLARITIES``) of each row; no truth is None."""
    names = np.asarray(ASPECT_POLARITIES, dtype=object)
    columns = {}
    for index, aspect in enumerate(aspects):
        columns[true_aspect_column(aspect)] = [names[i] if i >= 0 else None for i in truth[:, index]]
        columns[predicted_aspect_column(aspect)] = names[predicted[:, index]].tolist()
    return columns


def label_shift_model(
    predictor: SentimentPredictor, splits: dict[str, pd.DataFrame], params: EvaluateParams, class_balanced: bool
) -> LabelShift:
    """The model's label-shift adjuster, calibrated on the validation split unless switched off."""
    if not params.label_shift.calibrate:
        return LabelShift.for_model(splits["train"]["label"], class_balanced)
    log.info("calibrating the probabilities on %d validation texts for the label-shift EM", len(splits["validation"]))
    validation_probabilities = predictor.predict_proba(splits["validation"]["text"].tolist())
    return LabelShift.for_model(
        splits["train"]["label"], class_balanced, validation_probabilities, splits["validation"]["label"]
    )


def prior_shift(
    predictor: SentimentPredictor,
    source: str,
    probabilities: np.ndarray,
    label_shift: LabelShift,
    unlabelled: pd.DataFrame | None,
    params: EvaluateParams,
) -> tuple[np.ndarray, dict]:
    """EM estimate of an external source's label prior, from its own texts or its mapped unlabelled source.

    Returns the estimated prior and what to report about it.

    Labels are never read: the estimate uses the model's probabilities only.
    """
    settings = params.label_shift
    estimated_on = settings.prior_from.get(source)
    if estimated_on is not None:
        texts = [] if unlabelled is None else unlabelled.loc[unlabelled["source"] == estimated_on, "text"].tolist()
        if not texts:
            raise DataError(f"evaluate.label_shift.prior_from: unlabelled source {estimated_on!r} has no rows")
        target_probabilities = predictor.predict_proba(texts)
    else:
        estimated_on, target_probabilities = f"external/{source} (its texts, not its labels)", probabilities
    estimate = label_shift.estimate(target_probabilities, settings.max_iterations, settings.tolerance)
    log.info("%s: estimated label prior %s (%d EM iterations)", source, estimate.prior.round(3), estimate.iterations)
    return estimate.prior, {
        "estimated_on": estimated_on,
        "training_prior": dict(zip(LABELS, np.round(label_shift.source_prior, 4).tolist(), strict=True)),
        "calibration": label_shift.calibration and label_shift.calibration.summary(),
        "estimated_prior": dict(zip(LABELS, np.round(estimate.prior, 4).tolist(), strict=True)),
        "iterations": estimate.iterations,
        "converged": estimate.converged,
        "adjusted": settings.adjust,
    }


def macro_f1(labels: pd.Series, probabilities: np.ndarray) -> float:
    predicted = np.asarray(LABELS)[probabilities.argmax(axis=1)]
    return float(f1_score(labels, predicted, labels=list(LABELS), average="macro", zero_division=0))
