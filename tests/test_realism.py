import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peru_sentiment.config import RealismParams
from peru_sentiment.evaluation import realism
from peru_sentiment.text.lexicon import EmotionLexicon

FOOD = ["pedí", "ceviche", "llegó", "motorizado", "rico", "frío", "tarde", "lomo", "saltado", "chaufa", "app", "cupón"]
TWEETS = ["game", "tonight", "vote", "election", "season", "team", "news", "coach", "match", "score", "debate", "win"]


def _texts(vocabulary: list[str], count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(vocabulary, size=int(rng.integers(4, 10)))) for _ in range(count)]


@pytest.fixture(scope="module")
def lexicon(params):
    return EmotionLexicon(params.preprocess.lexicons)


def test_identical_corpora_are_indistinguishable():
    texts = _texts(FOOD + TWEETS, 400, seed=0)
    # Two halves of one corpus: same distribution, different texts.
    assert realism.domain_auc(texts[:200], texts[200:], folds=5, seed=0) == pytest.approx(0.5, abs=0.1)


def test_disjoint_corpora_are_told_apart():
    assert realism.domain_auc(_texts(FOOD, 200, seed=1), _texts(TWEETS, 200, seed=2), folds=5, seed=0) > 0.98


def test_giveaway_ngrams_name_each_sides_words():
    giveaways = realism.giveaway_ngrams(_texts(FOOD, 200, seed=1), _texts(TWEETS, 200, seed=2), count=5)
    assert {item["ngram"].split()[0] for item in giveaways["synthetic"]} <= set(FOOD)
    assert {item["ngram"].split()[0] for item in giveaways["real"]} <= set(TWEETS)


def test_feature_distances_and_label_mix(lexicon):
    short = realism.text_features(["muy rico todo"] * 50, ["es"] * 50, lexicon)
    long = realism.text_features(
        ["el pedido llegó a las ocho con dos cremas y una gaseosa helada"] * 50, ["es"] * 50, lexicon
    )
    assert realism.feature_distances(short, short)["word_count"]["ks"] == 0
    distances = realism.feature_distances(short, long)
    assert distances["word_count"]["ks"] == 1 and distances["word_count"]["wasserstein"] == 10
    assert distances["lexicon_density"]["synthetic_median"] > distances["lexicon_density"]["real_median"]
    mix = realism.label_mix(pd.Series(["negative", "positive"] * 5), pd.Series(["neutral"] * 10))
    assert mix["total_variation"] == 1.0 and mix["real"]["neutral"] == 1.0
    unlabelled = realism.label_mix(pd.Series(["negative"] * 4), pd.Series([None] * 4, dtype="object"))
    assert unlabelled["real"] is None and unlabelled["total_variation"] is None


def _feedback(real_rows: int) -> pd.DataFrame:
    synthetic = pd.DataFrame(
        {
            "text": _texts(FOOD, 120, seed=3),
            "language": "es",
            "label": "positive",
            "source": "synthetic",
            "role": "train",
        }
    )
    tweets = pd.DataFrame(
        {"text": _texts(TWEETS, real_rows, seed=4), "language": "en", "label": None, "source": "tweets"}
    ).assign(role="unlabelled")
    return pd.concat([synthetic, tweets], ignore_index=True)


def test_measure_realism_reports_every_real_source_whatever_its_role(lexicon):
    params = RealismParams(seed=0, folds=3, max_rows=100, top_ngrams=3)
    result = realism.measure_realism(_feedback(90), params, lexicon)
    tweets = result["sources"]["tweets"]
    assert tweets["roles"] == ["unlabelled"] and tweets["rows"] == 90
    assert tweets["languages"] == ["es"], "no English synthetic text: compared with all of them"
    assert tweets["domain_auc"] > 0.95 and tweets["label_mix"]["total_variation"] is None
    metrics = realism.realism_metrics(result)
    assert metrics["sources"] == 1 and metrics["mean_domain_auc"] == tweets["domain_auc"]
    assert set(metrics["tweets"]) == {"domain_auc", "label_total_variation", *(f"ks_{f}" for f in realism.FEATURES)}


def test_without_real_feedback_the_result_is_empty_and_says_so(lexicon):
    params = RealismParams(seed=0, folds=3, max_rows=100, top_ngrams=3)
    result = realism.measure_realism(_feedback(0).query("source == 'synthetic'"), params, lexicon)
    assert result["sources"] == {} and "no real feedback imported" in result["note"]
    assert realism.realism_metrics(result) == {"sources": 0, "note": result["note"]}


def test_a_real_set_is_compared_with_the_synthetic_texts_in_its_languages():
    synthetic = pd.DataFrame({"language": ["es"] * 50 + ["en"] * 20 + ["other"] * 5})
    assert realism.same_languages(synthetic, pd.Series(["en"] * 95 + ["other"] * 5)) == ["en"]
    assert realism.same_languages(synthetic, pd.Series(["es"] * 60 + ["en"] * 40)) == ["en", "es"]
    assert realism.same_languages(synthetic, pd.Series(["pt"] * 10)) == ["en", "es", "other"]


def test_the_realism_stage_writes_valid_empty_metrics_when_nothing_is_imported(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from peru_sentiment.cli.main import app

    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(root / "configs/lexicons", tmp_path / "configs/lexicons")
    monkeypatch.chdir(tmp_path)
    _feedback(0).to_parquet(tmp_path / "feedback.parquet")
    result = CliRunner().invoke(app, ["realism", "--feedback", "feedback.parquet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "reports/realism.json").read_text())
    assert metrics["sources"] == 0 and "nothing to compare" in metrics["note"]
    assert json.loads((tmp_path / "reports/realism/details.json").read_text())["sources"] == {}
    assert json.loads((tmp_path / "reports/stages/realism.json").read_text())["stage"] == "realism"
