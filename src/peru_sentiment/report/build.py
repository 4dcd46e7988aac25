"""The ``report`` stage: one self-contained HTML report, a Markdown summary and the model card.

Figures are embedded as base64 PNGs, so ``report.html`` opens offline as a
single file. The model runs only on what the report explains and on the
incident regions' feedback (a few hundred texts), to stay within minutes on a CPU.
A model with aspect heads adds the Aspects section and, per incident, the
aspect the model blames (also in ``incidents.json``, a DVC metrics file).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from peru_sentiment.config import Hyperparameters, Params, load_yaml
from peru_sentiment.errors import ConfigError
from peru_sentiment.explain.evidence import aspect_evidence
from peru_sentiment.explain.explain import explain_text
from peru_sentiment.metadata import write_json
from peru_sentiment.model.predictor import SentimentPredictor
from peru_sentiment.report import analysis, figures, inputs
from peru_sentiment.report.render import environment, explanation_views
from peru_sentiment.schema import ASPECT_POLARITIES, LABELS, MONITOR

log = logging.getLogger(__name__)

# (id, title) of the report's sections, in order; the browser test checks each id is present.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("data", "Data card"),
    ("realism", "Realism of the synthetic data"),
    ("sweep", "Hyperparameter sweep"),
    ("training", "Training curves"),
    ("metrics", "Test metrics against the baselines"),
    ("confusion", "Confusion matrix and calibration"),
    ("regions", "Per-region F1"),
    ("aspects", "Aspects"),  # models with aspect heads only
    ("mistakes", "Most confident mistakes"),
    ("explanations", "Attention and attribution"),
    ("incidents", "Regional sentiment over time and incidents"),
    ("model-card", "Model card"),
)
OUTPUTS = ("report.html", "report.md", "model_card.md")
INCIDENTS_FILE = "incidents.json"  # per incident: visible, blamed aspect, attributed (DVC metrics)


@dataclass(frozen=True)
class Explained:
    """One explained test text, ready for the templates."""

    row: dict
    explanation: dict
    views: str  # rollout and integrated gradients as highlighted words
    grid: str  # data URI of the layer x head attention grid


def explain_rows(predictor: SentimentPredictor, rows: pd.DataFrame, steps: int, progress: bool) -> list[Explained]:
    """Explanations, highlighted words and attention grids of the given test rows."""
    explained = []
    for row in tqdm(rows.to_dict("records"), desc="explaining", disable=not progress):
        result = explain_text(predictor, row["text"], steps)
        grid = figures.attention_grid_figure(np.asarray(result["attention"]), len(result["tokens"]))
        explained.append(
            Explained(
                row=row,
                explanation=result,
                views=explanation_views(result),
                grid=figures.to_data_uri(grid),
            )
        )
    return explained


def score_incidents(
    predictor: SentimentPredictor, splits: dict[str, pd.DataFrame], events: list[dict], params: Params
) -> tuple[list[dict], pd.DataFrame]:
    """(visibility per incident, negative-share timeline) from the model's predictions in the incident regions.

    With aspect heads each incident also names the aspect the model blames (``analysis.incident_attribution``).
    """
    feedback = pd.concat(splits.values(), ignore_index=True)
    rows = analysis.incident_rows(feedback, events, params.report)
    log.info("scoring %d texts of the incident regions", len(rows))
    texts = rows["text"].tolist()
    if predictor.aspects:
        probabilities, aspect_probabilities = predictor.predict_with_aspects(texts)
        negative = aspect_probabilities.argmax(axis=2) == ASPECT_POLARITIES.index(analysis.NEGATIVE)
        rows = rows.assign(
            **{analysis.negative_aspect_column(aspect): negative[:, i] for i, aspect in enumerate(predictor.aspects)}
        )
    else:
        probabilities = predictor.predict_proba(texts)
    scored = rows.assign(predicted=[predictor.labels[i] for i in probabilities.argmax(axis=1)])
    visibility = analysis.incident_visibility(scored, events, params.report)
    if predictor.aspects:
        attribution = analysis.incident_attribution(scored, events, list(predictor.aspects))
        visibility = [item | blame for item, blame in zip(visibility, attribution, strict=True)]
    return visibility, analysis.negative_timeline(scored, events, params.report.timeline_frequency)


def aspects_context(
    scores: dict | None, predictions: pd.DataFrame, predictor: SentimentPredictor, params: Params
) -> dict | None:
    """What the Aspects section shows, from the evaluation's ``aspects`` block; None for a model without heads.

    Each example's detected aspects come with their evidence: the words their heads attend to most.
    """
    if scores is None:
        return None
    aspects = list(scores["per_aspect"])
    examples = analysis.aspect_examples(predictions, aspects, params.report.aspect_examples, params.report.seed)
    evidence = aspect_evidence(predictor, examples["text"].tolist())
    examples["evidence"] = [
        "; ".join(f"{aspect}: {', '.join(words[aspect])}" for aspect in detected)
        for words, detected in zip(evidence, examples["detected"], strict=True)
    ]
    return {
        "table": analysis.aspect_scores_table(scores),
        "breakdowns": {
            column: analysis.aspect_breakdown_table(groups)
            for column, groups in scores.get("breakdowns", {}).items()
            if column in ("language", "channel")
        },
        "examples": examples,
        "confusion": figures.to_data_uri(
            figures.aspect_confusion_figure(
                scores["polarities"], {aspect: values["confusion"] for aspect, values in scores["per_aspect"].items()}
            )
        ),
    }


def incidents_summary(visibility: list[dict]) -> dict:
    """The incidents file: counts, then per incident (region/aspect/start) what the report found.

    Shares that cannot be computed (no texts on one side of the window) are null.
    """
    summary = {"incidents": len(visibility), "visible": sum(item["visible"] for item in visibility)}
    if any("attributed" in item for item in visibility):
        summary["attributed"] = sum(item["attributed"] for item in visibility)
    summary["by_incident"] = {
        f"{item['region']}/{item['aspect']}/{item['start']}": _nan_to_none(item) for item in visibility
    }
    return summary


def _nan_to_none(value):
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


class ModelCardText(BaseModel):
    """The hand-written model card file: a title, an owner and lists of statements per section."""

    model_config = ConfigDict(extra="forbid")

    title: str
    owner: str
    intended_use: list[str]
    out_of_scope: list[str]
    training_data: list[str]
    limitations: list[str]
    personal_data: list[str]


def model_card_context(params: Params, splits: dict[str, pd.DataFrame], details: dict, best: dict) -> dict:
    """The hand-written model card (``report.model_card``) with the numbers from this run."""
    path = params.report.model_card
    try:
        card = ModelCardText.model_validate(load_yaml(path)).model_dump()
    except ValidationError as error:
        raise ConfigError(
            f"{path}: {error.errors()[0]['loc']}: {error.errors()[0]['msg']} (quote text with colons)"
        ) from None
    model = details["test"]["model"]
    by_language = pd.DataFrame(model["breakdowns"].get("language", {})).T
    return {
        **card,
        "checkpoint": params.model.checkpoint,
        "backbone": params.pretrained.kind,
        "text_prefix": params.model.text_prefix,
        "hyperparameters": best,
        "rows": {name: len(frame) for name, frame in splits.items()},
        "train_rows_cap": params.train.train_rows,
        "test": {key: model[key] for key in ("macro_f1", "accuracy", "weighted_f1")}
        | {"ece": model["calibration"]["ece"]},
        "per_class": pd.DataFrame(model["per_class"]).T,
        "by_language": by_language,
    }


def build_report(params: Params, paths: inputs.Paths, out_dir: Path, *, progress: bool = True) -> dict:
    """Write ``report.html``, ``report.md`` and ``model_card.md`` to `out_dir`; return the stage summary."""
    splits = inputs.splits(paths)
    names = (
        pd.concat([frame[["region", "region_name"]] for frame in splits.values()])
        .drop_duplicates("region")
        .set_index("region")["region_name"]
        .to_dict()
    )
    card_tables = analysis.data_card(splits)
    card_tables["region"] = card_tables["region"].rename(index=names)
    sweep = inputs.sweep_summary(paths)
    best = inputs.read_json(paths.best_hparams, "tune")
    history = inputs.training_history(paths)
    details = inputs.evaluation_details(paths)
    predictions = inputs.test_predictions(paths)
    events = inputs.read_json(paths.events, "generate")
    realism = inputs.realism_details(paths)

    test = details["test"]
    scores = pd.DataFrame(
        {
            name: {key: result[key] for key in ("macro_f1", "accuracy", "weighted_f1")}
            for name, result in {"model": test["model"], **test["baselines"]}.items()
        }
    ).T
    mistakes = analysis.confident_mistakes(predictions, params.report.mistakes)

    predictor = SentimentPredictor.load(paths.model_dir, batch_size=params.report.batch_size)
    visibility, timeline = score_incidents(predictor, splits, events, params)
    sample = analysis.explanation_sample(predictions, params.report)
    explained = explain_rows(predictor, sample, params.report.ig_steps, progress)
    region_month = analysis.region_month_negative(predictions, params.report.heatmap_min_rows)
    aspects = aspects_context(test["model"].get("aspects"), predictions, predictor, params)

    log.info("drawing figures")
    hyperparameters = list(Hyperparameters.model_fields)
    images = {
        "data": figures.data_figure(card_tables),
        "sweep": figures.sweep_figure(sweep, hyperparameters),
        "training": figures.training_curves_figure(history),
        "baselines": figures.baselines_figure(scores),
        "confusion": figures.confusion_figure(**test["model"]["confusion_matrix"]),
        "calibration": figures.calibration_figure(
            test["model"]["calibration"]["reliability"], test["model"]["calibration"]["ece"]
        ),
        "regions": figures.region_f1_figure(test["model"]["breakdowns"].get("region", {}), names),
        "region_month": figures.region_month_figure(region_month, events, names),
    }
    if events:
        images["timeline"] = figures.timeline_figure(timeline, events)
    images = {name: figures.to_data_uri(figure) for name, figure in images.items()}

    context = {
        "sections": [(id_, title) for id_, title in SECTIONS if aspects or id_ != "aspects"],
        "params": params.report,
        "headline": inputs.read_json(paths.metrics, "evaluate")["test"],
        "card_tables": card_tables,
        "realism": realism,
        "realism_table": analysis.realism_table(realism),
        "split_rows": {name: len(frame) for name, frame in splits.items()},
        "sweep": sweep,
        "sweep_columns": [c for c in ["trial", "status", MONITOR, *hyperparameters, "duration_s"] if c in sweep],
        "best": best,
        "scores": scores,
        "mistakes": mistakes,
        "explained": explained,
        "missing_groups": _missing_groups(sample, params.report.explain_languages),
        "incidents": visibility,
        "aspects": aspects,
        "names": names,
        "images": images,
        "card": model_card_context(params, splits, details, best),
    }
    env = environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        (out_dir / name).write_text(env.get_template(f"{name}.j2").render(**context), encoding="utf-8")
        log.info("wrote %s", out_dir / name)
    incidents = incidents_summary(visibility)
    write_json(out_dir / INCIDENTS_FILE, incidents)
    return {
        "explained": len(explained),
        "incident_texts_scored": sum(item["rows_inside"] + item["rows_outside"] for item in visibility),
        "incidents_visible": incidents["visible"],
        "incidents": incidents["incidents"],
        **({"incidents_attributed": incidents["attributed"]} if "attributed" in incidents else {}),
        "html_bytes": (out_dir / "report.html").stat().st_size,
    }


def _missing_groups(sample: pd.DataFrame, languages: list[str]) -> list[str]:
    """The (label, correct/wrong, language) groups the test split had no example of."""
    present = set(zip(sample["label"], sample["correct"], sample["language"], strict=True))
    return [
        f"{label}, {'correct' if correct else 'wrong'}, {language}"
        for label in LABELS
        for correct in (True, False)
        for language in languages
        if (label, correct, language) not in present
    ]
