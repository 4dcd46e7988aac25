"""Typed view of ``params.yaml``: the one place that reads and validates parameters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peru_sentiment.errors import ConfigError
from peru_sentiment.schema import CHANNELS, LABELS, NO_OPINION_KINDS, SERVICE_ASPECTS

__all__ = ["ConfigError", "Params", "load_params", "load_yaml"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WordCountParams(_Strict):
    """Log-normal distribution of a channel's text length in words, fitted to real feedback."""

    median: float = Field(gt=0)
    sigma: float = Field(ge=0)
    max: int = Field(gt=0)


class ChannelParams(_Strict):
    share: float = Field(gt=0)
    aspect_counts: list[float] = Field(min_length=1)
    short_text: float = Field(ge=0, le=1)
    opener: float = Field(ge=0, le=1)
    closer: float = Field(ge=0, le=1)


class StyleParams(_Strict):
    """Per-statement probability of each statement style (the rest are stock opinions)."""

    implicit: float = Field(ge=0, le=1)
    negation: float = Field(ge=0, le=1)
    comparison: float = Field(ge=0, le=1)
    sarcasm: float = Field(ge=0, le=1)  # of negative statements only
    sarcasm_marker: float = Field(ge=0, le=1)  # sarcastic statements followed by a marker (🙃, jajaja)

    @model_validator(mode="after")
    def _check(self) -> StyleParams:
        if self.implicit + self.negation + self.comparison + self.sarcasm > 1 + 1e-9:
            raise ValueError("statement style probabilities must sum to at most 1")
        return self


class TweetParams(_Strict):
    """Social-media form, per social_media text: probabilities of each element."""

    mention: float = Field(ge=0, le=1)
    hashtag: float = Field(ge=0, le=1)
    link: float = Field(ge=0, le=1)
    retweet: float = Field(ge=0, le=1)


class NoiseParams(_Strict):
    typo: float = Field(ge=0, le=1)
    missing_accents: float = Field(ge=0, le=1)
    repeated_letters: float = Field(ge=0, le=1)
    emoji: float = Field(ge=0, le=1)
    all_caps: float = Field(ge=0, le=1)
    lowercase: float = Field(ge=0, le=1)
    bare_ending: float = Field(ge=0, le=1)
    exclamation: float = Field(ge=0, le=1)
    personal_data: float = Field(ge=0, le=1)


class IncidentParams(_Strict):
    region: str
    aspect: str
    start: dt.date
    end: dt.date
    negative_share: float = Field(gt=0, le=1)
    description: str

    @model_validator(mode="after")
    def _check(self) -> IncidentParams:
        if self.aspect not in SERVICE_ASPECTS:
            raise ValueError(f"unknown aspect {self.aspect!r}; use one of {', '.join(SERVICE_ASPECTS)}")
        if self.end < self.start:
            raise ValueError(f"incident ends ({self.end}) before it starts ({self.start})")
        return self


