"""Synthetic customer feedback for a food-delivery company in Peru.

Each opinion text is composed from aspect-level statements (delivery time, food
quality, courier, ...), each with a polarity of -1, 0 or +1 taken from the
phrasebook in ``configs/synthetic/``. The overall label follows from the
statements by one rule, :func:`label_from_polarities`, and the polarities are
kept as ground-truth columns (``aspect_<name>``), so a model is trained on a
signal that exists.

To read like real customers (generator v2), statements come in styles
(``styles.yaml``): stock opinions, facts that imply the sentiment, negation and
hedges, comparisons with competitors and sarcasm; texts are lengthened to a
per-channel log-normal word count with neutral narrative context; social-media
texts get mentions, hashtags, links and retweets; and part of the neutral rows
are texts with no opinion at all (questions, requests, order status,
promotions, news, chit-chat), whose truth is "no aspect stated" (every aspect
column empty, ``kind`` naming the kind). Each row records its ``kind`` and its
``statements`` (``aspect:polarity:style`` joined by ``;``).

Everything random flows from ``GenerateParams.seed``: the same parameters and
config files give the same corpus.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from faker import Faker
from tqdm import tqdm

from peru_sentiment.config import GenerateParams, load_yaml
from peru_sentiment.data import noise
from peru_sentiment.errors import ConfigError
from peru_sentiment.regions import Region
from peru_sentiment.schema import ASPECTS, CHANNELS, LABELS, NO_OPINION_KINDS, SERVICE_ASPECTS, aspect_column
from peru_sentiment.text.normalize import fold_accents

log = logging.getLogger(__name__)

POLARITY_NAMES = {-1: "negative", 0: "neutral", 1: "positive"}
LANGUAGES = ("es", "en")
# Stars an app review gets for each label before noise.
_LABEL_STARS = {"negative": (1, 1, 2), "neutral": (3,), "positive": (4, 5, 5)}
_FAKER_LOCALES = ["es_MX", "es_CO", "es_AR", "es_ES", "es_CL"]
_POOL_SIZE = 400
STATEMENT_STYLES = ("stock", "implicit", "negation", "comparison", "sarcasm")
_WORDS_PER_ASPECT = 18
_MAX_CONTEXT_SENTENCES = 4
_LINK_CHARS = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def label_from_polarities(polarities: Iterable[int]) -> str:
    """The labelling rule: the sign of the summed aspect polarities.

    More positive than negative statements is ``positive``, more negative than
    positive is ``negative``; only neutral statements, or as many positive as
    negative ones (mixed feedback), is ``neutral``.
    """
    total = sum(polarities)
    return "positive" if total > 0 else "negative" if total < 0 else "neutral"


def load_phrasebook(path: str | Path, styles: str | Path | None = None) -> dict:
    """Read the phrasebook and its realistic text kinds and check that nothing is missing.

    ``styles`` (default: ``styles.yaml`` beside the phrasebook) holds the
    statement styles, no-opinion texts, narrative context and social-media form;
    its sections join the phrasebook dictionary.
    """
    book = load_yaml(path)
    styles_path = Path(styles) if styles is not None else Path(path).with_name("styles.yaml")
    book.update(load_yaml(styles_path))
    missing = [
        f"aspects.{aspect}.{language}.{polarity}"
        for aspect in ASPECTS
        for language in LANGUAGES
        for polarity in POLARITY_NAMES.values()
        if not book.get("aspects", {}).get(aspect, {}).get(language, {}).get(polarity)
    ]
    for section in ("openers", "closers", "connectors", "short_texts", "code_switching", "personal_data"):
        if not book.get(section):
            missing.append(section)
    missing += [
        f"no_opinion.{kind}.{language}"
        for kind in NO_OPINION_KINDS
        for language in LANGUAGES
        if not book.get("no_opinion", {}).get(kind, {}).get(language)
    ]
    missing += [f"context.{language}" for language in LANGUAGES if not book.get("context", {}).get(language)]
    for section in ("styles", "sarcasm_markers", "tweet"):
        if not book.get(section):
            missing.append(section)
    unknown = set(book.get("styles") or {}) - set(STATEMENT_STYLES)
    if unknown:
        raise ConfigError(f"{styles_path}: unknown statement styles {sorted(unknown)}; use {STATEMENT_STYLES[1:]}")
    if missing:
        raise ConfigError(f"{path} or {styles_path} lacks statements for: {', '.join(missing[:10])}")
    return book


class FeedbackGenerator:
    """Composes feedback rows; one instance per corpus, seeded once."""

    def __init__(self, params: GenerateParams, regions: list[Region], phrasebook: dict, vocabulary: dict):
        self.params = params
        self.book = phrasebook
        self.vocabulary = vocabulary
        self.rng = np.random.default_rng(params.seed)
        self.regions = regions
        self.region_by_code = {region.code: region for region in regions}
        for incident in params.incidents:
            if incident.region not in self.region_by_code:
                raise ConfigError(f"incident region {incident.region!r} is not in the regions file")
        population = np.array([region.population for region in regions], dtype=float)
        self.region_weights = population / population.sum()
        self.channels = [name for name in CHANNELS if name in params.channels]
        shares = np.array([params.channels[name].share for name in self.channels])
        self.channel_weights = shares / shares.sum()
        self.label_weights = np.array([params.label_distribution[label] for label in LABELS])
        hours = np.array(params.hourly_weights, dtype=float)
        self.hour_weights = hours / hours.sum()
        self.days = (params.end - params.start).days + 1
        self._build_pools()

    def _build_pools(self) -> None:
        """Draw names, streets and restaurants once from Faker (seeded) for speed."""
        fake = Faker(_FAKER_LOCALES)
        fake.seed_instance(self.params.seed)
        kinds = self.vocabulary["restaurant_kinds"]
        self.pools = {
            "first_name": [fake.first_name() for _ in range(_POOL_SIZE)],
            "last_name": [fake.last_name() for _ in range(_POOL_SIZE)],
            "email": [fake.unique.email() for _ in range(_POOL_SIZE)],
            "card": [fake.credit_card_number(card_type=kind) for kind in ("visa16", "mastercard") for _ in range(50)],
        }
        self.pools["restaurant"] = [
            f"{self._pick(kinds)} {self._pick(self.pools['last_name' if i % 2 else 'first_name'])}"
            for i in range(_POOL_SIZE)
        ]

    def _pick(self, items: list):
        return items[int(self.rng.integers(len(items)))]

    def _chance(self, probability: float) -> bool:
        return bool(self.rng.random() < probability)

    # --- one row -------------------------------------------------------------------

    def row(self, index: int) -> dict:
        params = self.params
        region = self.regions[self.rng.choice(len(self.regions), p=self.region_weights)]
        day = params.start + dt.timedelta(days=int(self.rng.integers(self.days)))
        timestamp = dt.datetime.combine(day, dt.time()) + dt.timedelta(
            hours=int(self.rng.choice(24, p=self.hour_weights)), seconds=int(self.rng.integers(3600))
        )
        channel = self.channels[self.rng.choice(len(self.channels), p=self.channel_weights)]
        language = "en" if self._chance(params.english_share) else "es"
        code_switched = language == "es" and self._chance(params.code_switching_share)

        incident = next((i for i in params.incidents if i.region == region.code and i.start <= day <= i.end), None)
        forced_aspect = incident.aspect if incident and self._chance(incident.negative_share) else None
        target = "negative" if forced_aspect else LABELS[self.rng.choice(len(LABELS), p=self.label_weights)]

        kind = self._kind(target, channel) if forced_aspect is None else "opinion"
        statements: list[tuple[str, int, str]] = []
        if kind == "short":
            polarities = {"general": {"negative": -1, "neutral": 0, "positive": 1}[target]}
            statements = [("general", polarities["general"], "stock")]
            text = self._pick(self.book["short_texts"][language][target])
        elif kind == "off_topic":
            polarities = {"other": 1 if target == "positive" else -1}
            statements = [("other", polarities["other"], "stock")]
            text = self._fill_slots(
                self._punctuate(self._statement("other", polarities["other"], language)[0], target), region
            )
        elif kind in NO_OPINION_KINDS:
            polarities = {}
            text = self._no_opinion(kind, channel, language, region)
        else:
            target_words = self._target_words(channel)
            polarities = self._sample_polarities(target, channel, forced_aspect, target_words)
            text, statements = self._compose(polarities, target, channel, language, region, target_words)
        label = label_from_polarities(polarities.values())
        assert label == target, "sampled polarities must produce the target label"

        if code_switched:
            text = self._code_switch(text)
        if channel == "social_media" and kind != "short":
            text = self._tweet_form(text, language)
        text, personal_data = self._add_noise(text, label, language, kind == "short")

        row = {
            "feedback_id": f"syn-{index:07d}",
            "text": text,
            "label": label,
            "language": language,
            "code_switched": code_switched,
            "region": region.code,
            "region_name": region.name,
            "place": self._pick(region.places),
            "channel": channel,
            "timestamp": timestamp,
            "stars": self._stars(label) if channel == "app_review" else None,
            "personal_data": personal_data,
            "incident": incident.aspect if forced_aspect else None,
            "kind": kind,
            "statements": ";".join(f"{aspect}:{polarity}:{style}" for aspect, polarity, style in statements),
        }
        for aspect in ASPECTS:
            row[aspect_column(aspect)] = polarities.get(aspect)
        return row

    def _kind(self, target: str, channel: str) -> str:
        """``short``, ``opinion``, ``off_topic`` (positive or negative rows) or a no-opinion kind (neutral rows)."""
        no_opinion = self.params.no_opinion.get(channel, {})
        if target == "neutral" and no_opinion:
            draw, cumulative = self.rng.random(), 0.0
            for kind, probability in no_opinion.items():
                cumulative += probability
                if draw < cumulative:
                    return kind
        elif target != "neutral" and self._chance(self.params.off_topic.get(channel, 0.0)):
            return "off_topic"
        return "short" if self._chance(self.params.channels[channel].short_text) else "opinion"

    def _no_opinion(self, kind: str, channel: str, language: str, region: Region) -> str:
        """A question, request, order status, promotion, news item or chit-chat: no opinion at all."""
        sentences = [self._pick(self.book["no_opinion"][kind][language])]
        if channel == "support_chat" and self._chance(self.params.channels[channel].opener):
            sentences.insert(0, self._pick(self.book["openers"][language][channel]))
        if kind in ("order_status", "chit_chat") and self._chance(0.3):
            sentences.append(self._pick(self.book["context"][language]))
        return self._fill_slots(" ".join(self._punctuate(s, "neutral") for s in sentences), region)

    def _sample_polarities(
        self, target: str, channel: str, forced_aspect: str | None, target_words: int
    ) -> dict[str, int]:
        """Pick aspects and polarities whose label (by the rule) is `target`.

        Long texts (narrative reviews) discuss more aspects: about one per
        ``_WORDS_PER_ASPECT`` words of the drawn length, up to six.
        """
        counts = self.params.channels[channel].aspect_counts
        size = 1 + int(self.rng.choice(len(counts), p=np.array(counts) / sum(counts)))
        size = max(size, min(6, target_words // _WORDS_PER_ASPECT))
        # Mostly agreeing statements, some dissent: this is where mixed feedback comes from.
        weights = {
            "positive": [0.12, 0.18, 0.70],
            "negative": [0.70, 0.18, 0.12],
            "neutral": [0.30, 0.40, 0.30],
        }[target]
        if target == "neutral" and size == 1:
            # Most neutral reviews are mixed (good and bad), like real 3-star reviews.
            size = 2 if self._chance(0.6) else 1
            weights = [0.45, 0.10, 0.45] if size == 2 else [0, 1, 0]
        while True:
            aspects = list(self.rng.choice(SERVICE_ASPECTS, size=size, replace=False))
            polarities = {str(aspect): int(self.rng.choice([-1, 0, 1], p=weights)) for aspect in aspects}
            if forced_aspect:
                polarities.pop(forced_aspect, None)
                polarities = {forced_aspect: -1, **dict(list(polarities.items())[: size - 1])}
            if label_from_polarities(polarities.values()) == target:
                return polarities

    def _statement(self, aspect: str, polarity: int, language: str) -> tuple[str, str]:
        """One statement and its style: a styled one where the styles file has one, else stock."""
        rates = self.params.styles
        draw, cumulative = self.rng.random(), 0.0
        for style in ("implicit", "negation", "comparison", "sarcasm"):
            if style == "sarcasm" and polarity != -1:
                continue
            cumulative += getattr(rates, style)
            if draw < cumulative:
                options = self._styled(style, aspect, language, polarity)
                if options:
                    statement = self._pick(options)
                    if style == "sarcasm" and self._chance(rates.sarcasm_marker):
                        statement = f"{statement} {self._pick(self.book['sarcasm_markers'][language])}"
                    return statement, style
                break
        return self._pick(self.book["aspects"][aspect][language][POLARITY_NAMES[polarity]]), "stock"

    def _styled(self, style: str, aspect: str, language: str, polarity: int) -> list[str]:
        return self.book["styles"].get(style, {}).get(aspect, {}).get(language, {}).get(POLARITY_NAMES[polarity], [])

    def _compose(
        self, polarities: dict[str, int], label: str, channel: str, language: str, region: Region, target_words: int
    ) -> tuple[str, list[tuple[str, int, str]]]:
        """Statements joined by connectors, lengthened towards the drawn word count."""
        book, channel_params = self.book, self.params.channels[channel]
        connectors = book["connectors"][language]
        sentences: list[str] = []
        statements: list[tuple[str, int, str]] = []
        previous = None
        for aspect, polarity in polarities.items():
            statement, style = self._statement(aspect, polarity, language)
            statements.append((aspect, polarity, style))
            if previous is not None and self._chance(0.55):
                kind = "contrast" if polarity * previous < 0 else "addition"
                sentences[-1] = f"{sentences[-1]}, {self._pick(connectors[kind])} {statement}"
            else:
                sentences.append(statement)
            previous = polarity

        def words() -> int:
            return sum(len(sentence.split()) for sentence in sentences)

        opened = words() < target_words and self._chance(channel_params.opener)
        if opened:
            sentences.insert(0, self._pick(book["openers"][language][channel]))
        # Narrative: neutral context sentences after the opener until the text is long enough.
        context = list(self.rng.permutation(book["context"][language])[:_MAX_CONTEXT_SENTENCES])
        while context and words() < 0.85 * target_words:
            sentences.insert(int(self.rng.integers(int(opened), len(sentences) + 1)), str(context.pop()))
        if words() < target_words and self._chance(channel_params.closer):
            sentences.append(self._pick(book["closers"][language][label]))
        text = " ".join(self._punctuate(s, label) for s in sentences)
        return self._fill_slots(text, region), statements

    def _target_words(self, channel: str) -> int:
        length = self.params.words[channel]
        drawn = length.median * float(np.exp(length.sigma * self.rng.standard_normal()))
        return int(min(length.max, max(1, round(drawn))))

    def _tweet_form(self, text: str, language: str) -> str:
        """Mentions, hashtags, a link and retweets, as on social media."""
        tweet, rates = self.book["tweet"], self.params.tweet
        if self._chance(rates.mention):
            handles = " ".join(f"@{self._pick(tweet['handles'])}" for _ in range(1 + int(self.rng.integers(2))))
            text = f"{handles} {text}"
        if self._chance(rates.hashtag):
            tags = " ".join(self._pick(tweet["hashtags"][language]) for _ in range(1 + int(self.rng.integers(3))))
            text = f"{text} {tags}"
        if self._chance(rates.link):
            code = "".join(self._pick(_LINK_CHARS) for _ in range(10))
            text = f"{text} {self._pick(tweet['link_hosts'])}{code}"
        if self._chance(rates.retweet):
            text = f"{self._pick(tweet['retweet']).format(handle=self._pick(tweet['handles']))} {text}"
        return text

    def _punctuate(self, sentence: str, label: str) -> str:
        sentence = sentence.strip()
        if sentence.startswith("#"):
            return sentence
        first = 1 if sentence[0] in "¿¡" and len(sentence) > 1 else 0
        sentence = sentence[: first + 1].upper() + sentence[first + 1 :]
        if sentence[-1] in ".!?…":
            return sentence
        excited = label != "neutral" and self._chance(self.params.noise.exclamation)
        ending = self._pick(["!", "!!", "!!!", "..."]) if excited else "."
        return sentence + ending

    def _fill_slots(self, text: str, region: Region) -> str:
        if "{" not in text:
            return text
        minutes = int(self.rng.integers(15, 60))
        slots = {
            "dish": self._pick(self.vocabulary["dishes"]),
            "restaurant": self._pick(self.pools["restaurant"]),
            "courier": self._pick(self.pools["first_name"]),
            "agent": self._pick(self.pools["first_name"]),
            "minutes": minutes,
            "minutes_late": int(self.rng.integers(20, 120)),
            "district": self._pick(region.places),
            "street": f"{self._pick(['Av.', 'Jr.', 'Calle', 'Pasaje'])} {self._pick(self.pools['last_name'])}"
            f" {int(self.rng.integers(100, 2000))}",
            "price": f"S/ {self.rng.integers(8, 120)}.{self._pick(['00', '50', '90', '99'])}",
            "order_id": f"#{self.rng.integers(100000, 999999)}",
            "brand": self._pick(self.vocabulary["brands"]),
            "payment_method": self._pick(self.vocabulary["payment_methods"]),
            "days": int(self.rng.integers(2, 16)),
            "code": f"{self._pick(['PIDE', 'YAPA', 'CHASQUI', 'ANTOJO', 'PROMO', 'HAMBRE'])}{self.rng.integers(5, 60)}",
            "percent": int(self._pick([10, 15, 20, 25, 30, 40, 50])),
        }
        slots["competitor"] = self._pick([b for b in self.vocabulary["brands"] if b != slots["brand"]])
        # One order's clock: ordered between 14:00 and 21:30, arrived soon (15-35 min) or late (80-150 min).
        ordered = int(self.rng.integers(14 * 60, 21 * 60 + 31))
        slots["hour"] = _clock(ordered)
        slots["hour_soon"] = _clock(ordered + int(self.rng.integers(15, 36)))
        slots["hour_late"] = _clock(ordered + int(self.rng.integers(80, 151)))
        return text.format(**slots)

    def _code_switch(self, text: str) -> str:
        """Swap one to three Spanish words for the English ones Peruvians drop in."""
        pairs = [p for p in self.book["code_switching"] if p["es"] in text]
        for pair in pairs[: 1 + int(self.rng.integers(3))]:
            text = text.replace(pair["es"], pair["en"], 1)
        return text

    def _add_noise(self, text: str, label: str, language: str, short: bool) -> tuple[str, str | None]:
        amounts, rng = self.params.noise, self.rng
        personal_data = None
        if not short and self._chance(amounts.personal_data):
            personal_data = self._pick(["email", "phone", "dni", "card"])
            template = self._pick(self.book["personal_data"][language][personal_data])
            sentence = template.format(**{personal_data: self._personal_value(personal_data)})
            text = f"{text} {self._punctuate(sentence, 'neutral')}"
        if self._chance(amounts.missing_accents):
            text = fold_accents(text)
        if self._chance(amounts.repeated_letters):
            text = noise.stretch_letters(text, rng)
        if self._chance(amounts.typo):
            text = noise.add_typos(text, rng, count=1 + int(rng.integers(3)))
        if self._chance(amounts.all_caps * (3 if label == "negative" else 1)):
            text = noise.shout(text)
        elif self._chance(amounts.lowercase):
            text = noise.lowercase(text)
        if self._chance(amounts.bare_ending) and text.endswith(".") and not text.endswith(".."):
            text = text[:-1]
        if self._chance(amounts.emoji):
            emojis = self.vocabulary["emojis"][label]
            text = f"{text} {''.join(self._pick(emojis) for _ in range(1 + int(rng.integers(3))))}"
        return text, personal_data

    def _personal_value(self, kind: str) -> str:
        rng = self.rng
        if kind == "email":
            return self._pick(self.pools["email"])
        if kind == "phone":
            digits = f"9{rng.integers(10**7, 10**8)}"
            return self._pick([digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}", f"+51 {digits}"])
        if kind == "dni":
            return f"{rng.integers(10**7, 10**8)}"
        card = self._pick(self.pools["card"])
        return self._pick([card, " ".join(card[i : i + 4] for i in range(0, len(card), 4))])

    def _stars(self, label: str) -> int:
        stars = self._pick(list(_LABEL_STARS[label]))
        if self._chance(self.params.star_noise):
            stars = min(5, max(1, stars + self._pick([-1, 1])))
        return stars


def _clock(minute_of_day: int) -> str:
    """A 12-hour clock time as people type it: "8", "8:30", "8:40"."""
    hour, minute = divmod(minute_of_day % (24 * 60), 60)
    hour = hour % 12 or 12
    return f"{hour}" if minute == 0 else f"{hour}:{minute:02d}"


def generate_feedback(
    params: GenerateParams, regions: list[Region], phrasebook: dict, vocabulary: dict, progress: bool = True
) -> pd.DataFrame:
    """Generate ``params.rows`` feedback rows, sorted by timestamp."""
    generator = FeedbackGenerator(params, regions, phrasebook, vocabulary)
    rows = [
        generator.row(i)
        for i in tqdm(range(params.rows), desc="generate", unit="row", disable=None if progress else True)
    ]
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    frame["stars"] = frame["stars"].astype("Int8")
    for aspect in ASPECTS:
        frame[aspect_column(aspect)] = frame[aspect_column(aspect)].astype("Int8")
    frame["source"] = "synthetic"
    frame["source_id"] = frame["feedback_id"]
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def statement_style_shares(feedback: pd.DataFrame) -> dict[str, float]:
    """Share of each statement style among all aspect statements of a generated corpus."""
    parts = feedback["statements"].str.split(";").explode()
    styles = parts[parts.fillna("") != ""].str.rsplit(":", n=1).str[-1]
    return {style: round(float(share), 4) for style, share in styles.value_counts(normalize=True).sort_index().items()}


def incident_events(params: GenerateParams, regions: list[Region], feedback: pd.DataFrame) -> list[dict]:
    """The scheduled incidents as ground truth, with the negative share they produced."""
    names = {region.code: region.name for region in regions}
    events = []
    for incident in params.incidents:
        in_region = feedback[feedback["region"] == incident.region]
        day = in_region["timestamp"].dt.date
        inside = in_region[(day >= incident.start) & (day <= incident.end)]
        outside = in_region[(day < incident.start) | (day > incident.end)]
        events.append(
            {
                "region": incident.region,
                "region_name": names[incident.region],
                "aspect": incident.aspect,
                "start": incident.start.isoformat(),
                "end": incident.end.isoformat(),
                "description": incident.description,
                "rows": len(inside),
                "negative_share": _negative_share(inside),
                "baseline_negative_share": _negative_share(outside),
            }
        )
    return events


def _negative_share(frame: pd.DataFrame) -> float | None:
    return round(float((frame["label"] == "negative").mean()), 4) if len(frame) else None
