"""The review loop: queueing unsure predictions, the /review page in headless Chromium, export and ingest."""

from __future__ import annotations

import datetime as dt
import shutil
import threading

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner
from werkzeug.serving import make_server

from peru_sentiment.cli.main import app as cli
from peru_sentiment.config import SourceParams
from peru_sentiment.data.ingest import import_feedback
from peru_sentiment.export.bundle import load_bundle
from peru_sentiment.regions import region_names
from peru_sentiment.serving.app import create_app
from peru_sentiment.serving.routes import EXTENSION
from peru_sentiment.serving.settings import load_settings
from peru_sentiment.store.database import open_store
from peru_sentiment.store.records import prediction_rows
from peru_sentiment.store.review import (
    ReviewError,
    ingest_source,
    pending_reviews,
    queue_low_margin,
    queue_star_disagreements,
    record_review,
)
from peru_sentiment.store.writer import PredictionWriter

API_KEY = "review-key-" + "x" * 16
EMAIL = "lucho.rojas@example.com"


def _store_with(url: str, margins_by_region: dict[str, list[float]], day: dt.datetime):
    """Predictions whose top-two margins are the given ones, `day` as their arrival."""
    writer = PredictionWriter(open_store(url))
    for region, margins in margins_by_region.items():
        probabilities = [[(1 + m) / 2, (1 - m) / 2, 0.0] for m in margins]
        writer.submit(
            prediction_rows(
                request_id=region,
                source="api",
                model_version="v",
                labels=("negative", "neutral", "positive"),
                probabilities=probabilities,
                texts=[f"texto {region} {i}" for i in range(len(margins))],
                item_ids=[None] * len(margins),
                regions=[region] * len(margins),
                channels=[None] * len(margins),
                languages=["es"] * len(margins),
                written_at=[None] * len(margins),
                received_at=day,
                scored_at=day,
                store_text=True,
            )
        )
    writer.close()
    return open_store(url)


def test_low_margin_queue_shares_the_daily_budget_between_regions(tmp_path):
    day = dt.datetime(2026, 6, 1, 15, tzinfo=dt.UTC)
    engine = _store_with(
        f"sqlite:///{tmp_path / 's.sqlite'}",
        {"PE-LIM": [0.01, 0.02, 0.03, 0.04, 0.9], "PE-CUS": [0.5, 0.6], "PE-PIU": [0.3]},
        day,
    )
    assert queue_low_margin(engine, (day - dt.timedelta(days=1)).date(), 10) == 0, "other days are not touched"
    assert queue_low_margin(engine, day.date(), 4) == 4
    queued = [item["id"] for item in pending_reviews(engine)]
    # one per region first (each region's least sure), then the least sure left
    assert sorted(queued) == sorted(["PE-LIM:0", "PE-PIU:0", "PE-CUS:0", "PE-LIM:1"])
    assert queue_low_margin(engine, day.date(), 4) == 4, "queued items are not queued again"
    assert len(pending_reviews(engine)) == 8


def test_a_review_for_an_unknown_id_or_label_is_refused_and_nothing_is_written(tmp_path):
    day = dt.datetime(2026, 6, 1, 15, tzinfo=dt.UTC)
    engine = _store_with(f"sqlite:///{tmp_path / 's.sqlite'}", {"PE-LIM": [0.1, 0.2]}, day)
    queue_low_margin(engine, day.date(), 1)
    with pytest.raises(ReviewError, match="not one of negative, neutral, positive"):
        record_review(engine, "PE-LIM:0", "angry")
    with pytest.raises(ReviewError, match="no prediction 'PE-LIM:1' in the review queue"):
        record_review(engine, "PE-LIM:1", "neutral")  # stored but not queued
    with pytest.raises(ReviewError, match="no prediction 'nope' in the review queue"):
        record_review(engine, "nope", "neutral")
    with engine.connect() as connection:
        assert (
            connection.execute(sa.text("SELECT count(*) FROM review_items WHERE reviewed_at IS NOT NULL")).scalar() == 0
        )
    result = CliRunner().invoke(
        cli, ["review", "export", "--out", str(tmp_path / "r.csv"), "--store-url", str(engine.url)]
    )
    assert isinstance(result.exception, ReviewError) and not (tmp_path / "r.csv").exists()


@pytest.fixture
def review_server(tmp_path, tiny_bundle):
    """The app on a real loopback port with an API key and a store; yields (base URL, store URL, app)."""
    store_url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    settings = load_settings(model_dir=tiny_bundle, warmup=False, store_url=store_url, api_key=API_KEY)
    flask_app = create_app(settings, load_bundle(tiny_bundle))
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", store_url, flask_app
    server.shutdown()
    flask_app.extensions[EXTENSION].close()


