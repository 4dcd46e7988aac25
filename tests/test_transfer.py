"""The transfer experiment on a small hand-made real set, with the tiny BERT and TF-IDF."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers import ROOT, toy_feedback
from peru_sentiment.config import AdaptationParams
from peru_sentiment.errors import ConfigError
from peru_sentiment.evaluation import transfer
from peru_sentiment.metadata import write_json

# Real customers use words the synthetic corpus never has: only labelled real rows teach them.
REAL_WORDS = {"negative": ["malazo", "fatal"], "neutral": ["consulta", "horario"], "positive": ["buenazo", "genial"]}
FILLER = ["el", "delivery", "de", "hoy", "con", "mi", "pedido", "y", "la", "app"]


def _write_real_set(path, rows=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["negative", "neutral", "positive"], size=rows, p=[0.2, 0.6, 0.2])
    texts = [
        " ".join([*rng.choice(FILLER, size=4), rng.choice(REAL_WORDS[label]), *rng.choice(FILLER, size=3)])
        for label in labels
    ]
    frame = pd.DataFrame({"text": texts, "label": labels, "language": "es"})
    bad = pd.DataFrame({"text": ["  ", "qué tal"], "label": ["positive", "mixed"], "language": "es"})
    pd.concat([frame, bad]).to_csv(path, index=False)


@pytest.fixture
def preprocess_params(params):
    lexicons = {
        language: str(ROOT / path) if path != "afinn" else path for language, path in params.preprocess.lexicons.items()
    }
    return params.preprocess.model_copy(update={"lexicons": lexicons})


def test_real_sets_are_split_70_30_stratified_with_a_capped_test_portion(tmp_path, preprocess_params):
    _write_real_set(tmp_path / "reviews.csv")
    protocol = transfer.TransferProtocol(max_test_rows=30)
    (real_set,) = transfer.load_real_sets(tmp_path, preprocess_params, protocol)
    assert real_set.name == "reviews" and real_set.dropped == {"empty text": 1, "unknown label": 1}
    assert len(real_set.train) == 140 and len(real_set.test) == 30
    shares = real_set.test["label"].value_counts(normalize=True)
    assert shares["neutral"] == pytest.approx(real_set.train["label"].value_counts(normalize=True)["neutral"], abs=0.05)
    assert {"text_classical", "language"} <= set(real_set.test.columns)
    assert not set(real_set.train["feedback_id"]) & set(real_set.test["feedback_id"])


def test_a_real_set_with_its_own_split_keeps_it(tmp_path, preprocess_params):
    _write_real_set(tmp_path / "tweets.csv")
    frame = pd.read_csv(tmp_path / "tweets.csv")
    frame.assign(split=["val"] * 50 + ["test"] * (len(frame) - 50)).to_csv(tmp_path / "tweets.csv", index=False)
    (real_set,) = transfer.load_real_sets(tmp_path, preprocess_params, transfer.TransferProtocol(max_test_rows=100))
    assert set(real_set.train["split"]) == {"val"} and set(real_set.test["split"]) == {"test"}
    assert len(real_set.train) == 50 and len(real_set.test) == 100


def test_real_sets_need_csv_files_with_text_and_label(tmp_path, preprocess_params):
    with pytest.raises(ConfigError, match="no CSV files"):
        transfer.load_real_sets(tmp_path, preprocess_params, transfer.TransferProtocol())
    (tmp_path / "bad.csv").write_text("review,stars\nhola,5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="lacks column"):
        transfer.load_real_sets(tmp_path, preprocess_params, transfer.TransferProtocol())


def test_transfer_table_with_the_tiny_model_and_tfidf(tmp_path, preprocess_params, tiny_checkpoint, tiny_train_params):
    from peru_sentiment.evaluation.baselines import TfidfLearner
    from peru_sentiment.training.adaptation import BertLearner

    (tmp_path / "real").mkdir()
    _write_real_set(tmp_path / "real" / "reviews.csv")
    protocol = transfer.TransferProtocol(max_test_rows=40, labelled_rows=(0, 60))
    real_sets = transfer.load_real_sets(tmp_path / "real", preprocess_params, protocol)
    synthetic_train = toy_feedback(240, seed=11).assign(source="synthetic", text_classical=lambda f: f["text"])
    synthetic_validation = toy_feedback(60, seed=12).assign(source="synthetic", text_classical=lambda f: f["text"])
    adaptation = AdaptationParams.model_validate(
        {"self_training": {"threshold": 0.4, "max_unlabelled_rows": 80, "labelled_rows": 120}}
    )
    train_params = tiny_train_params.model_copy(update={"epochs": 1})
    learners = {
        "bert": lambda: BertLearner(str(tiny_checkpoint), train_params),
        "tfidf": lambda: TfidfLearner(seed=0),
    }
    results = transfer.run_transfer(learners, synthetic_train, synthetic_validation, real_sets, adaptation, protocol)

    conditions = ["synthetic", "synthetic + prior adjustment", "synthetic + unlabelled", "synthetic + 60 labelled"]
    assert [(r["learner"], r["condition"]) for r in results] == [(n, c) for n in learners for c in conditions]
    by_key = {(r["learner"], r["condition"]): r for r in results}
    assert all(set(r["recall"]) == {"negative", "neutral", "positive"} for r in results)
    assert sum(by_key[("tfidf", "synthetic + unlabelled")]["pseudo_labelled"].values()) > 0
    assert by_key[("bert", "synthetic + 60 labelled")]["labelled_rows"] == pytest.approx(60, abs=2)
    # the real sentiment words are learnable only from labelled real rows
    tfidf_gain = by_key[("tfidf", "synthetic + 60 labelled")]["macro_f1"] - by_key[("tfidf", "synthetic")]["macro_f1"]
    assert tfidf_gain > 0.3

    summary = transfer.summarize(results, real_sets, protocol)
    write_json(tmp_path / "transfer.json", summary)
    stored = json.loads((tmp_path / "transfer.json").read_text())
    assert stored["sets"]["reviews"]["test_rows"] == 40 and list(stored["mean_macro_f1"]["tfidf"]) == conditions
    table = transfer.transfer_markdown(summary)
    assert "| tfidf | synthetic + 60 labelled |" in table and "reviews" in table and "mean" in table


def test_a_given_trained_state_replaces_the_synthetic_fit(tmp_path, preprocess_params):
    from peru_sentiment.evaluation.baselines import TfidfLearner

    (tmp_path / "real").mkdir()
    _write_real_set(tmp_path / "real" / "reviews.csv")
    protocol = transfer.TransferProtocol(max_test_rows=40, labelled_rows=(0,))
    real_sets = transfer.load_real_sets(tmp_path / "real", preprocess_params, protocol)
    synthetic_train = toy_feedback(240, seed=11).assign(source="synthetic", text_classical=lambda f: f["text"])
    synthetic_validation = toy_feedback(60, seed=12).assign(source="synthetic", text_classical=lambda f: f["text"])
    adaptation = AdaptationParams()
    fitted = TfidfLearner(seed=0)
    fitted.fit(synthetic_train, synthetic_validation)
    fits = []

    class CountingLearner(TfidfLearner):
        def fit(self, train, validation, epochs=None):
            fits.append(len(train))
            return super().fit(train, validation, epochs)

    learners = {"tfidf": lambda: CountingLearner(seed=0)}
    given = transfer.run_transfer(
        learners, synthetic_train, synthetic_validation, real_sets, adaptation, protocol, {"tfidf": fitted.get_state()}
    )
    assert len(synthetic_train) not in fits, "no fit on the synthetic split when a trained state is given"
    fits_before = len(fits)
    refit = transfer.run_transfer(learners, synthetic_train, synthetic_validation, real_sets, adaptation, protocol)
    assert fits[fits_before] == len(synthetic_train), "without one, the learner is fitted on the synthetic split"
    assert given[0]["macro_f1"] == refit[0]["macro_f1"], "the same synthetic model either way"
