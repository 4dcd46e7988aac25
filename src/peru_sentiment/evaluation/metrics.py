"""Classification metrics, calibration and per-group breakdowns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from peru_sentiment.schema import ASPECT_POLARITIES, LABELS


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = LABELS) -> dict:
    """Accuracy, macro and weighted precision/recall/F1, per-class scores and the confusion matrix."""
    y_true, y_pred = list(y_true), list(y_pred)
    result: dict = {"rows": len(y_true), "accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=list(labels), average=average, zero_division=0
        )
        result[f"{average}_precision"], result[f"{average}_recall"], result[f"{average}_f1"] = (
            float(precision),
            float(recall),
            float(f1),
        )
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), zero_division=0
    )
    result["per_class"] = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    result["confusion_matrix"] = {
        "labels": list(labels),
        "matrix": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),  # rows: true, columns: predicted
    }
    return result


def calibration(probabilities: np.ndarray, y_true: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error of the top-class confidence, and the reliability diagram's data.

    ECE = sum over equal-width confidence bins of (bin share) x |accuracy - mean confidence|.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    reliability, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        accuracy, mean_confidence = float(correct[inside].mean()), float(confidence[inside].mean())
        ece += inside.mean() * abs(accuracy - mean_confidence)
        reliability.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(inside.sum()),
                "accuracy": accuracy,
                "confidence": mean_confidence,
            }
        )
    return {"ece": float(ece), "bins": bins, "reliability": reliability}


def breakdown(frame: pd.DataFrame, column: str, y_true: Sequence[str], y_pred: Sequence[str]) -> dict:
    """Rows, accuracy and macro-F1 for each value of `column`."""
    data = pd.DataFrame({"group": frame[column].to_numpy(), "true": list(y_true), "pred": list(y_pred)})
    result = {}
    for group, rows in data.groupby("group", sort=True):
        result[str(group)] = {
            "rows": len(rows),
            "accuracy": float((rows["true"] == rows["pred"]).mean()),
            "macro_f1": float(
                f1_score(rows["true"], rows["pred"], labels=list(LABELS), average="macro", zero_division=0)
            ),
        }
    return result


def aspect_metrics(truth: np.ndarray, predicted: np.ndarray, aspects: Sequence[str]) -> dict:
    """Aspect detection and polarity scores of the aspect heads on the rows with aspect truth.

    `truth` and `predicted` are (rows, aspects) class ids over ``ASPECT_POLARITIES`` (0 = absent);
    rows whose truth is -1 (no aspect truth: imported real feedback) are left out. An aspect is
    detected when its predicted id is not absent. Detection precision/recall/F1 are micro over all
    (row, aspect) cells and per aspect; polarity (negative, neutral, positive) macro-F1 counts the
    cells both truly present and detected, over the polarities that occur there. Each aspect's
    ``confusion`` counts true (rows) x predicted (columns) polarity ids, absent included.
    """
    has_truth = _has_truth(truth)
    truth, predicted = np.asarray(truth)[has_truth], np.asarray(predicted)[has_truth]
    result: dict = {"rows": int(has_truth.sum()), "detection": _detection(truth > 0, predicted > 0)}
    result["polarity"] = _polarity(truth, predicted)
    result["polarities"] = list(ASPECT_POLARITIES)
    ids = list(range(len(ASPECT_POLARITIES)))
    result["per_aspect"] = {
        aspect: {
            "present": int((truth[:, index] > 0).sum()),
            "detected": int((predicted[:, index] > 0).sum()),
            **_detection(truth[:, index] > 0, predicted[:, index] > 0),
            "polarity": _polarity(truth[:, index], predicted[:, index]),
            "confusion": confusion_matrix(truth[:, index], predicted[:, index], labels=ids).tolist(),
        }
        for index, aspect in enumerate(aspects)
    }
    return result


def aspect_breakdown(groups: Sequence, truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Per value of `groups` (one per row, e.g. the language), the aspect scores on its rows with aspect truth.

    Rows, detection precision/recall/F1 (micro over the group's cells) and polarity macro-F1, as in
    :func:`aspect_metrics`; groups without any row with truth are left out.
    """
    has_truth = _has_truth(truth)
    groups = np.asarray(groups, dtype=object)[has_truth]
    truth, predicted = np.asarray(truth)[has_truth], np.asarray(predicted)[has_truth]
    result = {}
    for group in sorted(set(groups.tolist()), key=str):
        rows = groups == group
        polarity = _polarity(truth[rows], predicted[rows])
        result[str(group)] = {
            "rows": int(rows.sum()),
            **_detection(truth[rows] > 0, predicted[rows] > 0),
            "polarity_cells": polarity["cells"],
            "polarity_macro_f1": polarity["macro_f1"],
        }
    return result


def _has_truth(truth: np.ndarray) -> np.ndarray:
    """Rows with aspect truth (ids >= 0 on every aspect; -1 marks rows without it)."""
    return (np.asarray(truth) >= 0).all(axis=1)


def _detection(present: np.ndarray, detected: np.ndarray) -> dict:
    true_positives = int((present & detected).sum())
    precision = true_positives / int(detected.sum()) if detected.any() else 0.0
    recall = true_positives / int(present.sum()) if present.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def _polarity(truth: np.ndarray, predicted: np.ndarray) -> dict:
    both = (truth > 0) & (predicted > 0)
    true_polarity, predicted_polarity = truth[both], predicted[both]
    occurring = sorted(set(true_polarity.tolist()) | set(predicted_polarity.tolist()))
    macro_f1 = (
        f1_score(true_polarity, predicted_polarity, labels=occurring, average="macro", zero_division=0)
        if occurring
        else 0.0
    )
    accuracy = float((true_polarity == predicted_polarity).mean()) if both.any() else 0.0
    return {"cells": int(both.sum()), "macro_f1": float(macro_f1), "accuracy": accuracy}
