"""Renders the committed monitoring files, and lists every PromQL expression they use."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from peru_sentiment.monitoring.business import business_dashboard_json
from peru_sentiment.monitoring.config import MonitoringConfig, Windows
from peru_sentiment.monitoring.dashboards import build_dashboards, dashboard_expressions, render_dashboard
from peru_sentiment.monitoring.rules import alerts, recording_rules, render_rules

RULES_PATH = Path("monitoring/rules/sentiment.yml")
DASHBOARDS_DIR = Path("grafana/dashboards")


class Expression(NamedTuple):
    """A PromQL expression and where it is used (rule name, or dashboard / panel)."""

    source: str
    expr: str


def render_files(config: MonitoringConfig, windows: Windows) -> dict[Path, str]:
    """File contents by path relative to the repository root: the rule file and one JSON per dashboard."""
    files = {RULES_PATH: render_rules(config, windows)}
    for stem, model in build_dashboards(config).items():
        files[DASHBOARDS_DIR / f"{stem}.json"] = render_dashboard(model)
    files[DASHBOARDS_DIR / "customer-feedback-store.json"] = render_dashboard(business_dashboard_json())
    return files


def write_files(files: dict[Path, str], root: Path) -> list[Path]:
    """Write rendered files under ``root``; the paths written."""
    written = []
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def grafana_stand_ins(windows: Windows) -> dict[str, str]:
    """Values for Grafana's variables, so dashboard queries run directly against Prometheus."""
    return {"$__rate_interval": windows.rate, "$__range": windows.baseline, "$region": ".*"}


def promql_expressions(config: MonitoringConfig, windows: Windows) -> list[Expression]:
    """Every expression of the rules and dashboards, Grafana variables replaced by :func:`grafana_stand_ins`.

    For an alert these are what it measures (its signal and volume): the full condition has
    data only while the alert holds, which Prometheus's alerts API shows instead.
    """
    expressions = [Expression(rule["record"], rule["expr"]) for rule in recording_rules(windows)]
    expressions += [Expression(alert.name, expr) for alert in alerts(config, windows) for expr in alert.measured()]
    stand_ins = grafana_stand_ins(windows)
    for stem, model in build_dashboards(config).items():
        for title, expr in dashboard_expressions(model):
            for variable, value in stand_ins.items():
                expr = expr.replace(variable, value)
            expressions.append(Expression(f"{stem} / {title}", expr))
    return expressions
