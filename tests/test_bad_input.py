"""Hostile or unlucky input to the API, the `predict` command and `ingest`: clear 4xx or quarantine, never a crash."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from gunicorn.http.errors import InvalidChunkSize

from helpers import run_predict
from peru_sentiment.config import SourceParams
from peru_sentiment.data.ingest import import_feedback
from peru_sentiment.errors import ConfigError, DataError
from peru_sentiment.export.bundle import load_bundle
from peru_sentiment.serving.app import create_app
from peru_sentiment.serving.routes import EXTENSION
from peru_sentiment.serving.settings import load_settings

LIMIT = 20_000


@pytest.fixture(scope="module")
def flask_app(tiny_bundle):
    settings = load_settings(model_dir=tiny_bundle, max_items=8, max_text_chars=300, max_body_bytes=LIMIT, warmup=False)
    app = create_app(settings, load_bundle(tiny_bundle))
    yield app
    app.extensions[EXTENSION].close()


@pytest.fixture(scope="module")
def client(flask_app):
    return flask_app.test_client()


def chunked_post(client, body: bytes | io.BytesIO, path: str = "/v1/predict"):
    """A request as gunicorn hands over a chunked body: no Content-Length, the server terminates the stream."""
    stream = io.BytesIO(body) if isinstance(body, bytes) else body
    chunked = {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
    return client.post(path, input_stream=stream, content_type="application/json", environ_overrides=chunked)


def error_counts(client) -> dict[str, float]:
    lines = client.get("/metrics").get_data(as_text=True).splitlines()
    prefix = 'sentiment_errors_total{type="'
    return {line[len(prefix) :].split('"')[0]: float(line.split()[-1]) for line in lines if line.startswith(prefix)}


def test_a_chunked_body_is_held_to_the_size_limit(client):
    small = json.dumps({"text": "llegó frío"}).encode()
    assert chunked_post(client, small).status_code == 200
    padded = small + b" " * (3 * LIMIT)  # valid JSON, then whitespace: used to be cut at the limit and scored
    response = chunked_post(client, padded)
    assert response.status_code == 413 and response.get_json()["error"]["type"] == "body_too_large"
    assert chunked_post(client, b'{"text": "' + b"a" * (2 * LIMIT) + b'"}').status_code == 413
    assert chunked_post(client, small + b" " * (LIMIT - len(small))).status_code == 200, "exactly the limit is fine"


class _BrokenChunks(io.BytesIO):
    """A body whose chunk size line is not hexadecimal (``zz``), as gunicorn's body reader reports it."""

    def read(self, size: int | None = -1) -> bytes:
        raise InvalidChunkSize(b"zz")

    def readinto(self, buffer) -> int:
        raise InvalidChunkSize(b"zz")


def test_a_malformed_chunk_size_is_a_400_not_a_server_error(client):
    before = error_counts(client)
    response = chunked_post(client, _BrokenChunks())
    assert response.status_code == 400 and response.get_json()["error"]["type"] == "invalid_body"
    assert error_counts(client).get("internal", 0) == before.get("internal", 0)


INVISIBLE = {
    "lone surrogate": "\udc00",
    "surrogate among words": "muy rico \ud83d",
    "C1 controls": "\x85\x9f\x80",
    "combining marks": "\u0301\u0300\u0308",
    "variation selector": "\ufe0f\ufe0f",
    "Hangul filler": "\u3164\u3164",
    "blank Braille": "\u2800",
    "mixed invisibles": "\u200b\u3164\u0301\u2800 \ufe0f",
}


@pytest.mark.parametrize("text", INVISIBLE.values(), ids=INVISIBLE.keys())
@pytest.mark.parametrize("path", ["/v1/predict", "/v1/explain"])
def test_invisible_or_invalid_texts_are_rejected(client, path, text):
    response = client.post(path, data=json.dumps({"text": text}), content_type="application/json")
    assert response.status_code == 422 and response.get_json()["error"]["type"] == "validation_error"


def test_a_lone_surrogate_in_an_echoed_id_is_rejected(client):
    response = client.post(
        "/v1/predict", data=json.dumps({"text": "rico", "id": "\ud800"}), content_type="application/json"
    )
    assert response.status_code == 422


