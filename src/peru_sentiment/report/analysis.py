"""Tables the report derives from the predictions: data card, mistakes, explained sample, incidents, aspects."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from peru_sentiment.config import ReportParams
from peru_sentiment.data.card import BREAKDOWNS, feedback_counts
from peru_sentiment.model.inputs import aspect_targets
from peru_sentiment.schema import ASPECT_POLARITIES, predicted_aspect_column, true_aspect_column

NEGATIVE = "negative"
ABSENT = "absent"


def data_card(splits: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Per breakdown (label, region, channel, language), rows per value and split, with a total column."""
    counts = {name: feedback_counts(frame) for name, frame in splits.items()}
    tables = {}
    for column in BREAKDOWNS:
        table = pd.DataFrame({name: split_counts.get(column, {}) for name, split_counts in counts.items()})
        table = table.fillna(0).astype(int)
        table["total"] = table.sum(axis=1)
        tables[column] = table.sort_values("total", ascending=False)
    return tables


def confident_mistakes(predictions: pd.DataFrame, count: int) -> pd.DataFrame:
    """The `count` wrong test predictions the model was most sure of."""
    wrong = predictions[predictions["predicted"] != predictions["label"]]
    return wrong.sort_values("confidence", ascending=False).head(count).reset_index(drop=True)


def explanation_sample(predictions: pd.DataFrame, params: ReportParams) -> pd.DataFrame:
    """Test texts to explain: `examples_per_group` per true label x correct/wrong x language (where any exist)."""
    frame = predictions[predictions["language"].isin(params.explain_languages)].assign(
        correct=lambda f: f["predicted"] == f["label"]
    )
    keys = ["label", "correct", "language"]
    shuffled = frame.sample(frac=1, random_state=params.seed)
    return shuffled.groupby(keys).head(params.examples_per_group).sort_values(keys).reset_index(drop=True)


def incident_rows(feedback: pd.DataFrame, events: list[dict], params: ReportParams) -> pd.DataFrame:
    """Per incident, feedback of its region inside the window (capped) and a baseline sample outside it."""
    day = feedback["timestamp"].dt.normalize()
    parts = []
    for number, event in enumerate(events):
        region = feedback["region"] == event["region"]
        inside = (day >= pd.Timestamp(event["start"])) & (day <= pd.Timestamp(event["end"]))
        for in_window, cap in ((True, params.incident_rows), (False, params.baseline_rows)):
            rows = feedback[region & (inside == in_window)]
            rows = rows.sample(min(len(rows), cap), random_state=params.seed)
            parts.append(rows.assign(incident=number, in_window=in_window))
    return pd.concat(parts, ignore_index=True) if parts else feedback.head(0).assign(incident=0, in_window=False)


def incident_visibility(scored: pd.DataFrame, events: list[dict], params: ReportParams) -> list[dict]:
    """Per incident: true and predicted negative share inside the window and outside, and whether it shows.

    Visible: the predicted negative share inside exceeds the baseline by at
    least ``incident_min_lift`` and a one-sided two-proportion z-test rejects
    "no rise" at ``incident_alpha``.
    """
    results = []
    for number, event in enumerate(events):
        rows = scored[scored["incident"] == number]
        inside, outside = rows[rows["in_window"]], rows[~rows["in_window"]]
        predicted_in, predicted_out = _share(inside["predicted"]), _share(outside["predicted"])
        p_value = _rise_p_value(inside["predicted"] == NEGATIVE, outside["predicted"] == NEGATIVE)
        lift = predicted_in - predicted_out
        results.append(
            {
                **{key: event[key] for key in ("region", "region_name", "aspect", "start", "end", "description")},
                "rows_inside": len(inside),
                "rows_outside": len(outside),
                "true_negative_inside": _share(inside["label"]),
                "true_negative_outside": _share(outside["label"]),
                "predicted_negative_inside": predicted_in,
                "predicted_negative_outside": predicted_out,
                "lift": lift,
                "p_value": p_value,
                "visible": bool(lift >= params.incident_min_lift and p_value < params.incident_alpha),
            }
        )
    return results


