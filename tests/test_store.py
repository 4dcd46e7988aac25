"""The scored-feedback store on SQLite and a real PostgreSQL: migrations, writer, API and predict command."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from helpers import run_predict, toy_feedback
from peru_sentiment.cli.main import app as cli
from peru_sentiment.errors import ConfigError
from peru_sentiment.export.bundle import load_bundle
from peru_sentiment.schema import LABELS
from peru_sentiment.serving.app import create_app
from peru_sentiment.serving.routes import EXTENSION
from peru_sentiment.serving.settings import load_settings
from peru_sentiment.store.database import StoreError, create_store_engine, head_revision, open_store
from peru_sentiment.store.records import prediction_rows
from peru_sentiment.store.retention import delete_older_than
from peru_sentiment.store.writer import PredictionWriter, StoreBusy

EMAIL = "rosa.quispe@example.com"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A new empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'predictions.sqlite'}"
    return request.getfixturevalue("postgres_server").create_database(f"test_{uuid.uuid4().hex[:12]}")


def stored(url: str, order_by: str = "id") -> pd.DataFrame:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            return pd.read_sql(sa.text(f"SELECT * FROM predictions ORDER BY {order_by}"), connection)
    finally:
        engine.dispose()


def _probabilities(row) -> dict:
    """A JSON column: a dict from PostgreSQL's driver, text from SQLite through pandas."""
    value = row["probabilities"]
    return value if isinstance(value, dict) else json.loads(value)


def fake_rows(request_id: str, count: int, received_at: dt.datetime | None = None) -> list[dict]:
    rng = np.random.default_rng(abs(hash(request_id)) % 2**32)
    now = received_at or dt.datetime.now(dt.UTC)
    return prediction_rows(
        request_id=request_id,
        source="api",
        model_version="v-test",
        labels=LABELS,
        probabilities=rng.dirichlet(np.ones(3), size=count),
        texts=[f"texto {request_id} {i} [EMAIL]" for i in range(count)],
        item_ids=[f"item-{i}" for i in range(count)],
        regions=["PE-PIU"] * count,
        channels=["app_review"] * count,
        languages=["es"] * count,
        written_at=["2026-05-01T12:30:00"] * count,
        received_at=now,
        scored_at=now,
        store_text=True,
    )


def test_migrations_create_the_tables_once(store_url):
    engine = open_store(store_url)
    assert open_store(store_url, migrate=False) is not None, "a migrated database opens without migrating"
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
        assert {"predictions", "alembic_version"} <= set(sa.inspect(connection).get_table_names())
    engine.dispose()


