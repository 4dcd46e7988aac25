import pandas as pd
import pytest

from peru_sentiment.data import synthetic
from peru_sentiment.schema import ASPECTS, CHANNELS, LABELS, aspect_column
from peru_sentiment.text.prepare import prepare_text


def test_labelling_rule():
    rule = synthetic.label_from_polarities
    assert rule([1]) == "positive" and rule([-1]) == "negative" and rule([0]) == "neutral"
    assert rule([1, -1]) == "neutral"  # balanced mixed feedback
    assert rule([1, 1, -1]) == "positive" and rule([-1, -1, 1, 0]) == "negative"


def test_same_seed_same_corpus_other_seed_other_corpus(params, regions, phrasebook, vocabulary):
    small = params.generate.model_copy(update={"rows": 400})
    first = synthetic.generate_feedback(small, regions, phrasebook, vocabulary, progress=False)
    again = synthetic.generate_feedback(small, regions, phrasebook, vocabulary, progress=False)
    pd.testing.assert_frame_equal(first, again)
    other = synthetic.generate_feedback(
        small.model_copy(update={"seed": small.seed + 1}), regions, phrasebook, vocabulary, progress=False
    )
    assert (first["text"] != other["text"]).mean() > 0.9


def test_label_follows_from_aspects(corpus):
    columns = [aspect_column(aspect) for aspect in ASPECTS]
    for row in corpus[[*columns, "label"]].itertuples(index=False):
        polarities = [value for value in row[:-1] if not pd.isna(value)]
        assert polarities, "every text states at least one aspect"
        assert synthetic.label_from_polarities(polarities) == row[-1]
    mixed = corpus[columns].apply(lambda r: {-1, 1} <= set(r.dropna()), axis=1)
    assert mixed.mean() > 0.05, "mixed feedback exists"


def test_distributions_follow_params(corpus, params):
    generate = params.generate
    shares = corpus["label"].value_counts(normalize=True)
    for label in LABELS:
        assert shares[label] == pytest.approx(generate.label_distribution[label], abs=0.05)
    assert corpus["language"].eq("en").mean() == pytest.approx(generate.english_share, abs=0.03)
    assert set(corpus["channel"]) == set(CHANNELS)
    assert corpus["code_switched"].mean() > 0.03
    lima = corpus["region"].eq("PE-LIM").mean()
    assert 0.2 < lima < 0.35, "volume is weighted by population"
    assert (
        corpus["timestamp"]
        .between(pd.Timestamp(generate.start), pd.Timestamp(generate.end) + pd.Timedelta(days=1))
        .all()
    )


def test_all_25_regions_present(corpus, regions):
    assert len(regions) == 25
    assert set(corpus["region"]) == {region.code for region in regions}


def test_app_review_stars_agree_with_label(corpus):
    reviews = corpus[corpus["channel"] == "app_review"]
    assert corpus.loc[corpus["channel"] != "app_review", "stars"].isna().all()
    expected = reviews["label"].map({"negative": 1.5, "neutral": 3, "positive": 4.5})
    assert ((reviews["stars"] - expected).abs() <= 1.5).all()
    assert reviews.groupby("label")["stars"].mean().is_monotonic_increasing


def test_texts_are_varied_and_noisy(corpus):
    long_texts = corpus[corpus["text"].str.split().str.len() > 5]["text"]
    assert long_texts.nunique() / len(long_texts) > 0.98, "no template is repeated verbatim"
    assert corpus["text"].str.split().str.len().max() > 40 and corpus["text"].str.len().min() <= 3
    assert corpus["text"].str.contains(r"a{3}|e{3}|i{3}|o{3}|u{3}", regex=True).mean() > 0.03  # stretched letters
    assert (corpus["text"] == corpus["text"].str.upper()).mean() > 0.02  # ALL CAPS


def test_personal_data_is_present_and_masked(corpus):
    with_data = corpus[corpus["personal_data"].notna()]
    assert set(with_data["personal_data"]) == {"email", "phone", "dni", "card"}
    for text, kind in zip(with_data["text"], with_data["personal_data"], strict=True):
        masked, counts = prepare_text(text)
        assert counts[kind] >= 1, (kind, text)
        assert not any(ch.isdigit() for ch in masked.split(f"[{kind.upper()}]")[-1][:4]) or kind == "email"


def test_incidents_raise_the_negative_share(params, regions, phrasebook, vocabulary):
    generate = params.generate.model_copy(update={"rows": 6000})
    corpus = synthetic.generate_feedback(generate, regions, phrasebook, vocabulary, progress=False)
    events = synthetic.incident_events(generate, regions, corpus)
    assert [event["region"] for event in events] == [incident.region for incident in generate.incidents]
    for event in events:
        assert event["rows"] > 10
        assert event["negative_share"] > event["baseline_negative_share"] + 0.15, event
    flagged = corpus[corpus["incident"].notna()]
    assert (flagged["label"] == "negative").all()
    for aspect, rows in flagged.groupby("incident"):
        assert rows[aspect_column(aspect)].eq(-1).all()
