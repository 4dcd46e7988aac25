"""The business dashboard over the scored-feedback store (PostgreSQL), as code with grafana-foundation-sdk.

Regional managers and customer service read sentiment by region and week, by
channel, the volume, and a region's latest negative feedback (masked text)
straight from the ``predictions`` table. Weeks follow the customer's
timestamp when the feedback carried one (``written_at``), else its arrival.
Every query uses only Grafana's ``$__timeFilter`` macro and the ``$region``
variable, which :func:`grafana_sql_stand_ins` replaces to run the SQL directly
(tests/test_business_dashboards.py runs each against a PostgreSQL filled by ``replay``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from grafana_foundation_sdk.builders import dashboard, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh, VariableSort

STORE_DATASOURCE = DataSourceRef(type_val="grafana-postgresql-datasource", uid="feedback-store")
FEEDBACK_TIME = "coalesce(written_at, received_at)"
REGIONS = "coalesce(region, 'unknown') IN ($region)"
# Imported rows queued for review (`review label-issues`) live in the same table but are not scored feedback.
SCORED = "source <> 'import'"


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL query of Grafana's PostgreSQL data source (the SDK has no builder for it)."""

    def __init__(self, sql: str, output: str, ref: str) -> None:
        self.sql, self.output, self.ref = sql, output, ref

    def to_json(self) -> dict[str, Any]:
        return {
            "refId": self.ref,
            "datasource": STORE_DATASOURCE.to_json(),
            "editorMode": "code",
            "rawQuery": True,
            "rawSql": self.sql,
            "format": self.output,
        }


class SqlQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, sql: str, output: str = "table", ref: str = "A") -> None:
        self._internal = SqlQuery(" ".join(sql.split()), output, ref)

    def build(self) -> SqlQuery:
        return self._internal


QUERIES = {
    "Negative share by region and week": f"""
        SELECT date_trunc('week', {FEEDBACK_TIME}) AS time, coalesce(region, 'unknown') AS metric,
               avg(CASE WHEN label = 'negative' THEN 1.0 ELSE 0.0 END) AS value
        FROM predictions WHERE {SCORED} AND $__timeFilter({FEEDBACK_TIME}) AND {REGIONS}
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "Sentiment by channel": f"""
        SELECT coalesce(channel, 'unknown') AS channel, count(*) AS feedback,
               avg(CASE WHEN label = 'negative' THEN 1.0 ELSE 0.0 END) AS negative,
               avg(CASE WHEN label = 'neutral' THEN 1.0 ELSE 0.0 END) AS neutral,
               avg(CASE WHEN label = 'positive' THEN 1.0 ELSE 0.0 END) AS positive
        FROM predictions WHERE {SCORED} AND $__timeFilter({FEEDBACK_TIME}) AND {REGIONS}
        GROUP BY 1 ORDER BY feedback DESC""",
    "Feedback volume by day and label": f"""
        SELECT date_trunc('day', {FEEDBACK_TIME}) AS time, label AS metric, count(*) AS value
        FROM predictions WHERE {SCORED} AND $__timeFilter({FEEDBACK_TIME}) AND {REGIONS}
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "Latest negative feedback": f"""
        SELECT {FEEDBACK_TIME} AS time, coalesce(region, 'unknown') AS region, channel, text,
               round(confidence::numeric, 2) AS confidence
        FROM predictions WHERE {SCORED} AND label = 'negative' AND text IS NOT NULL
          AND $__timeFilter({FEEDBACK_TIME}) AND {REGIONS}
        ORDER BY {FEEDBACK_TIME} DESC LIMIT 100""",
}
DESCRIPTIONS = {
    "Negative share by region and week": "Share of feedback labelled negative, per region and calendar week.",
    "Sentiment by channel": "Feedback count and label shares per channel (survey, app review, social, chat).",
    "Feedback volume by day and label": "How much feedback arrived per day, split by predicted label.",
    "Latest negative feedback": "The newest negative feedback of the chosen regions; personal data is masked.",
}
REGION_VARIABLE_SQL = f"SELECT DISTINCT coalesce(region, 'unknown') FROM predictions WHERE {SCORED} ORDER BY 1"


def build_business_dashboard() -> dashboard.Dashboard:
    region = (
        dashboard.QueryVariable("region")
        .label("Region")
        .datasource(STORE_DATASOURCE)
        .query({"rawSql": REGION_VARIABLE_SQL, "format": "table"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )
    board = (
        dashboard.Dashboard("Customer feedback (store)")
        .uid("customer-feedback-store")
        .description("Sentiment of stored customer feedback by region, week and channel, from PostgreSQL.")
        .tags(["peru-sentiment", "business"])
        .time("now-90d", "now")
        .timezone("America/Lima")
        .with_variable(region)
    )
    for title, sql in QUERIES.items():
        series = title.startswith(("Negative share", "Feedback volume"))
        if series:
            panel = timeseries.Panel().unit("percentunit" if "share" in title else "short").span(12)
        else:
            panel = table.Panel().span(24 if title.startswith("Latest") else 12)
        panel = panel.title(title).description(DESCRIPTIONS[title]).datasource(STORE_DATASOURCE).height(9)
        board = board.with_panel(panel.with_target(SqlQueryBuilder(sql, "time_series" if series else "table")))
    return board


def business_dashboard_json() -> dict[str, Any]:
    """The dashboard as a Grafana JSON model."""
    return json.loads(json.dumps(build_business_dashboard().build(), cls=JSONEncoder))


def dashboard_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, SQL) of every panel query, and the region variable's query."""
    queries = [(panel["title"], target["rawSql"]) for panel in model["panels"] for target in panel["targets"]]
    return queries + [("region variable", variable["query"]["rawSql"]) for variable in model["templating"]["list"]]


def grafana_sql_stand_ins(sql: str, start: dt.datetime, end: dt.datetime, regions: list[str]) -> str:
    """`sql` with ``$__timeFilter(x)`` and ``$region`` as Grafana expands them, so it runs in psql."""
    quoted = ", ".join("'" + region.replace("'", "''") + "'" for region in regions)
    sql = re.sub(
        r"\$__timeFilter\(((?:[^()]|\([^()]*\))+)\)",
        lambda match: f"{match.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
        sql,
    )
    return sql.replace("$region", quoted)
