"""Jinja2 templates of the report and model card, and the HTML pieces they embed."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2
import pandas as pd
from markupsafe import Markup, escape

# Colours of word highlighting: attention (unsigned) and attribution (for / against the predicted label).
ATTENTION_RGB, SUPPORT_RGB, AGAINST_RGB = (37, 99, 235), (22, 163, 74), (220, 38, 38)


def environment() -> jinja2.Environment:
    """Templates in ``report/templates``; HTML ones autoescaped, Markdown ones not."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("peru_sentiment.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["html_table"] = html_table
    env.filters["md_table"] = md_table
    env.filters["pct"] = lambda value: "n/a" if pd.isna(value) else f"{value:.1%}"
    env.filters["points"] = lambda value: "n/a" if pd.isna(value) else f"{100 * value:+.1f}"  # a change of a share
    return env


def formatted(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Numbers as text: whole numbers without decimals (counts), others to `digits` significant digits."""

    def number(value):
        if isinstance(value, float) and not pd.isna(value):
            return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.{digits}g}"
        return value

    return frame.map(number)


def html_table(frame: pd.DataFrame, digits: int = 3, index: bool = True) -> Markup:
    return Markup(formatted(frame, digits).to_html(classes="table", index=index, border=0))


def md_table(frame: pd.DataFrame, digits: int = 3, index: bool = True) -> str:
    return formatted(frame, digits).to_markdown(index=index, disable_numparse=True)


def highlight(words: Sequence[str], scores: Sequence[float], signed: bool) -> Markup:
    """Words as spans whose background strength is |score| relative to the text's largest.

    Signed scores (attribution): green supports the predicted label, red argues against it.
    """
    scale = max((abs(score) for score in scores), default=0.0) or 1.0
    spans = []
    for word, score in zip(words, scores, strict=True):
        rgb = (SUPPORT_RGB if score >= 0 else AGAINST_RGB) if signed else ATTENTION_RGB
        alpha = 0.85 * abs(score) / scale
        spans.append(
            f'<span class="word" style="background: rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.2f})" '
            f'title="{score:+.4f}">{escape(word)}</span>'
        )
    return Markup(" ".join(spans))


def explanation_views(explanation: dict) -> Markup:
    """Rollout and integrated gradients of an ``explain_text`` result, side by side, as highlighted words."""
    rollout = highlight(explanation["words"], explanation["rollout"], signed=False)
    attribution = highlight(explanation["words"], explanation["integrated_gradients"], signed=True)
    return Markup(
        f'<div class="views"><div>rollout</div><div>{rollout}</div>'
        f"<div>integrated gradients</div><div>{attribution}</div></div>"
    )