def test_review_page_labels_three_items_by_keyboard_and_the_labels_reach_the_training_data(
    review_server, tmp_path, params, regions
):
    from playwright.sync_api import expect, sync_playwright

    url, store_url, flask_app = review_server
    client = flask_app.test_client()
    headers = {"X-API-Key": API_KEY}
    texts = [f"llegó frío, escríbanme a {EMAIL}", "pedí hoy lunes", "excelente, rapidísimo", "pésimo roche"]
    body = {
        "items": [
            {"text": text, "region": region} for text, region in zip(texts, ["PE-CUS", "PE-PIU"] * 2, strict=True)
        ]
    }
    assert client.post("/v1/predict", json=body, headers=headers).status_code == 200
    flask_app.extensions[EXTENSION].service.store.flush()
    engine = open_store(store_url)
    assert queue_low_margin(engine, dt.datetime.now(dt.UTC).date(), 3) == 3
    expected = pending_reviews(engine)
    assert client.get("/v1/review/items").status_code == 401, "the queue is behind the API key"
    bad = client.post("/v1/review/items", json={"id": expected[0]["id"], "label": "angry"}, headers=headers)
    unknown = client.post("/v1/review/items", json={"id": "nope:0", "label": "neutral"}, headers=headers)
    assert (bad.status_code, unknown.status_code) == (422, 404)

    executable = shutil.which("chromium")
    assert executable, "Chromium is needed: `apt-get install chromium` (make system-deps)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/review")
        expect(page.locator("#login")).to_be_visible()  # no key yet: nothing shown
        page.fill("#key", API_KEY)
        page.press("#key", "Enter")
        shown = []
        for key, count in (("1", 1), ("u", 2), ("3", 3)):
            expect(page.locator("#text")).not_to_be_empty()
            shown.append(page.locator("#text").text_content())
            assert "%" in page.locator("#model").text_content()
            page.keyboard.press(key)
            expect(page.locator("#status")).to_have_text(f"{count} labelled.")
        expect(page.locator("#text")).to_have_text("Nothing left to review.")
        browser.close()
    assert shown == [item["text"] for item in expected] and all(EMAIL not in text for text in shown)

    out = tmp_path / "external" / "reviewed.csv"
    result = CliRunner().invoke(
        cli, ["review", "export", "--out", str(out), "--role", "train", "--store-url", store_url]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 3 reviewed label(s)" in result.output
    ingest = params.ingest.model_copy(update={"sources": [SourceParams(**ingest_source("reviewed", out, "train"))]})
    imported = import_feedback(ingest, params.near_duplicates, region_names(regions))
    accepted = imported.accepted.set_index("source_id")
    assert len(accepted) == 3 and (accepted["role"] == "train").all()
    labels = {item["id"]: label for item, label in zip(expected, ["negative", "neutral", "positive"], strict=True)}
    assert accepted["label"].to_dict() == labels
    assert accepted.loc[expected[0]["id"], "region"] == expected[0]["region"]


def test_predictions_that_contradict_their_stars_are_queued(tmp_path, tiny_bundle):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    flask_app = create_app(load_settings(model_dir=tiny_bundle, warmup=False, store_url=url), load_bundle(tiny_bundle))
    client = flask_app.test_client()
    items = [{"text": text, "stars": stars} for text in ("excelente bacán", "pésimo horrible") for stars in (1, 3, 5)]
    answer = client.post("/v1/predict", json={"items": items}, headers={"X-Request-ID": "stars"})
    assert client.post("/v1/predict", json={"text": "hola", "stars": 6}).status_code == 422
    flask_app.extensions[EXTENSION].close()
    labels = [prediction["label"] for prediction in answer.get_json()["predictions"]]
    expected = {
        f"stars:{index}"
        for index, (label, item) in enumerate(zip(labels, items, strict=True))
        if (label == "positive" and item["stars"] <= 2) or (label == "negative" and item["stars"] >= 4)
    }
    assert expected, "the toy texts' labels contradict some of their stars"
    engine = open_store(url)
    assert queue_star_disagreements(engine, dt.datetime.now(dt.UTC).date(), 10, 2, 4) == len(expected)
    assert {item["id"] for item in pending_reviews(engine)} == expected
    assert {item["reason"] for item in pending_reviews(engine)} <= {"disagrees_with_stars"}