def negative_aspect_column(aspect: str) -> str:
    """Column of the incident rows saying whether the model reads the aspect as negative in the text."""
    return f"negative_{aspect}"


def incident_attribution(scored: pd.DataFrame, events: list[dict], aspects: list[str]) -> list[dict]:
    """Per incident, the aspect the model blames, next to the true one.

    The blamed aspect is the one whose predicted negative share (texts whose ``negative_<aspect>``
    column is true) rises most from the region's baseline rows to the rows inside the window; none
    when no aspect rises, several rise most alike, or either side has no rows. ``attributed``: the blamed aspect is the
    incident's. ``aspect_rises`` holds every aspect's predicted rise, in share points (0..1), and
    ``true_rise`` the rise of the incident aspect's true negative share (generator's truth, rows
    with truth only; NaN without).
    """
    results = []
    for number, event in enumerate(events):
        rows = scored[scored["incident"] == number]
        inside = rows["in_window"].to_numpy(bool)
        rises = {aspect: _rise(rows[negative_aspect_column(aspect)], inside) for aspect in aspects}
        rising = {aspect: rise for aspect, rise in rises.items() if rise > 0}
        top = max(rising.values(), default=math.nan)
        leaders = [aspect for aspect, rise in rising.items() if math.isclose(rise, top)]
        blamed = leaders[0] if len(leaders) == 1 else None
        truth = aspect_targets(rows, [event["aspect"]])[:, 0]
        true_negative = pd.Series(truth == ASPECT_POLARITIES.index(NEGATIVE)).where(truth >= 0)
        results.append(
            {
                "blamed_aspect": blamed,
                "blamed_rise": rises[blamed] if blamed else math.nan,
                "attributed": blamed == event["aspect"],
                "true_rise": _rise(true_negative, inside),
                "aspect_rises": rises,
            }
        )
    return results


def _rise(values: pd.Series, inside: np.ndarray) -> float:
    """Mean of `values` inside the window minus outside it (NaN values left out); NaN when a side has none."""
    values = pd.Series(values).astype(float).to_numpy()
    inside_mean, outside_mean = (
        float(np.nanmean(part)) if np.isfinite(part).any() else math.nan for part in (values[inside], values[~inside])
    )
    return inside_mean - outside_mean


def aspect_scores_table(scores: dict) -> pd.DataFrame:
    """One row per aspect and one for all of them (micro): test mentions, detection and polarity scores.

    `scores` is the evaluation's ``aspects`` block (``evaluation.metrics.aspect_metrics``).
    """
    rows = {
        aspect: {
            "mentions": values["present"],
            "detected": values["detected"],
            "precision": values["precision"],
            "recall": values["recall"],
            "F1": values["f1"],
            "polarity texts": values["polarity"]["cells"],
            "polarity macro-F1": values["polarity"]["macro_f1"],
        }
        for aspect, values in scores["per_aspect"].items()
    }
    per_aspect = pd.DataFrame(rows).T
    rows["all aspects (micro)"] = {
        "mentions": per_aspect["mentions"].sum(),
        "detected": per_aspect["detected"].sum(),
        "precision": scores["detection"]["precision"],
        "recall": scores["detection"]["recall"],
        "F1": scores["detection"]["f1"],
        "polarity texts": scores["polarity"]["cells"],
        "polarity macro-F1": scores["polarity"]["macro_f1"],
    }
    return pd.DataFrame(rows).T


def aspect_breakdown_table(by_group: dict) -> pd.DataFrame:
    """One row per group (e.g. language): texts with aspect truth, detection P/R/F1, polarity macro-F1."""
    columns = {
        "rows": "texts",
        "precision": "precision",
        "recall": "recall",
        "f1": "F1",
        "polarity_macro_f1": "polarity macro-F1",
    }
    return pd.DataFrame(by_group).T.reindex(columns=list(columns)).rename(columns=columns)