def test_writer_stores_every_submitted_row_once_and_close_drains_the_queue(store_url):
    writer = PredictionWriter(open_store(store_url), queue_size=4, batch_rows=16)
    requests = [f"req-{n}" for n in range(40)]

    def send(chunk):
        for request_id in chunk:
            writer.submit(fake_rows(request_id, 1 + len(request_id) % 5))

    threads = [threading.Thread(target=send, args=(requests[k::4],)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.submit(fake_rows("req-3", 1 + len("req-3") % 5))  # a retried request: nothing new
    writer.close()  # no flush before: close itself must write what is queued
    frame = stored(store_url)
    assert len(frame) == sum(1 + len(r) % 5 for r in requests) == frame["id"].nunique()
    row = frame.set_index("id").loc["req-7:0"]
    assert (row["region"], row["channel"], row["language"], row["label"]) == (
        "PE-PIU",
        "app_review",
        "es",
        row["label"],
    )
    probabilities = row["probabilities"] if isinstance(row["probabilities"], dict) else json.loads(row["probabilities"])
    assert row["label"] == max(probabilities, key=probabilities.get)
    top, second = sorted(probabilities.values(), reverse=True)[:2]
    assert row["margin"] == pytest.approx(top - second, abs=1e-5)
    with pytest.raises(StoreBusy, match="closed"):
        writer.submit(fake_rows("late", 1))


def test_a_full_queue_makes_the_request_wait_then_fail_instead_of_dropping(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    writing, blocker = threading.Event(), threading.Event()
    writer = PredictionWriter(engine, queue_size=1, submit_timeout_s=0.2, linger_s=0)
    original = writer._write
    writer._write = lambda rows: (writing.set(), blocker.wait(), original(rows))  # a database that stalls
    writer.submit(fake_rows("a", 1))
    assert writing.wait(5), "the writer took the first request and stalls"
    writer.submit(fake_rows("b", 1))  # fills the queue
    with pytest.raises(StoreBusy, match="stayed full"):
        writer.submit(fake_rows("c", 1))
    blocker.set()
    writer.close()
    assert stored(f"sqlite:///{tmp_path / 's.sqlite'}")["request_id"].tolist() == ["a", "b"]


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def _app(tiny_bundle, bundle, store_url, **changes):
    settings = load_settings(model_dir=tiny_bundle, warmup=False, store_url=store_url, **changes)
    return create_app(settings, bundle)


def test_api_predictions_are_stored_masked_and_idempotent_on_the_request_id(store_url, tiny_bundle, bundle):
    flask_app = _app(tiny_bundle, bundle, store_url)
    client = flask_app.test_client()
    body = {
        "items": [
            {"id": "a1", "text": f"llegó frío, escríbanme a {EMAIL}", "region": "PE-CUS", "channel": "survey"},
            {"text": "excelente, rapidísimo", "timestamp": "2026-05-01T12:30:00-05:00"},
        ]
    }
    first = client.post("/v1/predict", json=body, headers={"X-Request-ID": "retry-1"})
    again = client.post("/v1/predict", json=body, headers={"X-Request-ID": "retry-1"})
    other = client.post("/v1/predict", json={"text": "pésimo"})
    bad = client.post("/v1/predict", json={"text": "hola"}, headers={"X-Request-ID": "no spaces please"})
    assert (first.status_code, again.status_code, other.status_code) == (200, 200, 200)
    assert first.headers["X-Request-ID"] == "retry-1" and len(other.headers["X-Request-ID"]) == 32
    assert bad.status_code == 422 and "X-Request-ID" in bad.get_json()["error"]["message"]
    flask_app.extensions[EXTENSION].close()

    frame = stored(store_url).set_index("id")
    assert sorted(frame.index) == sorted(["retry-1:0", "retry-1:1", f"{other.headers['X-Request-ID']}:0"])
    row = frame.loc["retry-1:0"]
    assert EMAIL not in row["text"] and "[EMAIL]" in row["text"]
    assert (row["item_id"], row["region"], row["channel"], row["source"]) == ("a1", "PE-CUS", "survey", "api")
    answer = first.get_json()["predictions"][0]
    probabilities = row["probabilities"] if isinstance(row["probabilities"], dict) else json.loads(row["probabilities"])
    assert (row["label"], row["language"], probabilities) == (
        answer["label"],
        answer["language"],
        answer["probabilities"],
    )
    assert row["model_version"] == bundle.version
    written = pd.Timestamp(frame.loc["retry-1:1", "written_at"])  # stored in UTC
    assert (written.tz_convert(None) if written.tzinfo else written) == pd.Timestamp("2026-05-01T17:30:00")
    assert pd.Timestamp(row["received_at"]) <= pd.Timestamp(row["scored_at"])


def test_text_storage_can_be_turned_off(tmp_path, tiny_bundle, bundle):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    flask_app = _app(tiny_bundle, bundle, url, store_text=False)
    assert flask_app.test_client().post("/v1/predict", json={"text": "muy rico"}).status_code == 200
    flask_app.extensions[EXTENSION].close()
    frame = stored(url)
    assert len(frame) == 1 and frame["text"].isna().all() and frame["label"].notna().all()


def test_predict_command_stores_its_rows_once_per_request_id(tmp_path, tiny_bundle):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    source = tmp_path / "in.csv"
    frame = toy_feedback(30, seed=3).assign(region="PE-LIM", channel="app_review")
    frame.loc[4, "text"] = f"{frame.loc[4, 'text']} {EMAIL}"
    frame.loc[7, "text"] = ""
    frame.to_csv(source, index=False)
    for _ in range(2):
        result = run_predict(tiny_bundle, source, tmp_path / "out.csv", "--store-url", url, "--request-id", "batch-7")
        assert result.exit_code == 0, result.output
    rows = stored(url).set_index("id")
    assert len(rows) == 29 and "batch-7:7" not in rows.index, "every predicted row once; the empty one is not stored"
    assert EMAIL not in rows.loc["batch-7:4", "text"] and rows.loc["batch-7:4", "item_id"] == "toy-3-4"
    output = pd.read_csv(tmp_path / "out.csv")
    assert rows.loc["batch-7:5", "label"] == output.loc[5, "label"]
    assert (rows["source"] == "file").all() and (rows["region"] == "PE-LIM").all()


def test_cleanup_deletes_only_predictions_older_than_the_retention(store_url):
    writer = PredictionWriter(open_store(store_url))
    now = dt.datetime.now(dt.UTC)
    writer.submit(fake_rows("old", 3, now - dt.timedelta(days=40)))
    writer.submit(fake_rows("new", 2, now - dt.timedelta(days=2)))
    writer.close()
    result = CliRunner().invoke(cli, ["store", "cleanup", "--store-url", store_url, "--retention-days", "30"])
    assert result.exit_code == 0, result.output
    assert "deleted 3 prediction(s)" in result.output
    assert sorted(stored(store_url)["request_id"].unique()) == ["new"]
    assert delete_older_than(create_store_engine(store_url), 1) == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "malformed"),
        ("mysql://user@host/db", "SQLite and PostgreSQL"),
        ("postgresql+psycopg2://host/db", "postgresql+psycopg"),
        ("sqlite://", "file path"),
    ],
)
def test_a_bad_store_url_is_refused_at_start_with_one_line(url, message, tiny_bundle):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_settings(model_dir=tiny_bundle, store_url=url)
    assert "\n" not in str(error.value) and "store_url" in str(error.value)
    result = CliRunner().invoke(cli, ["store", "upgrade", "--store-url", url])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_a_database_migrated_by_a_newer_version_or_not_migrated_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    with pytest.raises(StoreError, match="store upgrade"):
        open_store(url, migrate=False)
    engine = open_store(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer peru-sentiment"):
        open_store(url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    result = CliRunner().invoke(cli, ["store", "upgrade", "--store-url", url])
    assert isinstance(result.exception, StoreError)


def _stall_writes(store_url: str, start_s: float, stop_s: float) -> threading.Thread:
    """A thread that locks the predictions table from `start_s` to `stop_s`: a database that stalls at shutdown."""
    engine = create_store_engine(store_url)
    lock = "BEGIN EXCLUSIVE" if engine.dialect.name == "sqlite" else "LOCK TABLE predictions IN EXCLUSIVE MODE"

    def stall():
        time.sleep(start_s)
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql(lock)
            else:
                connection.begin()
                connection.exec_driver_sql(lock)
            time.sleep(stop_s - start_s)
            connection.rollback()
        engine.dispose()

    thread = threading.Thread(target=stall, daemon=True)
    thread.start()
    return thread


def test_sigterm_under_load_loses_no_acknowledged_prediction(store_url, tiny_bundle, tmp_path):
    from peru_sentiment.serving.launch import start_server
    from peru_sentiment.store.drain_check import sigterm_under_load, stored_ids

    process, url = start_server(
        tiny_bundle, tmp_path / "server.log", SENTIMENT_STORE_URL=store_url, SENTIMENT_DRAIN_S="0.5"
    )
    # The table is locked from before the SIGTERM until after it, so rows are still queued when
    # the workers are told to stop: only the drain on exit can store them.
    staller = _stall_writes(store_url, start_s=0.5, stop_s=4.0)
    try:
        acknowledged, code = sigterm_under_load(
            process, url, toy_feedback(32, seed=8)["text"].tolist(), clients=8, terminate_after_s=1.5
        )
    finally:
        process.kill()
        staller.join(10)
    assert code == 0 and len(acknowledged) > 50, (code, len(acknowledged))
    assert stored_ids(store_url) == acknowledged, "every prediction answered with 200 is stored, and nothing else"
    assert "Traceback" not in (tmp_path / "server.log").read_text()
