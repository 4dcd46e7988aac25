from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from peru_sentiment.config import ConfigError
from peru_sentiment.data import synthetic
from peru_sentiment.schema import ASPECTS, CHANNELS, LABELS, NO_OPINION_KINDS, aspect_column
from peru_sentiment.text.prepare import prepare_text

SYNTHETIC_CONFIGS = Path(__file__).resolve().parents[1] / "configs/synthetic"


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
    for row in corpus[[*columns, "kind", "statements", "label"]].itertuples(index=False):
        polarities = [value for value in row[: len(columns)] if not pd.isna(value)]
        kind, statements, label = row[len(columns) :]
        if kind in NO_OPINION_KINDS:
            assert not polarities and not statements and label == "neutral", "no opinion, no aspect, neutral"
            continue
        assert polarities, "every opinion text states at least one aspect"
        assert synthetic.label_from_polarities(polarities) == label
        stated = {part.split(":")[0]: int(part.split(":")[1]) for part in statements.split(";")}
        truth = zip(ASPECTS, row[: len(columns)], strict=True)
        assert stated == {aspect: value for aspect, value in truth if not pd.isna(value)}
    mixed = corpus[columns].apply(lambda r: {-1, 1} <= set(r.dropna()), axis=1)
    assert mixed.mean() > 0.05, "mixed feedback exists"


def _statements(corpus: pd.DataFrame) -> pd.DataFrame:
    parts = corpus["statements"].str.split(";").explode()
    parts = parts[parts.fillna("") != ""].str.split(":", expand=True)
    return pd.DataFrame({"aspect": parts[0], "polarity": parts[1].astype(int), "style": parts[2]})


def test_text_kinds_appear_at_their_configured_rates(corpus, params, phrasebook):
    generate = params.generate
    neutral = corpus[(corpus["label"] == "neutral") & corpus["incident"].isna()]
    for channel, rows in neutral.groupby("channel"):
        shares = rows["kind"].value_counts(normalize=True)
        for kind, rate in generate.no_opinion[channel].items():
            assert shares.get(kind, 0) == pytest.approx(rate, abs=0.07), (channel, kind)
    assert set(corpus["kind"]) == {"opinion", "short", "off_topic", *NO_OPINION_KINDS}
    opinionated = corpus[(corpus["label"] != "neutral") & corpus["incident"].isna()]
    for channel, rows in opinionated.groupby("channel"):
        rate = generate.off_topic.get(channel, 0)
        tolerance = 4 * np.sqrt(rate * (1 - rate) / len(rows)) + 0.01  # four standard errors
        assert rows["kind"].eq("off_topic").mean() == pytest.approx(rate, abs=tolerance), channel
    off_topic = corpus[corpus["kind"] == "off_topic"]
    assert off_topic["aspect_other"].notna().all() and off_topic["label"].isin(["negative", "positive"]).all()
    assert corpus.loc[corpus["kind"] != "off_topic", "aspect_other"].isna().all(), "service texts state no 'other'"

    statements = _statements(corpus)
    names = {-1: "negative", 0: "neutral", 1: "positive"}
    language = corpus["language"].loc[statements.index]
    for style in ("implicit", "negation", "comparison", "sarcasm"):
        has_material = [
            bool(phrasebook["styles"][style].get(aspect, {}).get(lang, {}).get(names[polarity]))
            for aspect, polarity, lang in zip(statements["aspect"], statements["polarity"], language, strict=True)
        ]
        eligible = statements[np.array(has_material)]
        rate = getattr(generate.styles, style)
        assert len(eligible) > 100, style
        assert (eligible["style"] == style).mean() == pytest.approx(rate, abs=0.35 * rate + 0.01), style
    sarcastic = statements[statements["style"] == "sarcasm"]
    assert (sarcastic["polarity"] == -1).all(), "sarcasm only carries negative statements"

    social = corpus[(corpus["channel"] == "social_media") & (corpus["kind"] != "short")]["text"]
    assert social.str.startswith("RT @").mean() == pytest.approx(generate.tweet.retweet, abs=0.04)
    assert social.str.contains(r"https?://\S+$|https?://\S+ \S+$", regex=True).mean() > 0.5 * generate.tweet.link
    assert social.str.contains(r"^(?:RT @\S+ )?@", regex=True).mean() > 0.8 * generate.tweet.mention


def test_lengths_follow_the_channel(corpus):
    words = corpus["text"].str.split().str.len()
    by_channel = words.groupby(corpus["channel"])
    assert by_channel.quantile(0.95)["app_review"] > 45, "long narrative reviews exist"
    assert by_channel.quantile(0.95)["social_media"] < 45, "tweets stay short"
    assert by_channel.median()["support_chat"] > by_channel.median()["app_review"]


def test_implicit_delivery_facts_keep_a_consistent_clock(params, regions, phrasebook, vocabulary):
    styles = params.generate.styles.model_copy(update={"implicit": 1.0, "negation": 0, "comparison": 0, "sarcasm": 0})
    generate = params.generate.model_copy(update={"rows": 1500, "styles": styles, "english_share": 0.0})
    corpus = synthetic.generate_feedback(generate, regions, phrasebook, vocabulary, progress=False)
    late = corpus["text"].str.extract(r"[Pp]ed[ií] a las (\d+)(?::(\d+))?,? y? ?lleg[oó] a las (\d+)(?::(\d+))?")
    late = late.dropna(subset=[0, 2]).astype(float).fillna(0)
    assert len(late) > 10
    waited = ((late[2] * 60 + late[3]) - (late[0] * 60 + late[1])) % (12 * 60)
    assert waited.between(80, 150).all(), "the late clock is 80 to 150 minutes after the order"


def test_missing_style_material_is_a_clear_error(tmp_path):
    styles = yaml.safe_load((SYNTHETIC_CONFIGS / "styles.yaml").read_text(encoding="utf-8"))
    del styles["no_opinion"]["news"]
    path = tmp_path / "styles.yaml"
    path.write_text(yaml.safe_dump(styles, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"no_opinion\.news\.es"):
        synthetic.load_phrasebook(SYNTHETIC_CONFIGS / "phrasebook.yaml", styles=path)


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
    opinions = corpus[corpus["kind"] == "opinion"]
    long_texts = opinions[opinions["text"].str.split().str.len() > 5]["text"]
    assert long_texts.nunique() / len(long_texts) > 0.98, "no template is repeated verbatim"
    assert corpus["text"].str.split().str.len().max() > 40 and corpus["text"].str.len().min() <= 3
    assert corpus["text"].str.contains(r"a{3}|e{3}|i{3}|o{3}|u{3}", regex=True).mean() > 0.03  # stretched letters
    assert (corpus["text"] == corpus["text"].str.upper()).mean() > 0.02  # ALL CAPS
    typed_fast = corpus[corpus["text"].str.len() > 20]["text"]
    assert (typed_fast == typed_fast.str.lower()).mean() > 0.15, "all lower case, as typed on a phone"
    assert (~typed_fast.str.contains(r"[.!?…]$", regex=True)).mean() > 0.3, "many texts lack a final stop"


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
