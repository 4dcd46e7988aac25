"""Data cards: what a feedback table holds, as JSON counts and a Markdown page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

BREAKDOWNS = ("label", "kind", "region", "channel", "language")


def feedback_counts(frame: pd.DataFrame) -> dict:
    """Row counts overall and by label, region, channel and language."""
    counts: dict = {"rows": len(frame)}
    for column in BREAKDOWNS:
        if column in frame:
            counts[column] = {str(k): int(v) for k, v in frame[column].value_counts().sort_index().items()}
    return counts


def write_data_card(frame: pd.DataFrame, path: Path, title: str, notes: list[str], examples: int = 12) -> None:
    """Markdown data card with the counts, a label x channel table and example rows."""
    rows = max(1, len(frame))
    lines = [f"# {title}", "", *notes, "", f"Rows: **{len(frame)}**", ""]
    for column in BREAKDOWNS:
        if column in frame:
            counts = frame[column].value_counts().sort_index().rename("rows").to_frame()
            counts["share"] = (counts["rows"] / rows).map("{:.1%}".format)
            lines += [f"## By {column}", "", counts.to_markdown(), ""]
    if {"label", "channel"} <= set(frame.columns):
        lines += ["## Label by channel", "", pd.crosstab(frame["channel"], frame["label"]).to_markdown(), ""]
    columns = [c for c in ("label", "channel", "language", "region", "text") if c in frame]
    if "label" in frame and len(frame):
        sample = frame.sample(frac=1, random_state=0).groupby("label").head(max(1, examples // 3)).sort_values("label")
        lines += ["## Examples", "", sample[columns].to_markdown(index=False), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
