"""Learning from real feedback: labelled mix, unlabelled rows, self-training and label shift."""

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from helpers import new_fine_tuner, toy_feedback
from peru_sentiment.config import AdaptationParams, Params, SelfTrainingParams, SourceParams
from peru_sentiment.data.ingest import import_feedback
from peru_sentiment.data.split import SPLITS, split_feedback
from peru_sentiment.errors import DataError
from peru_sentiment.evaluation.baselines import TfidfLearner
from peru_sentiment.evaluation.label_shift import adjust_to_prior, estimate_prior, training_prior
from peru_sentiment.schema import LABELS
from peru_sentiment.training.adaptation import select_pseudo_labels, self_training_round, training_mix
from test_split import _pool


def _source(name, path, role, **columns):
    return {"name": name, "path": str(path), "role": role, "columns": {"text": "text", **columns}}


def test_unlabelled_sources_map_no_label_and_adaptation_names_train_sources(params, tmp_path):
    with pytest.raises(ValueError, match="unlabelled: map neither"):
        SourceParams.model_validate(_source("u", "u.csv", "unlabelled", label="l"))
    raw = params.model_dump()
    raw["ingest"]["sources"] = [_source("u", "u.csv", "unlabelled")]
    raw["adaptation"] = {"sources": {"u": {"weight": 2.0}}}
    with pytest.raises(ValueError, match="not an ingest source with role train"):
        Params.model_validate(raw)
    raw["evaluate"]["label_shift"] = {"prior_from": {"nope": "u"}}
    raw["adaptation"] = {}
    with pytest.raises(ValueError, match="needs an external source and an unlabelled one"):
        Params.model_validate(raw)


def test_unlabelled_rows_are_imported_without_labels(params, tmp_path):
    path = tmp_path / "bulk.csv"
    path.write_text("text\n¿A qué hora llega mi pedido?\nllegó al toque\n\n   \n", encoding="utf-8")
    ingest = params.ingest.model_copy(
        update={"sources": [SourceParams.model_validate(_source("bulk", path, "unlabelled"))]}
    )
    result = import_feedback(ingest, params.near_duplicates, {})
    assert result.accepted["role"].tolist() == ["unlabelled", "unlabelled"]
    assert result.accepted["label"].isna().all()
    assert result.summary["quarantined"] == 1  # the blank text, with its reason
    assert result.quarantined["reason"].tolist() == ["empty text"]


def test_unlabelled_rows_never_reach_a_labelled_split(params):
    frame = _pool()
    unlabelled = [
        {
            "feedback_id": f"u{i}",
            "text": f"texto sin etiqueta número {word}",
            "label": None,
            "role": "unlabelled",
            "language": "es",
            "text_classical": "texto",
            "source": "bulk",
        }
        for i, word in enumerate(["uno", "dos", "tres", "cuatro"])
    ]
    splits, _, _, summary = split_feedback(
        pd.concat([frame, pd.DataFrame(unlabelled)]), params.split, params.near_duplicates
    )
    assert sorted(splits["unlabelled"]["feedback_id"]) == ["u0", "u1", "u2", "u3"]
    for name in (*SPLITS, "external"):
        assert not splits[name]["feedback_id"].str.startswith("u").any()
        assert splits[name]["label"].notna().all()

    # an unlabelled text that duplicates a test text is left out (self-training must not label a scored text)
    test_row = splits["test"].iloc[0]
    copy = dict(unlabelled[0], feedback_id="u-copy", text=test_row["text"] + "!")
    frame = pd.concat([_pool(), pd.DataFrame([*unlabelled, copy])])
    splits, _, _, summary = split_feedback(frame, params.split, params.near_duplicates)
    assert sorted(splits["unlabelled"]["feedback_id"]) == ["u0", "u1", "u2", "u3"]
    assert summary["unlabelled_rows_seen_in_evaluation_sets"] == 1
    assert "unlabelled" not in summary["label_shares"]