def aspect_examples(predictions: pd.DataFrame, aspects: list[str], count: int, seed: int) -> pd.DataFrame:
    """Up to `count` test texts that mention an aspect, about half read right on every aspect and half not.

    Columns ``text``, ``true`` and ``predicted`` (the aspects found, as "aspect: polarity" lists),
    ``detected`` (the names of the predicted aspects) and ``correct``; only rows with aspect truth.
    """
    true_columns = [true_aspect_column(aspect) for aspect in aspects]
    predicted_columns = [predicted_aspect_column(aspect) for aspect in aspects]
    with_truth = predictions.dropna(subset=true_columns)
    true, predicted = with_truth[true_columns].to_numpy(), with_truth[predicted_columns].to_numpy()
    frame = pd.DataFrame(
        {
            "text": with_truth["text"].to_numpy(),
            "true": [_found(aspects, row) for row in true],
            "predicted": [_found(aspects, row) for row in predicted],
            "detected": [
                [a for a, polarity in zip(aspects, row, strict=True) if polarity != ABSENT] for row in predicted
            ],
            "correct": (true == predicted).all(axis=1),
        }
    )
    frame = frame[frame["true"] != ""].sample(frac=1, random_state=seed)
    right, wrong = frame[frame["correct"]], frame[~frame["correct"]]
    take_wrong = min(len(wrong), max(count - len(right), count // 2))
    return pd.concat([right.head(count - take_wrong), wrong.head(take_wrong)], ignore_index=True)


def _found(aspects: list[str], polarities) -> str:
    """ "delivery_time: negative, courier: positive" for the aspects not absent."""
    return ", ".join(
        f"{aspect}: {polarity}" for aspect, polarity in zip(aspects, polarities, strict=True) if polarity != ABSENT
    )


def _share(labels: pd.Series) -> float:
    return float((labels == NEGATIVE).mean()) if len(labels) else math.nan


def _rise_p_value(inside: pd.Series, outside: pd.Series) -> float:
    """One-sided two-proportion z-test of share(inside) > share(outside)."""
    n1, n2 = len(inside), len(outside)
    if not n1 or not n2:
        return math.nan
    pooled = (inside.sum() + outside.sum()) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (inside.mean() - outside.mean()) / spread
    return float(0.5 * math.erfc(z / math.sqrt(2)))


def negative_timeline(scored: pd.DataFrame, events: list[dict], frequency: str) -> pd.DataFrame:
    """Per incident region and period: rows, true and predicted negative share (long table)."""
    frame = scored.assign(
        region_name=scored["incident"].map({i: event["region_name"] for i, event in enumerate(events)}),
        period=scored["timestamp"].dt.to_period(frequency).dt.start_time,
        true_negative=scored["label"] == NEGATIVE,
        predicted_negative=scored["predicted"] == NEGATIVE,
    )
    grouped = frame.groupby(["incident", "region_name", "period"])
    return grouped.agg(
        rows=("label", "size"),
        true_negative=("true_negative", "mean"),
        predicted_negative=("predicted_negative", "mean"),
    ).reset_index()


def region_month_negative(predictions: pd.DataFrame, min_rows: int) -> pd.DataFrame:
    """Predicted negative share per region (rows) and month (columns) on the test split; sparse cells are NaN."""
    frame = predictions.assign(
        month=predictions["timestamp"].dt.to_period("M").astype(str),
        negative=predictions["predicted"] == NEGATIVE,
    )
    share = frame.pivot_table(index="region", columns="month", values="negative", aggfunc="mean")
    rows = frame.pivot_table(index="region", columns="month", values="negative", aggfunc="size")
    return share.where(rows.reindex_like(share).fillna(0) >= min_rows, np.nan)


def realism_table(details: dict) -> pd.DataFrame:
    """One row per real source: domain AUC, label-mix distance and the KS statistic of each feature."""
    rows = {
        name: {
            "roles": ", ".join(source["roles"]),
            "rows": source["rows"],
            "domain AUC": source["domain_auc"],
            "label TV": source["label_mix"]["total_variation"],
            **{f"KS {feature}": values["ks"] for feature, values in source["features"].items()},
        }
        for name, source in details["sources"].items()
    }
    return pd.DataFrame(rows).T
