"""Every SQL query of the business dashboard returns data from a real PostgreSQL filled by the replay command."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from helpers import ROOT, toy_feedback
from peru_sentiment.export.bundle import load_bundle
from peru_sentiment.monitoring import replay as player
from peru_sentiment.monitoring.business import business_dashboard_json, dashboard_queries, grafana_sql_stand_ins
from peru_sentiment.serving.app import create_app
from peru_sentiment.serving.routes import EXTENSION
from peru_sentiment.serving.settings import load_settings
from peru_sentiment.store.database import create_store_engine
from peru_sentiment.store.models import Prediction

REGIONS = ["PE-LIM", "PE-CUS", "PE-PIU"]


@pytest.fixture(scope="module")
def replayed_store(postgres_server, tiny_bundle):
    """A PostgreSQL store filled by replaying 240 feedback rows over three weeks through the API."""
    url = postgres_server.create_database(f"business_{uuid.uuid4().hex[:8]}")
    settings = load_settings(model_dir=tiny_bundle, warmup=False, store_url=url)
    flask_app = create_app(settings, load_bundle(tiny_bundle))
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    frame = toy_feedback(240, seed=40)
    frame["region"] = [REGIONS[i % 3] for i in range(len(frame))]
    frame["channel"] = [("survey", "app_review", "social_media", "support_chat")[i % 4] for i in range(len(frame))]
    frame["timestamp"] = pd.date_range("2026-05-04 08:00", periods=len(frame), freq="2h").strftime("%Y-%m-%dT%H:%M:%S")
    try:
        report = player.replay(
            f"http://127.0.0.1:{server.server_port}",
            player.plan(player.select(frame), rate=2000, duration=1),
            batch_size=32,
            progress=False,
        )
    finally:
        server.shutdown()
        flask_app.extensions[EXTENSION].close()  # writes the store's queue
    assert report.failed == 0
    _add_imported_row_queued_for_review(url)
    return url


def _add_imported_row_queued_for_review(url: str) -> None:
    """What `review label-issues` stores: an imported row, not scored feedback; no panel may count it."""
    when = dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
    row = {
        "id": "import:x-1",
        "request_id": "import",
        "item_id": "x-1",
        "source": "import",
        "received_at": when,
        "scored_at": when,
        "written_at": when,
        "region": "PE-AYA",
        "channel": "survey",
        "language": "es",
        "stars": None,
        "text": "imported text",
        "label": "negative",
        "given_label": "positive",
        "confidence": 0.9,
        "margin": 0.8,
        "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05},
        "model_version": "label-issues",
        "aspects": None,
    }
    engine = create_store_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.insert(Prediction), [row])
    engine.dispose()


def test_the_committed_business_dashboard_is_the_rendered_one():
    from peru_sentiment.monitoring.dashboards import render_dashboard

    committed = (ROOT / "grafana/dashboards/customer-feedback-store.json").read_text(encoding="utf-8")
    assert committed == render_dashboard(business_dashboard_json())


def test_every_dashboard_query_returns_data_from_the_replayed_store(replayed_store):
    model = business_dashboard_json()
    queries = dashboard_queries(model)
    assert len(queries) == 5 and all(panel["description"] for panel in model["panels"])
    start, end = dt.datetime(2026, 5, 1, tzinfo=dt.UTC), dt.datetime(2026, 6, 30, tzinfo=dt.UTC)
    engine = create_store_engine(replayed_store)
    results = {}
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM predictions")).scalar() == 241
        for title, sql in queries:
            rows = connection.execute(sa.text(grafana_sql_stand_ins(sql, start, end, REGIONS[:2]))).all()
            assert rows, f"{title}: no rows"
            results[title] = rows
    engine.dispose()
    weekly = pd.DataFrame(results["Negative share by region and week"], columns=["time", "metric", "value"])
    assert set(weekly["metric"]) == {"PE-LIM", "PE-CUS"}, "the region variable filters"
    assert weekly["time"].nunique() >= 3 and weekly["value"].between(0, 1).all()
    channels = {row.channel: row.feedback for row in results["Sentiment by channel"]}
    assert sum(channels.values()) == 160 and set(channels) == {"survey", "app_review", "social_media", "support_chat"}
    latest = results["Latest negative feedback"]
    assert all(row.region in REGIONS[:2] for row in latest) and latest[0].time >= latest[-1].time
    assert "imported text" not in {row.text for row in latest}, "imported rows are not scored feedback"
    assert sorted(row[0] for row in results["region variable"]) == sorted(REGIONS)
