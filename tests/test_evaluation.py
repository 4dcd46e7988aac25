import numpy as np
import pandas as pd
import pytest

from helpers import new_fine_tuner, toy_feedback
from peru_sentiment.evaluation import baselines
from peru_sentiment.evaluation.metrics import breakdown, calibration, classification_metrics


def test_metrics_against_hand_computed_values():
    y_true = ["negative", "negative", "neutral", "positive", "positive", "positive"]
    y_pred = ["negative", "neutral", "neutral", "positive", "positive", "negative"]
    result = classification_metrics(y_true, y_pred)
    # negative: tp 1, fp 1, fn 1 -> p 1/2, r 1/2, f1 1/2
    # neutral:  tp 1, fp 1, fn 0 -> p 1/2, r 1,   f1 2/3
    # positive: tp 2, fp 0, fn 1 -> p 1,   r 2/3, f1 4/5
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    assert result["weighted_f1"] == pytest.approx((2 * 1 / 2 + 1 * 2 / 3 + 3 * 4 / 5) / 6)
    assert result["macro_precision"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert result["per_class"]["positive"] == pytest.approx({"precision": 1, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert result["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]])
    y_true = np.array([0, 1, 1, 0])
    result = calibration(probabilities, y_true, bins=10)
    # bin (0.8, 0.9]: confidence 0.9, accuracy 1/2; bin (0.5, 0.6]: confidence 0.6, accuracy 1/2
    assert result["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert [b["count"] for b in result["reliability"]] == [2, 2]


def test_breakdown_by_group():
    frame = pd.DataFrame({"language": ["es", "es", "en", "en"]})
    result = breakdown(
        frame,
        "language",
        ["positive", "negative", "neutral", "neutral"],
        ["positive", "negative", "neutral", "positive"],
    )
    assert result["es"]["accuracy"] == 1.0 and result["en"]["accuracy"] == 0.5
    assert result["en"]["rows"] == 2


def test_baselines_on_a_toy_task():
    train, validation, test = toy_feedback(300, 1), toy_feedback(90, 2), toy_feedback(90, 3)
    for frame in (train, validation, test):
        frame["text_classical"] = frame["text"]
        frame["emotion_score"] = frame["text"].map(
            lambda text: (
                0.5 * sum(w in text for w in ("bacán", "excelente", "rico", "great", "chévere", "rapidísimo"))
                - 0.5 * sum(w in text for w in ("pésimo", "frío", "horrible", "awful", "roche", "tardísimo"))
            )
        )
    predictions = baselines.run_baselines(train, validation, test)
    scores = {
        name: classification_metrics(test["label"], predicted)["macro_f1"] for name, predicted in predictions.items()
    }
    assert set(predictions["majority"]) == {train["label"].mode()[0]}
    assert scores["majority"] < 0.25
    assert scores["tfidf_logreg"] > 0.85
    assert scores["lexicon"] > 0.95


def test_evaluation_scores_the_model_and_baselines_on_test_and_external_sets(
    params, tiny_checkpoint, tiny_train_params
):
    from peru_sentiment.evaluation.evaluate import evaluate_model

    predictor = new_fine_tuner(tiny_checkpoint, tiny_train_params).predictor()
    splits = {}
    for name, seed in (("train", 1), ("validation", 2), ("test", 3), ("external", 4)):
        frame = toy_feedback(60, seed).assign(language="es", region="PE-LIM", channel="survey", emotion_score=0.0)
        splits[name] = frame.assign(text_classical=frame["text"], source="synthetic" if name != "external" else "real")
    headline, full, predictions = evaluate_model(predictor, splits, params.evaluate)
    assert set(headline) == {"test", "external/real"}
    assert {"macro_f1", "ece", "tfidf_logreg_macro_f1", "lexicon_macro_f1", "majority_macro_f1"} <= set(
        headline["test"]
    )
    assert "tfidf_logreg_macro_f1" in headline["external/real"]
    assert set(full["test"]["model"]["breakdowns"]) == {"language", "region", "channel"}
    test_predictions = predictions["test"]
    assert (
        len(test_predictions) == 60
        and test_predictions[["p_negative", "p_neutral", "p_positive"]].sum(axis=1).round(4).eq(1).all()
    )