def _training_pool():
    synthetic = toy_feedback(300, seed=1).assign(source="synthetic")
    real = toy_feedback(90, seed=2).assign(source="playstore")
    other = toy_feedback(30, seed=3).assign(source="tweets")
    return pd.concat([synthetic, real, other], ignore_index=True)


def test_training_mix_caps_and_weights_each_source():
    params = AdaptationParams.model_validate({"sources": {"playstore": {"weight": 3.0, "max_rows": 60}}})
    mix = training_mix(_training_pool(), params, synthetic_rows=150, seed=0)
    rows = mix.groupby("source").size().to_dict()
    assert rows == {"synthetic": 150, "playstore": 60, "tweets": 30}
    weights = mix.groupby("source")["sample_weight"].unique().map(list).to_dict()
    assert weights == {"synthetic": [1.0], "playstore": [3.0], "tweets": [1.0]}
    assert mix[mix["source"] == "playstore"]["label"].value_counts().tolist() == [20, 20, 20]  # stratified

    only_synthetic = training_mix(toy_feedback(90, seed=1).assign(source="synthetic"), params, None, 0)
    assert "sample_weight" not in only_synthetic and len(only_synthetic) == 90

    with pytest.raises(DataError, match="without a label"):
        training_mix(_training_pool().assign(label=None), params, None, 0)


def test_pseudo_labels_keep_confident_rows_most_confident_first_capped_per_class():
    probabilities = np.array(
        [[0.95, 0.03, 0.02], [0.91, 0.05, 0.04], [0.99, 0.005, 0.005], [0.5, 0.3, 0.2], [0.02, 0.03, 0.95]]
    )
    indices, labels = select_pseudo_labels(probabilities, threshold=0.9, max_per_class=2)
    assert indices.tolist() == [0, 2, 4]  # row 1 is the least confident negative over the cap; row 3 is unsure
    assert labels.tolist() == [0, 0, 2]


class RecordingLearner:
    """A learner that records what it is fitted on and labels texts by a keyword."""

    class_balanced = True
    continues_training = True

    def __init__(self):
        self.fitted_on = []

    def fit(self, train, validation, epochs=None):
        self.fitted_on.append(train.copy())
        return {}

    def predict_proba(self, frame):
        def row(text):
            if "excelente" in text:
                return [0.02, 0.03, 0.95]
            return [0.4, 0.3, 0.3]

        return np.array([row(text) for text in frame["text"]])


def test_unlabelled_rows_reach_the_loss_only_with_a_confident_pseudo_label():
    training = toy_feedback(60, seed=1).assign(source="synthetic")
    unlabelled = pd.DataFrame(
        {"text": ["excelente todo", "excelente pedido", "no sé qué pasó", "pedí ayer"], "label": None}
    ).assign(source="bulk")
    learner = RecordingLearner()
    params = SelfTrainingParams(threshold=0.9, max_per_class=10, weight=0.25, labelled_rows=30)
    summary = self_training_round(learner, training, training.iloc[:10], unlabelled, params, seed=0)
    assert summary["pseudo_labelled"] == {"negative": 0, "neutral": 0, "positive": 2}
    (round_rows,) = learner.fitted_on
    assert round_rows["label"].notna().all() and set(round_rows["label"]) <= set(LABELS)
    pseudo = round_rows[round_rows["source"] == "bulk"]
    assert sorted(pseudo["text"]) == ["excelente pedido", "excelente todo"]
    assert pseudo["label"].eq("positive").all() and pseudo["sample_weight"].eq(0.25).all()
    assert (
        len(round_rows) - len(pseudo) == 30
        and round_rows.loc[round_rows["source"] != "bulk", "sample_weight"].eq(1).all()
    )


