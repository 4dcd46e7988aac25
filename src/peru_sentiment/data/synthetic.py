"""Synthetic customer feedback for a food-delivery company in Peru.

Each text is composed from aspect-level statements (delivery time, food quality,
courier, ...), each with a polarity of -1, 0 or +1 taken from the phrasebook in
``configs/synthetic/``. The overall label follows from the statements by one
rule, :func:`label_from_polarities`, and the polarities are kept as ground-truth
columns (``aspect_<name>``), so a model is trained on a signal that exists.

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
from peru_sentiment.schema import ASPECTS, CHANNELS, LABELS, aspect_column
from peru_sentiment.text.normalize import fold_accents

log = logging.getLogger(__name__)

POLARITY_NAMES = {-1: "negative", 0: "neutral", 1: "positive"}
LANGUAGES = ("es", "en")
# Stars an app review gets for each label before noise.
_LABEL_STARS = {"negative": (1, 1, 2), "neutral": (3,), "positive": (4, 5, 5)}
_FAKER_LOCALES = ["es_MX", "es_CO", "es_AR", "es_ES", "es_CL"]
_POOL_SIZE = 400


def label_from_polarities(polarities: Iterable[int]) -> str:
    """The labelling rule: the sign of the summed aspect polarities.

    More positive than negative statements is ``positive``, more negative than
    positive is ``negative``; only neutral statements, or as many positive as
    negative ones (mixed feedback), is ``neutral``.
    """
    total = sum(polarities)
    return "positive" if total > 0 else "negative" if total < 0 else "neutral"


def load_phrasebook(path: str | Path) -> dict:
    """Read the phrasebook and check that every aspect, language and polarity has statements."""
    book = load_yaml(path)
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
    if missing:
        raise ConfigError(f"{path} lacks statements for: {', '.join(missing[:10])}")
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

        channel_params = params.channels[channel]
        short = forced_aspect is None and self._chance(channel_params.short_text)
        if short:
            polarities = {"general": {"negative": -1, "neutral": 0, "positive": 1}[target]}
            text = self._pick(self.book["short_texts"][language][target])
        else:
            polarities = self._sample_polarities(target, channel, forced_aspect)
            text = self._compose(polarities, target, channel, language, region)
        label = label_from_polarities(polarities.values())
        assert label == target, "sampled polarities must produce the target label"

        if code_switched:
            text = self._code_switch(text)
        text, personal_data = self._add_noise(text, label, language, short)

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
        }
        for aspect in ASPECTS:
            row[aspect_column(aspect)] = polarities.get(aspect)
        return row

    def _sample_polarities(self, target: str, channel: str, forced_aspect: str | None) -> dict[str, int]:
        """Pick aspects and polarities whose label (by the rule) is `target`."""
        counts = self.params.channels[channel].aspect_counts
        size = 1 + int(self.rng.choice(len(counts), p=np.array(counts) / sum(counts)))
        # Mostly agreeing statements, some dissent: this is where mixed feedback comes from.
        weights = {
            "positive": [0.12, 0.18, 0.70],
            "negative": [0.70, 0.18, 0.12],
            "neutral": [0.22, 0.56, 0.22],
        }[target]
        if target == "neutral" and size == 1:
            weights = [0, 1, 0]
        while True:
            aspects = list(self.rng.choice(ASPECTS, size=size, replace=False))
            polarities = {str(aspect): int(self.rng.choice([-1, 0, 1], p=weights)) for aspect in aspects}
            if forced_aspect:
                polarities.pop(forced_aspect, None)
                polarities = {forced_aspect: -1, **dict(list(polarities.items())[: size - 1])}
            if label_from_polarities(polarities.values()) == target:
                return polarities

    def _statement(self, aspect: str, polarity: int, language: str) -> str:
        return self._pick(self.book["aspects"][aspect][language][POLARITY_NAMES[polarity]])

    def _compose(self, polarities: dict[str, int], label: str, channel: str, language: str, region: Region) -> str:
        book, channel_params = self.book, self.params.channels[channel]
        connectors = book["connectors"][language]
        sentences: list[str] = []
        if self._chance(channel_params.opener):
            sentences.append(self._pick(book["openers"][language][channel]))
        previous = None
        for aspect, polarity in polarities.items():
            statement = self._statement(aspect, polarity, language)
            if previous is not None and self._chance(0.55):
                kind = "contrast" if polarity * previous < 0 else "addition"
                sentences[-1] = f"{sentences[-1]}, {self._pick(connectors[kind])} {statement}"
            else:
                sentences.append(statement)
            previous = polarity
        if self._chance(channel_params.closer):
            sentences.append(self._pick(book["closers"][language][label]))
        if channel == "social_media" and self._chance(0.4):
            sentences.append(self._pick(self.vocabulary["hashtags"][language]))
        text = " ".join(self._punctuate(s, label) for s in sentences)
        return self._fill_slots(text, region)

    def _punctuate(self, sentence: str, label: str) -> str:
        sentence = sentence.strip()
        if sentence.startswith("#"):
            return sentence
        sentence = sentence[0].upper() + sentence[1:]
        if sentence[-1] in ".!?…":
            return sentence
        ending = "." if label == "neutral" or not self._chance(0.3) else self._pick(["!", "!!", "!!!", "..."])
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
        }
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