class GenerateParams(_Strict):
    seed: int
    rows: int = Field(gt=0)
    start: dt.date
    end: dt.date
    english_share: float = Field(ge=0, le=1)
    code_switching_share: float = Field(ge=0, le=1)
    label_distribution: dict[str, float]
    hourly_weights: list[float] = Field(min_length=24, max_length=24)
    channels: dict[str, ChannelParams]
    star_noise: float = Field(ge=0, le=1)
    noise: NoiseParams
    words: dict[str, WordCountParams]
    # Per channel, for a neutral row: probability of each no-opinion text kind.
    no_opinion: dict[str, dict[str, float]] = {}
    # Per channel, for a positive or negative row: probability of an off-topic opinion.
    off_topic: dict[str, float] = {}
    styles: StyleParams
    tweet: TweetParams
    incidents: list[IncidentParams] = []

    @model_validator(mode="after")
    def _check(self) -> GenerateParams:
        if set(self.label_distribution) != set(LABELS):
            raise ValueError(f"label_distribution needs exactly the labels {', '.join(LABELS)}")
        if abs(sum(self.label_distribution.values()) - 1) > 1e-6:
            raise ValueError("label_distribution must sum to 1")
        unknown = set(self.channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channels {sorted(unknown)}; use {', '.join(CHANNELS)}")
        if self.end < self.start:
            raise ValueError("generate.end is before generate.start")
        missing = set(self.channels) - set(self.words)
        if missing:
            raise ValueError(f"generate.words needs a length for the channels {sorted(missing)}")
        for channel, kinds in self.no_opinion.items():
            unknown = set(kinds) - set(NO_OPINION_KINDS)
            if channel not in CHANNELS or unknown:
                raise ValueError(f"generate.no_opinion.{channel}: use channels {CHANNELS} and kinds {NO_OPINION_KINDS}")
            if sum(kinds.values()) > 1 + 1e-9:
                raise ValueError(f"generate.no_opinion.{channel}: probabilities must sum to at most 1")
        for channel, share in self.off_topic.items():
            if channel not in CHANNELS or not 0 <= share <= 1:
                raise ValueError(f"generate.off_topic.{channel}: use channels {CHANNELS} and a probability")
        return self


class ColumnMap(_Strict):
    text: str
    label: str | None = None
    stars: str | None = None
    region: str | None = None
    channel: str | None = None
    timestamp: str | None = None
    language: str | None = None
    source_id: str | None = None


class SourceParams(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path
    # train: joins the training pool; external: held out for evaluation only;
    # unlabelled: texts without labels, used only to adapt the model (self-training, label-shift priors)
    role: Literal["train", "external", "unlabelled"] = "train"
    columns: ColumnMap
    labels: dict[str, str] | None = None
    encoding: str = "utf-8"
    # Dates that are not ISO 8601: day first (06/01/2026 is 6 January, as written in Peru), or an
    # explicit strptime format such as "%m/%d/%Y".
    dayfirst: bool = True
    date_format: str | None = None

    @model_validator(mode="after")
    def _label_columns(self) -> SourceParams:
        mapped = (self.columns.label is not None) + (self.columns.stars is not None)
        if self.role == "unlabelled" and mapped:
            raise ValueError(f"source {self.name!r} is unlabelled: map neither `label` nor `stars` (or use role train)")
        if self.role != "unlabelled" and mapped != 1:
            raise ValueError(f"source {self.name!r}: map exactly one of `label` or `stars` to a column")
        return self

    @field_validator("labels")
    @classmethod
    def _labels_known(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            bad = sorted(set(value.values()) - set(LABELS))
            if bad:
                raise ValueError(f"labels map to unknown labels {bad}; use {', '.join(LABELS)}")
        return value


class StarParams(_Strict):
    negative_max: int
    positive_min: int


class IngestParams(_Strict):
    sources: list[SourceParams] = []
    stars: StarParams
    max_text_chars: int = Field(gt=0)
    earliest_date: dt.date
    latest_date: dt.date

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: list[SourceParams]) -> list[SourceParams]:
        names = [source.name for source in value]
        if len(names) != len(set(names)):
            raise ValueError("ingest.sources names must be unique")
        return value


class NearDuplicateParams(_Strict):
    shingle_size: int = Field(ge=1)
    num_perm: int = Field(ge=16)
    threshold: float = Field(gt=0, le=1)
    seed: int


class PreprocessParams(_Strict):
    detect_languages: list[str] = Field(min_length=2)
    min_language_confidence: float = Field(ge=0, le=1)
    stopwords: list[str]
    lexicons: dict[str, str]


class TopicParams(_Strict):
    n_topics: int = Field(ge=2)
    max_features: int = Field(ge=10)
    seed: int


class SplitParams(_Strict):
    seed: int
    validation: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)
    topics: TopicParams


class TinyBertParams(_Strict):
    hidden: int = Field(ge=8)
    layers: int = Field(ge=1)
    heads: int = Field(ge=1)
    intermediate: int = Field(ge=8)
    vocab_size: int = Field(ge=100)
    max_positions: int = Field(ge=16)
    seed: int


class PretrainedParams(_Strict):
    """What the ``pretrained`` stage builds into ``models/pretrained``."""

    kind: Literal["e5-small", "tiny"]
    tiny: TinyBertParams


class ModelParams(_Strict):
    checkpoint: str  # local Hugging Face directory or hf://<org>/<name>
    text_prefix: str = ""


class Hyperparameters(_Strict):
    """The values the sweep searches; ``train`` holds the defaults, the sweep's best overrides them."""

    learning_rate: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    warmup_ratio: float = Field(ge=0, lt=1)
    pooling: Literal["mean", "cls"]
    trainable_layers: int = Field(ge=0)
    max_length: int = Field(ge=8)


class AspectParams(_Strict):
    """The multi-task aspect heads: per aspect, absent / negative / neutral / positive from its own attention
    over the tokens (``model.classifier.AspectAttention``)."""

    enabled: bool = False  # off: the classifier is the single overall head, as before the aspect heads
    loss_weight: float = Field(default=1.0, ge=0)  # total loss = overall loss + loss_weight * aspect loss
    names: list[str] = Field(default=list(SERVICE_ASPECTS), min_length=1)  # the aspects with a head, in this order
    weight_scale: float = Field(default=1.0, gt=0)  # the heads learn this many times faster than the backbone
    # after fine-tuning, epochs of the heads alone on the backbone's token vectors (training.aspect_refinement)
    refine_epochs: int = Field(default=0, ge=0)
    refine_learning_rate: float = Field(default=1e-4, gt=0)

    @field_validator("names")
    @classmethod
    def _names_known(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in SERVICE_ASPECTS]
        if unknown:
            raise ValueError(f"unknown aspects {unknown}; use some of {', '.join(SERVICE_ASPECTS)}")
        if len(set(value)) != len(value):
            raise ValueError("aspect names must be unique")
        return value


class TrainParams(Hyperparameters):
    seed: int
    epochs: int = Field(ge=1)
    train_rows: int | None = Field(default=None, ge=10)  # cap on training rows (stratified sample); null = all
    weight_decay: float = Field(ge=0)
    loss: Literal["cross_entropy", "focal"]
    focal_gamma: float = Field(ge=0)
    class_weights: bool
    early_stopping_patience: int = Field(ge=0)
    bucket_lengths: list[int] = Field(min_length=1)
    jit_compile: bool
    freeze_word_embeddings: bool
    mixed_precision: Literal["none", "mixed_float16", "mixed_bfloat16"]
    distribution: Literal["default", "mirrored"]
    aspects: AspectParams = AspectParams()

    def with_hyperparameters(self, values: dict) -> TrainParams:
        """These parameters with the given hyperparameters (e.g. the sweep's best) replacing the defaults."""
        unknown = set(values) - set(Hyperparameters.model_fields)
        if unknown:
            raise ConfigError(f"unknown hyperparameters {sorted(unknown)}")
        return self.model_copy(update=values)


class TuneParams(_Strict):
    search_space: Path
    epochs: int = Field(ge=1)  # epochs per trial (Hyperband sets its own)
    train_rows: int | None = Field(default=None, ge=10)  # training rows each trial sees (stratified sample)
    validation_rows: int | None = Field(default=None, ge=10)


class LabelShiftParams(_Strict):
    """Saerens-Latinne-Decaestecker EM estimate of each external source's label prior."""

    adjust: bool = False  # report the prior-adjusted predictions as the source's predictions
    calibrate: bool = True  # bias-corrected temperature scaling on the validation split before EM
    # external source -> unlabelled source whose texts estimate its prior (default: the external texts themselves)
    prior_from: dict[str, str] = {}
    max_iterations: int = Field(default=100, ge=1)
    tolerance: float = Field(default=1e-6, gt=0)


class EvaluateParams(_Strict):
    batch_size: int = Field(ge=1)
    calibration_bins: int = Field(ge=2)
    breakdowns: list[str]
    label_shift: LabelShiftParams = LabelShiftParams()


class RealSourceMix(_Strict):
    """How an imported labelled source joins the synthetic rows in training."""

    weight: float = Field(default=1.0, gt=0)  # loss weight of each of its rows (synthetic rows weigh 1)
    max_rows: int | None = Field(default=None, ge=1)  # stratified sample of at most this many rows; null = all


class SelfTrainingParams(_Strict):
    """One round of self-training on imported unlabelled texts (does nothing without them)."""

    enabled: bool = True
    threshold: float = Field(default=0.9, gt=0, le=1)  # keep a pseudo-label at least this probable
    max_per_class: int = Field(default=1000, ge=1)  # most confident first, so no class floods the round
    max_unlabelled_rows: int | None = Field(default=5000, ge=1)  # unlabelled texts scored (random sample)
    weight: float = Field(default=0.5, gt=0)  # loss weight of a pseudo-labelled row
    labelled_rows: int | None = Field(default=2000, ge=1)  # labelled training rows mixed into the round
    epochs: int = Field(default=1, ge=1)  # the round continues training the first model


class AdaptationParams(_Strict):
    """Learning from the user's real feedback: labelled sources' weights and caps, self-training."""

    default: RealSourceMix = RealSourceMix()
    sources: dict[str, RealSourceMix] = {}  # by ingest source name; unlisted sources get `default`
    self_training: SelfTrainingParams = SelfTrainingParams()

    def mix(self, source: str) -> RealSourceMix:
        return self.sources.get(source, self.default)


class RealismParams(_Strict):
    """How the ``realism`` stage compares the synthetic corpus with each imported real set."""

    seed: int
    folds: int = Field(ge=2)  # cross-validation folds of the domain classifier
    max_rows: int = Field(ge=10)  # texts per side (synthetic, real set) that are compared
    top_ngrams: int = Field(ge=1)  # n-grams listed that give each side away


class ReportParams(_Strict):
    """What the ``report`` stage samples, scores and explains."""

    seed: int
    batch_size: int = Field(ge=1)
    mistakes: int = Field(ge=1)  # most confident mistakes listed
    examples_per_group: int = Field(ge=1)  # explained per (label, correct or wrong, language)
    aspect_examples: int = Field(ge=1)  # test texts shown with their true and predicted aspects
    explain_languages: list[str] = Field(min_length=1)
    ig_steps: int = Field(ge=4)
    incident_rows: int = Field(ge=10)  # cap on scored rows inside each incident's region and window
    baseline_rows: int = Field(ge=10)  # scored rows of the same region outside the window
    incident_min_lift: float = Field(gt=0, lt=1)
    incident_alpha: float = Field(gt=0, lt=1)
    timeline_frequency: str  # pandas offset alias of the timeline bins, e.g. W (weekly)
    heatmap_min_rows: int = Field(ge=1)
    model_card: Path


class ExportParams(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")  # bundle versions are <name>-<weights digest>
    verify_rows: int = Field(ge=1)  # validation texts the exported model must reproduce
    tolerance: float = Field(gt=0)  # largest allowed probability difference to the trained model
    explain_steps: int = Field(ge=4)  # integrated-gradients steps of the bundle's explain endpoint
    fast_runtime: Literal["openvino", "none"]  # a fast CPU model beside the SavedModel (export.fast_runtime)
    fast_precision: Literal["bf16", "f32"]  # OpenVINO inference precision hint
    fast_max_f1_change: float = Field(ge=0)  # largest validation macro-F1 change allowed vs float32
    fast_max_flip_rate: float = Field(ge=0, le=1)  # largest share of validation labels allowed to change
    # largest share of validation (text, aspect) polarities allowed to change (models with aspect heads)
    fast_max_aspect_flip_rate: float = Field(default=0.02, ge=0, le=1)


class Params(BaseModel):
    """All pipeline parameters. Sections later stages add are kept but not validated here."""

    model_config = ConfigDict(extra="allow", frozen=True)

    generate: GenerateParams
    ingest: IngestParams
    near_duplicates: NearDuplicateParams
    preprocess: PreprocessParams
    split: SplitParams
    pretrained: PretrainedParams
    model: ModelParams
    train: TrainParams
    tune: TuneParams
    evaluate: EvaluateParams
    realism: RealismParams
    report: ReportParams
    export: ExportParams
    adaptation: AdaptationParams = AdaptationParams()

    @model_validator(mode="after")
    def _adaptation_sources_declared(self) -> Params:
        roles = {source.name: source.role for source in self.ingest.sources}
        for name in self.adaptation.sources:
            if roles.get(name) != "train":
                raise ValueError(f"adaptation.sources names {name!r}, which is not an ingest source with role train")
        for external, unlabelled in self.evaluate.label_shift.prior_from.items():
            if roles.get(external) != "external" or roles.get(unlabelled) != "unlabelled":
                raise ValueError(
                    f"evaluate.label_shift.prior_from maps {external!r} to {unlabelled!r}: "
                    "it needs an external source and an unlabelled one from ingest.sources"
                )
        return self


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise ConfigError with a readable message."""
    raw = load_yaml(path)
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}" for issue in error.errors()
        )
        raise ConfigError(f"{path} is invalid: {problems}") from None


def load_yaml(path: str | Path) -> dict:
    """Load a YAML mapping, turning a missing or malformed file into a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found; run from the repository root or pass --params")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data