def test_sample_weights_reach_the_loss():
    """A TF-IDF learner follows the rows that weigh, and BERT batches carry the weights times class weights."""
    from peru_sentiment.model.inputs import make_dataset

    train = toy_feedback(120, seed=4)
    flipped = train.assign(
        label=train["label"].map({"negative": "positive", "positive": "negative", "neutral": "neutral"})
    )
    test = toy_feedback(60, seed=5).assign(text_classical=lambda frame: frame["text"])

    def accuracy(true_weight, flipped_weight):
        rows = pd.concat([train.assign(sample_weight=true_weight), flipped.assign(sample_weight=flipped_weight)])
        learner = TfidfLearner()
        learner.fit(rows.assign(text_classical=rows["text"]), None)
        return (np.asarray(LABELS)[learner.predict_proba(test).argmax(axis=1)] == test["label"]).mean()

    assert accuracy(1.0, 0.01) > 0.75 and accuracy(0.01, 1.0) < 0.4

    dataset = make_dataset(
        [[1, 2], [3, 4, 5], [6]],
        np.array([0, 1, 2]),
        batch_size=8,
        bucket_lengths=[8],
        pad_id=0,
        num_classes=3,
        sample_weights=np.array([0.5, 2.0, 1.0]),
    )
    ((_, targets, weights),) = list(dataset)
    by_label = dict(zip(targets.numpy().argmax(axis=1).tolist(), weights.numpy().tolist(), strict=True))
    assert by_label == {0: 0.5, 1: 2.0, 2: 1.0}


def test_loss_weights_fold_class_weights_into_row_weights(tiny_checkpoint, tiny_train_params):
    from peru_sentiment.training.trainer import EncodedSplit

    classifier = new_fine_tuner(tiny_checkpoint, tiny_train_params)
    split = EncodedSplit([[1]] * 4, np.array([0, 0, 0, 2]), np.array([1.0, 1.0, 2.0, 1.0], dtype=np.float32))
    # balanced class weights: 4 / (3 * 3) for negative, 4 / (3 * 1) for positive
    assert classifier.loss_weights(split) == pytest.approx([4 / 9, 4 / 9, 8 / 9, 4 / 3])
    assert classifier.loss_weights(EncodedSplit([[1]], np.array([0]))) is None


