"""Data cards: what a feedback table holds, as JSON counts and a Markdown page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

BREAKDOWNS = ("label", "region", "channel", "language")


def feedback_counts(frame: pd.DataFrame) -> dict:
    """Row counts overall and by label, region, channel and language."""
    counts: dict = {"rows": len(frame)}
    for column in BREAKDOWNS:
        if column in frame:
            counts[column] = {str(k): int(v) for k, v in frame[column].value_counts().sort_index().items()}
    return counts


def write_data_card(frame: pd.DataFrame, path: Path, title: str, notes: list[str], examples: int = 12) -> None:
    """Markdown data card with the counts, a label x channel table and example rows."""
    counts = feedback_counts(frame)
    lines = [f"# {title}", "", *notes, "", f"Rows: **{counts['rows']}**", ""]
    for column in BREAKDOWNS:
        if column in counts:
            lines += [f"## By {column}", "", f"| {column} | rows | share |", "| --- | ---: | ---: |"]
            lines += [f"| {k} | {v} | {v / max(1, counts['rows']):.1%} |" for k, v in counts[column].items()]
            lines.append("")
    if {"label", "channel"} <= set(frame.columns):
        table = pd.crosstab(frame["channel"], frame["label"])
        lines += ["## Label by channel", "", "| channel | " + " | ".join(table.columns) + " |"]
        lines += ["| --- |" + " ---: |" * len(table.columns)]
        lines += [f"| {channel} | " + " | ".join(str(v) for v in row) + " |" for channel, row in table.iterrows()]
        lines.append("")
    sample = frame.sample(frac=1, random_state=0).groupby("label").head(max(1, examples // 3)).sort_values("label")
    lines += ["## Examples", "", "| label | channel | language | region | text |", "| --- | --- | --- | --- | --- |"]
    for _, row in sample.iterrows():
        text = str(row["text"]).replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {row.get('label')} | {row.get('channel')} | {row.get('language')} | {row.get('region')} | {text} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
