"""Tables the report derives from the predictions: data card, mistakes, explained sample, incidents."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from peru_sentiment.config import ReportParams
from peru_sentiment.data.card import BREAKDOWNS, feedback_counts

NEGATIVE = "negative"


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