def _shifted_posteriors(prior_source, prior_target, rows, seed):
    """Posteriors of a known model (1-D Gaussians at -2, 0, 2) under `prior_source`, for draws with `prior_target`."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=rows, p=prior_target)
    x = rng.normal(np.array([-2.0, 0.0, 2.0])[labels], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - np.array([-2.0, 0.0, 2.0])) ** 2)
    posteriors = likelihood * prior_source
    return posteriors / posteriors.sum(axis=1, keepdims=True), labels


def test_em_recovers_a_known_label_prior_and_the_adjustment_helps():
    source, target = np.array([0.3, 0.2, 0.5]), np.array([0.15, 0.7, 0.15])
    probabilities, labels = _shifted_posteriors(source, target, rows=6000, seed=0)
    estimate = estimate_prior(probabilities, source)
    assert estimate.converged and estimate.prior == pytest.approx(target, abs=0.03)
    adjusted = adjust_to_prior(probabilities, source, estimate.prior)
    accuracy = (probabilities.argmax(axis=1) == labels).mean()
    assert (adjusted.argmax(axis=1) == labels).mean() > accuracy + 0.05
    # no shift: the estimate stays near the training prior
    same, _ = _shifted_posteriors(source, source, rows=6000, seed=1)
    assert estimate_prior(same, source).prior == pytest.approx(source, abs=0.03)


def test_calibration_undoes_overconfidence_so_em_finds_the_prior():
    from scipy.special import softmax

    from peru_sentiment.evaluation.label_shift import LabelShift

    source, target = np.array([0.3, 0.2, 0.5]), np.array([0.15, 0.7, 0.15])

    def overconfident(posteriors):  # a model that is sure of itself: temperature 0.4
        return softmax(np.log(posteriors) / 0.4, axis=1)

    validation, validation_labels = _shifted_posteriors(source, source, rows=3000, seed=2)
    shift = LabelShift.for_model([], True, overconfident(validation), np.asarray(LABELS)[validation_labels])
    assert shift.calibration.temperature == pytest.approx(2.5, rel=0.15)
    assert shift.source_prior == pytest.approx(source, abs=0.03)
    target_posteriors, _ = _shifted_posteriors(source, target, rows=6000, seed=3)
    calibrated = shift.estimate(overconfident(target_posteriors)).prior
    raw = estimate_prior(overconfident(target_posteriors), source).prior
    assert calibrated == pytest.approx(target, abs=0.04)
    assert np.abs(raw - target).max() > 2 * np.abs(calibrated - target).max()


def test_training_prior_is_uniform_under_class_balanced_weights():
    labels = ["negative"] * 3 + ["positive"]
    assert training_prior(labels, class_balanced=True) == pytest.approx([1 / 3] * 3)
    assert training_prior(labels, class_balanced=False) == pytest.approx([0.75, 0.0, 0.25])


class KeywordPredictor:
    """Stands in for a trained model: sure of sentiment words and of "pedí", torn on "hola" (leaning negative)."""

    labels = LABELS
    aspects = ()  # no aspect heads
    PROBABILITIES: ClassVar = {
        "pésimo": [0.9, 0.05, 0.05],
        "bacán": [0.05, 0.05, 0.9],
        "pedí": [0.1, 0.8, 0.1],
        "hola": [0.5, 0.42, 0.08],
    }

    def predict_proba(self, texts):
        return np.array([self.PROBABILITIES[text.split()[0]] for text in texts])


def _evaluation_splits():
    def frame(labels, source):
        text = {"negative": "pésimo servicio", "neutral": "pedí ayer", "positive": "bacán todo"}
        texts = [("hola" if label == "neutral" and i % 2 else text[label]) for i, label in enumerate(labels)]
        rows = pd.DataFrame({"label": labels, "text": texts})
        ids = [f"{source}-{i}" for i in range(len(rows))]
        return rows.assign(
            feedback_id=ids,
            source=source,
            language="es",
            region="PE-LIM",
            channel="survey",
            emotion_score=0.0,
            text_classical=rows["text"],
        )

    splits = {name: frame(["negative", "neutral", "positive"] * 10, "synthetic") for name in SPLITS}
    splits["external"] = frame(["negative"] * 5 + ["neutral"] * 40 + ["positive"] * 5, "tweets")
    splits["unlabelled"] = frame(["neutral"] * 30, "tweets_bulk").assign(label=None)
    return splits


def test_evaluate_reports_the_estimated_prior_and_both_macro_f1_and_ignores_unlabelled_rows(params):
    from peru_sentiment.evaluation.evaluate import evaluate_model

    splits = _evaluation_splits()
    headline, full, predictions = evaluate_model(KeywordPredictor(), splits, params.evaluate)
    assert set(predictions) == {"test", "external_tweets"} and set(headline) == {"test", "external/tweets"}
    assert full["test"]["model"]["rows"] == 30 and full["external/tweets"]["model"]["rows"] == 50
    tweets = headline["external/tweets"]
    assert tweets["estimated_prior"]["neutral"] > 0.6  # 80% of the tweets are neutral
    assert tweets["macro_f1_prior_adjusted"] > tweets["macro_f1_unadjusted"] == tweets["macro_f1"]

    adjusting = params.evaluate.model_copy(
        update={"label_shift": params.evaluate.label_shift.model_copy(update={"adjust": True})}
    )
    headline, full, _ = evaluate_model(KeywordPredictor(), splits, adjusting)
    assert headline["external/tweets"]["macro_f1"] == headline["external/tweets"]["macro_f1_prior_adjusted"]

    from_bulk = adjusting.model_copy(
        update={"label_shift": adjusting.label_shift.model_copy(update={"prior_from": {"tweets": "tweets_bulk"}})}
    )
    _, full, _ = evaluate_model(KeywordPredictor(), splits, from_bulk)
    assert full["external/tweets"]["model"]["label_shift"]["estimated_on"] == "tweets_bulk"