def test_every_error_answer_is_counted_under_its_own_kind(client, flask_app, monkeypatch):
    from concurrent.futures import TimeoutError as FutureTimeout

    def busy(*args, **kwargs):
        raise FutureTimeout

    before = error_counts(client)
    client.post("/v1/predict", data="x" * (2 * LIMIT), content_type="application/json")  # 413
    client.get("/v1/predict")  # 405
    monkeypatch.setattr(flask_app.extensions[EXTENSION].service.batcher, "submit", busy)
    assert client.post("/v1/predict", json={"text": "hola"}).status_code == 503
    after = error_counts(client)
    for kind in ("body_too_large", "method_not_allowed", "unavailable"):
        assert after.get(kind, 0) == before.get(kind, 0) + 1, f"{kind} counted as {kind}"
    assert after.get("other", 0) == before.get("other", 0)


def test_405_says_which_methods_are_allowed(client):
    response = client.get("/v1/predict")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


@pytest.mark.parametrize("key", ["", " ", "short-key"])
def test_an_empty_or_short_api_key_refuses_to_start(tiny_bundle, key):
    with pytest.raises(ConfigError, match="API key must be at least"):
        load_settings(model_dir=tiny_bundle, api_key=key)


def test_401_says_how_to_authenticate(tiny_bundle):
    key = "a-long-enough-key-for-tests"
    app = create_app(load_settings(model_dir=tiny_bundle, warmup=False, api_key=key), load_bundle(tiny_bundle))
    response = app.test_client().post("/v1/predict", json={"text": "hola"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    app.extensions[EXTENSION].close()


def test_explain_length_and_attention_are_capped(tiny_bundle):
    settings = load_settings(model_dir=tiny_bundle, warmup=False, max_explain_chars=200, max_attention_chars=40)
    app = create_app(settings, load_bundle(tiny_bundle))
    client = app.test_client()
    assert client.post("/v1/explain", json={"text": "rico " * 50}).status_code == 422
    assert client.post("/v1/explain", json={"text": "rico " * 20, "include_attention": True}).status_code == 422
    short = client.post("/v1/explain", json={"text": "rico pollo", "include_attention": True})
    assert short.status_code == 200
    weights = [w for layer in short.get_json()["attention"] for head in layer for row in head for w in row]
    assert all(round(w, 4) == w for w in weights), "attention weights are rounded"
    app.extensions[EXTENSION].close()


def test_a_failed_predict_keeps_the_previous_output_and_leaves_no_partial_file(tiny_bundle, tmp_path):
    output = tmp_path / "out.csv"
    output.write_text("previous results\n")
    bad_column = tmp_path / "in.csv"
    pd.DataFrame({"body": ["hola"]}).to_csv(bad_column, index=False)
    assert run_predict(tiny_bundle, bad_column, output).exit_code != 0
    assert output.read_text() == "previous results\n"

    broken = tmp_path / "in.jsonl"
    good = "\n".join(json.dumps({"text": f"rico pollo {n}"}) for n in range(30))
    broken.write_text(good + "\n{not json\n" + good + "\n")
    result = run_predict(tiny_bundle, broken, output, "--chunk-rows", "8")
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
    assert output.read_text() == "previous results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv", "in.jsonl", "out.csv"]


def test_parquet_output_when_the_first_chunk_has_no_valid_text(tiny_bundle, tmp_path):
    source = tmp_path / "in.jsonl"
    rows = [{"id": n, "text": "   " if n < 5 else "rico pollo"} for n in range(12)]
    source.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    result = run_predict(tiny_bundle, source, tmp_path / "out.parquet", "--chunk-rows", "5")
    assert result.exit_code == 0, result.output
    written = pd.read_parquet(tmp_path / "out.parquet")
    assert len(written) == 12 and written["label"].isna().sum() == 5 and written["label"].notna().sum() == 7


def test_csv_output_neutralises_formulas_unless_told_not_to(tiny_bundle, tmp_path):
    source = tmp_path / "in.csv"
    texts = ['=HYPERLINK("http://x")', "+1+2 llegó frío", "@SUM(A1)", "-2+3", "rico", "-5"]
    pd.DataFrame({"text": texts}).to_csv(source, index=False)
    assert run_predict(tiny_bundle, source, tmp_path / "out.csv").exit_code == 0
    written = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert written["text"].tolist() == ["'" + t for t in texts[:4]] + ["rico", "-5"]
    assert run_predict(tiny_bundle, source, tmp_path / "raw.csv", "--no-escape-formulas").exit_code == 0
    assert pd.read_csv(tmp_path / "raw.csv", dtype=str)["text"].tolist() == texts


def test_predict_reads_a_latin1_file_with_encoding(tiny_bundle, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes("text\nQué rico llegó caliente\n".encode("latin-1"))
    failed = run_predict(tiny_bundle, source, tmp_path / "out.csv")
    assert failed.exit_code != 0 and "--encoding" in str(failed.exception)
    assert run_predict(tiny_bundle, source, tmp_path / "out.csv", "--encoding", "latin-1").exit_code == 0
    assert pd.read_csv(tmp_path / "out.csv")["text"].tolist() == ["Qué rico llegó caliente"]


def test_a_csv_row_with_more_fields_than_the_header_is_an_error_not_a_shifted_table(tiny_bundle, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text,id\nhola, que tal,1\nbien,2\n")  # an unquoted comma in the first text
    result = run_predict(tiny_bundle, source, tmp_path / "out.csv")
    assert isinstance(result.exception, DataError) and not (tmp_path / "out.csv").exists()


REGIONS = {"PE-CUS": "Cusco", "PE-LIM": "Lima"}


def _import(params, tmp_path, name, content: str | bytes, columns, **changes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    source = SourceParams.model_validate({"name": "s", "path": str(path), "columns": columns})
    ingest = params.ingest.model_copy(update={"sources": [source], **changes})
    result = import_feedback(ingest, params.near_duplicates, REGIONS)
    assert result.summary["rows_in"] == result.summary["accepted"] + result.summary["quarantined"]
    return result


def _reasons(result) -> list[str]:
    return result.quarantined.sort_values("source_row")["reason"].tolist()


def test_ingest_quarantines_impossible_stars(params, tmp_path):
    lines = [json.dumps({"body": "pésimo", "rating": value}) for value in ("inf", "-inf", "nan", "1e400", 1)]
    lines.append('{"body": "horrible", "rating": Infinity}')
    result = _import(params, tmp_path, "s.jsonl", "\n".join(lines), {"text": "body", "stars": "rating"})
    assert result.summary["accepted"] == 1
    assert all(reason.startswith("invalid stars") for reason in _reasons(result))


def test_ingest_quarantines_a_record_without_the_text_key_or_with_a_list(params, tmp_path):
    records = [
        {"body": "rico", "label": "positive"},
        {"label": "negative"},
        {"body": ["list"], "label": "neutral"},
        {"body": "frío", "label": {"a": 1}},
    ]
    lines = [json.dumps(record) for record in records]
    result = _import(params, tmp_path, "s.jsonl", "\n".join(lines), {"text": "body", "label": "label"})
    assert result.summary["accepted"] == 1
    assert _reasons(result) == [
        "missing column 'body'",
        "not a value in column 'body' (a list)",
        "not a value in column 'label' (a dict)",
    ]


@pytest.mark.parametrize("name", ["s.csv", "s.jsonl"])
def test_ingest_has_one_text_length_limit_for_every_format(params, tmp_path, name):
    huge = "muy rico " * 1_200_000  # 10.8 MB: over the csv module's default field limit
    rows = [("rico pollo", "positive"), (huge, "negative"), ("a" * 50, "neutral")]
    if name.endswith(".csv"):
        content = "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows)
    else:
        content = "".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows)
    result = _import(params, tmp_path, name, content, {"text": "text", "label": "label"}, max_text_chars=40)
    assert result.summary["accepted"] == 1
    assert [reason.split(" (")[0] for reason in _reasons(result)] == ["text too long"] * 2


def test_ingest_dates_are_day_first_and_plausible_and_texts_visible(params, tmp_path):
    content = "text,label,date\n" + "".join(
        f"{text},positive,{date}\n"
        for text, date in [
            ("uno rico", "06/01/2026"),
            ("dos rico", "2026-01-05"),
            ("tres rico", "9999-12-31"),
            ("\u200b\u200b", "2026-01-05"),
            ("cuatro rico", "2026-02-01T12:00:00Z"),
        ]
    )
    result = _import(params, tmp_path, "s.csv", content, {"text": "text", "label": "label", "timestamp": "date"})
    dates = result.accepted.set_index("text")["timestamp"].dt.strftime("%Y-%m-%d %H:%M").to_dict()
    assert dates == {"uno rico": "2026-01-06 00:00", "dos rico": "2026-01-05 00:00", "cuatro rico": "2026-02-01 12:00"}
    assert [reason.split(" ")[0:2] for reason in _reasons(result)] == [["date", "out"], ["empty", "text"]]
