"""The export bundle, the prediction API and batch prediction, on a tiny exported model."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from helpers import run_predict, toy_feedback
from peru_sentiment.cli.main import app as cli
from peru_sentiment.export.bundle import BundleError, load_bundle
from peru_sentiment.serving.app import create_app
from peru_sentiment.serving.batcher import MicroBatcher
from peru_sentiment.serving.routes import EXTENSION
from peru_sentiment.serving.settings import load_settings
from peru_sentiment.text.prepare import prepare_text

API_KEY = "k" * 24
SECRET = "juan.perez@example.com paid with 4111 1111 1111 1111"  # must never come back in an error


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def _settings(tiny_bundle, **changes):
    return load_settings(
        model_dir=tiny_bundle, max_items=8, max_text_chars=300, max_body_bytes=20_000, warmup=False, **changes
    )


@pytest.fixture(scope="module")
def server_settings(tiny_bundle):
    return _settings(tiny_bundle)


@pytest.fixture(scope="module")
def client(server_settings, bundle):
    flask_app = create_app(server_settings, bundle)
    yield flask_app.test_client()
    flask_app.extensions[EXTENSION].close()


def test_exported_bundle_reproduces_the_trained_model(tiny_trained, bundle, tiny_bundle):
    texts = [prepare_text(text)[0] for text in toy_feedback(40, seed=5)["text"]]
    np.testing.assert_allclose(bundle.predict_proba(texts), tiny_trained.predict_proba(texts), atol=1e-5)
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert {"tokenizer.json", "model.json", "preprocessing.json", "training_distribution.json"} <= set(
        manifest["files"]
    )
    assert any(name.startswith("saved_model/variables/") for name in manifest["files"])
    assert not list(tiny_bundle.rglob("*.pkl")) and not list(tiny_bundle.rglob("*.pickle"))
    assert bundle.labels == ("negative", "neutral", "positive")
    assert load_bundle(tiny_bundle.parent).version == bundle.version, "the export root resolves to LATEST"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "tokenizer.json").unlink(), "missing tokenizer.json"),
        (lambda b: (b / "model.json").write_text('{"labels": ["positive", "negative", "neutral"]}\n'), "altered"),
        (lambda b: next((b / "saved_model/variables").glob("*.data*")).write_bytes(b"\0"), "altered saved_model"),
        (lambda b: (b / "extra.bin").write_bytes(b"x"), "unexpected extra.bin"),
        (lambda b: (b / "manifest.json").unlink(), "no manifest.json"),
    ],
)
def test_a_corrupt_or_partial_bundle_is_refused(tiny_bundle, tmp_path, damage, message):
    copy = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    damage(copy)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)
    result = CliRunner().invoke(cli, ["predict", "--model", str(copy), "--input", "x.csv", "--output", "y.csv"])
    assert result.exit_code != 0 and isinstance(result.exception, BundleError)


def test_predict_one_text_and_a_batch(client, bundle):
    response = client.post(
        "/v1/predict", json={"text": "la comida llegó fría, pésimo", "id": "a-1", "region": "PE-CUS"}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_version"] == bundle.version
    [prediction] = body["predictions"]
    assert prediction["id"] == "a-1" and prediction["label"] in bundle.labels
    assert prediction["language"] in ("es", "en", "other")
    assert sum(prediction["probabilities"].values()) == pytest.approx(1, abs=1e-4)

    frame = toy_feedback(8, seed=9)
    items = [
        {"id": str(i), "text": text, "channel": "app_review", "timestamp": "2026-03-01T12:00:00-05:00"}
        for i, text in enumerate(frame["text"])
    ]
    body = client.post("/v1/predict", json={"items": items}).get_json()
    assert [p["id"] for p in body["predictions"]] == [str(i) for i in range(8)], "results keep the request order"
    expected = bundle.predict_proba([prepare_text(text)[0] for text in frame["text"]])
    served = np.array([[p["probabilities"][label] for label in bundle.labels] for p in body["predictions"]])
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_health_model_and_openapi_match_the_routes(client, bundle, server_settings):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["model_version"] == bundle.version
    model = client.get("/v1/model").get_json()
    assert model["version"] == bundle.version and model["training_distribution"]["positive"] == 0.5
    assert model["limits"]["max_items"] == 8 and model["preprocessing"]["max_length"] == 32

    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes = {
        (rule.rule, method.lower())
        for rule in client.application.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert routes == documented
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for reference in json.dumps(operation).split('"$ref": "')[1:]:
                name = reference.split('"')[0].rsplit("/", 1)[1]
                assert name in document["components"]["schemas"], f"{path} refers to a missing schema {name}"


BAD_REQUESTS = [
    ("not json at all {", "application/json", 400, "invalid_json"),
    (b'\xff\xfe{"text": "hola"}', "application/json", 400, "invalid_encoding"),
    (json.dumps({"text": 42}), "application/json", 422, "validation_error"),
    (json.dumps({"text": ""}), "application/json", 422, "validation_error"),
    (json.dumps({"text": " \n\t "}), "application/json", 422, "validation_error"),
    (json.dumps({"text": "\u200b\u0000"}), "application/json", 422, "validation_error"),
    (json.dumps({"text": SECRET + " x" * 200}), "application/json", 422, "validation_error"),
    (json.dumps({"items": [{"text": SECRET}] * 9}), "application/json", 422, "too_many_items"),
    (json.dumps({"items": []}), "application/json", 422, "validation_error"),
    (json.dumps({"text": SECRET, "mood": "happy"}), "application/json", 422, "validation_error"),
    (json.dumps({"text": SECRET, "timestamp": "yesterday"}), "application/json", 422, "validation_error"),
    (json.dumps([SECRET]), "application/json", 422, "validation_error"),
    (json.dumps({"text": SECRET}), "text/plain", 415, "unsupported_media_type"),
    (json.dumps({"text": "a" * 30_000}), "application/json", 413, "body_too_large"),
    ("[" * 50_000, "application/json", 413, "body_too_large"),
    ("[" * 5_000, "application/json", 400, "invalid_json"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "kind"), BAD_REQUESTS)
def test_bad_input_gets_a_4xx_json_error_without_the_text(client, body, content_type, status, kind, caplog):
    response = client.post("/v1/predict", data=body, content_type=content_type)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["type"] == kind and error["message"]
    assert "juan.perez" not in response.get_data(as_text=True) and "4111" not in response.get_data(as_text=True)
    assert "juan.perez" not in caplog.text and "Traceback" not in caplog.text


def test_explain_matches_the_report_explanation_of_the_trained_model(client, tiny_trained, bundle):
    from peru_sentiment.explain.explain import explain_text

    text = "frío horrible, pésimo roche"
    response = client.post("/v1/explain", json={"text": text})
    assert response.status_code == 200
    served = response.get_json()
    expected = explain_text(tiny_trained, text, steps=16)
    assert served["model_version"] == bundle.version and served["words"] == text.split()
    assert served["label"] == expected["label"]
    np.testing.assert_allclose(served["integrated_gradients"], expected["integrated_gradients"], atol=1e-4)
    np.testing.assert_allclose(served["rollout"], expected["rollout"], atol=1e-4)
    assert "attention" not in served, "the attention matrices only on request"
    with_attention = client.post("/v1/explain", json={"text": text, "include_attention": True}).get_json()
    np.testing.assert_allclose(with_attention["attention"], expected["attention"], atol=1e-3)
    assert sum(served["integrated_gradients"]) == pytest.approx(served["logit_difference"], rel=0.05, abs=1e-3)

    assert client.post("/v1/explain", json={"text": "  "}).status_code == 422
    assert client.post("/v1/explain", json={"text": "ok", "id": "x"}).get_json()["error"]["type"] == "validation_error"


def test_unknown_routes_and_methods_are_json_errors(client):
    assert client.get("/v1/nothing").get_json()["error"]["type"] == "not_found"
    response = client.get("/v1/predict")
    assert response.status_code == 405 and response.get_json()["error"]["type"] == "method_not_allowed"


def test_api_key_is_required_when_configured(tiny_bundle, bundle):
    secured = create_app(_settings(tiny_bundle, api_key=API_KEY), bundle)
    client = secured.test_client()
    assert client.post("/v1/predict", json={"text": "hola"}).status_code == 401
    assert client.post("/v1/predict", json={"text": "hola"}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/predict", json={"text": "hola"}, headers={"X-API-Key": API_KEY}).status_code == 200
    assert client.get("/healthz").status_code == 200, "probes stay open"
    secured.extensions[EXTENSION].close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
ITEM_FIELDS = st.sampled_from(["text", "id", "region", "channel", "timestamp", "language", "items", "extra"])
ITEMS = st.dictionaries(ITEM_FIELDS, st.text(max_size=60) | JSON_VALUES, max_size=6)
# Lone surrogates, invisible and blank-looking characters, C1 controls, among a few visible ones.
ODD_CHARACTERS = st.sampled_from(
    [
        "\ud800",
        "\udc00",
        "\udfff",
        "\u200b",
        "\u2060",
        "\ufeff",
        "\u0301",
        "\ufe0f",
        "\u3164",
        "\u2800",
        "\x85",
        "\x9f",
        "\x00",
        " ",
        "a",
        "ñ",
        "😡",
    ]
)
ODD_TEXTS = st.text(alphabet=ODD_CHARACTERS, max_size=12)
ODD_BODIES = st.fixed_dictionaries({"text": ODD_TEXTS}, optional={"id": ODD_TEXTS, "region": ODD_TEXTS}).map(
    json.dumps  # ensure_ascii: surrogates travel as \\u escapes, as a client would send them
)
BODIES = (
    JSON_VALUES.map(json.dumps)
    | ITEMS.map(json.dumps)
    | st.lists(ITEMS, max_size=10).map(lambda items: json.dumps({"items": items}))
    | ODD_BODIES
    | st.lists(ODD_BODIES.map(json.loads), min_size=1, max_size=4).map(lambda items: json.dumps({"items": items}))
    | st.binary(max_size=200)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=BODIES,
    path=st.sampled_from(["/v1/predict", "/v1/predict", "/v1/explain", "/v1/model", "/healthz"]),
    chunked=st.booleans(),
    padding=st.sampled_from([0, 0, 25_000]),  # whitespace after the JSON; 25,000 goes over max_body_bytes
)
def test_fuzzed_requests_never_get_a_server_error(client, body, path, chunked, padding):
    data = (body.encode() if isinstance(body, str) else body) + b" " * padding
    if chunked:  # as gunicorn hands over a chunked body: no length, the server ends the stream
        environ = {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
        response = client.post(
            path, input_stream=io.BytesIO(data), content_type="application/json", environ_overrides=environ
        )
    else:
        response = client.post(path, data=data, content_type="application/json")
    if padding and path.startswith("/v1/") and path != "/v1/model":
        assert response.status_code == 413, "no body over the limit gets through, chunked or not"
    assert response.status_code < 500
    assert response.is_json
    if response.status_code == 200:
        assert {"predictions"} <= set(response.get_json()) or {"words"} <= set(response.get_json())
    else:
        assert set(response.get_json()["error"]) == {"type", "message", "details"}


def test_micro_batcher_joins_concurrent_requests_and_keeps_each_ones_rows():
    sizes = []

    def predict(texts):
        time.sleep(0.01)
        return np.array([[float(text)] for text in texts])

    batcher = MicroBatcher(predict, max_batch_size=16, max_wait_s=0.005, on_batch=sizes.append, threads=2)
    results = {}

    def request(number):
        results[number] = batcher.submit([str(number), str(number + 0.5)], timeout=5)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = time.monotonic()
    batcher.close()
    assert time.monotonic() - started < 1, "close() stops every model thread at once"
    assert not any(worker.is_alive() for worker in batcher._workers)
    assert all(results[n].ravel().tolist() == [n, n + 0.5] for n in range(24))
    assert sum(sizes) == 48 and max(sizes) > 2, "concurrent requests share model calls"
    assert max(sizes) <= 16 + 2


def test_micro_batcher_passes_model_errors_to_the_request_and_keeps_serving():
    def predict(texts):
        if "boom" in texts:
            raise RuntimeError("model failed")
        return np.zeros((len(texts), 1))

    batcher = MicroBatcher(predict, max_batch_size=4, max_wait_s=0)
    with pytest.raises(RuntimeError, match="model failed"):
        batcher.submit(["boom"], timeout=5)
    assert batcher.submit(["fine"], timeout=5).shape == (1, 1)
    batcher.close()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_command_round_trip_keeps_every_row(tiny_bundle, bundle, tmp_path, suffix):
    frame = toy_feedback(30, seed=21)[["feedback_id", "text"]].rename(columns={"text": "comment"})
    frame.loc[3, "comment"] = None
    frame.loc[7, "comment"] = " \u200b "
    source = tmp_path / f"in{suffix}"
    {
        ".csv": lambda p: frame.to_csv(p, index=False),
        ".jsonl": lambda p: frame.to_json(p, orient="records", lines=True, force_ascii=False),
        ".parquet": lambda p: frame.to_parquet(p, index=False),
    }[suffix](source)
    output = tmp_path / f"out{suffix}"
    result = run_predict(tiny_bundle, source, output, "--text-column", "comment", "--chunk-rows", "7")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 30 and summary["predicted"] == 28
    assert sum(summary["errors"].values()) == 2

    written = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False),
    }[suffix](output)
    assert written["feedback_id"].tolist() == frame["feedback_id"].tolist()
    assert written.loc[[3, 7], "label"].isna().all() and (written.loc[[3, 7], "error"].str.len() > 0).all()
    valid = written.drop(index=[3, 7])
    expected = bundle.predict_proba([prepare_text(text)[0] for text in valid["comment"]])
    np.testing.assert_allclose(valid[[f"probability_{label}" for label in bundle.labels]], expected, atol=1e-5)
    assert valid["label"].tolist() == [bundle.labels[i] for i in expected.argmax(axis=1)]


def test_predict_command_explains_a_missing_column(tiny_bundle, tmp_path):
    pd.DataFrame({"body": ["hola"]}).to_csv(tmp_path / "in.csv", index=False)
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "--model",
            str(tiny_bundle),
            "--input",
            str(tmp_path / "in.csv"),
            "--output",
            str(tmp_path / "out.csv"),
        ],
    )
    assert result.exit_code != 0 and "no column 'text'" in str(result.exception)


def _post(url: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _raw_request(url: str, head: str, body: bytes) -> tuple[int, dict]:
    """Send bytes as they are (a chunked body, a broken one) and read the status and the JSON body."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head.encode() + b"\r\n" + body)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


def chunked(payload: bytes, size: int = 4096) -> bytes:
    pieces = [payload[start : start + size] for start in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def test_real_server_handles_concurrent_load_then_shuts_down_gracefully(tiny_bundle, tmp_path):
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from peru_sentiment.serving.launch import start_server

    # A long batching wait keeps requests in flight when the shutdown signal arrives.
    process, url = start_server(
        tiny_bundle, tmp_path / "server.log", SENTIMENT_MAX_WAIT_MS="300", SENTIMENT_THREADS="16"
    )
    head = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    small = json.dumps({"text": "llegó frío"}).encode()
    assert _raw_request(url, head, chunked(small))[0] == 200
    status, body = _raw_request(url, head, chunked(small + b" " * (3 << 20)))  # over the 1 MiB limit, no length
    assert (status, body["error"]["type"]) == (413, "body_too_large")
    status, body = _raw_request(url, head, b"zz\r\n" + small + b"\r\n0\r\n\r\n")  # not a chunk size
    assert (status, body["error"]["type"]) == (400, "invalid_body")

    texts = toy_feedback(64, seed=31)["text"].tolist()
    bodies = [{"items": [{"id": f"{n}-{k}", "text": texts[(n + k) % 64]} for k in range(1 + n % 4)]} for n in range(96)]
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda body: _post(f"{url}/v1/predict", body), bodies))
        assert [status for status, _ in results] == [200] * len(bodies)
        assert all(
            len(body["predictions"]) == len(sent["items"]) for (_, body), sent in zip(results, bodies, strict=True)
        )

        with ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(_post, f"{url}/v1/predict", body) for body in bodies[:8]]
            time.sleep(0.15)
            process.send_signal(signal.SIGTERM)
            finished = [future.result() for future in pending]
        assert [status for status, _ in finished] == [200] * 8, "in-flight requests finish during shutdown"
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log and texts[0] not in log


def test_metrics_count_predictions_with_bounded_labels_and_errors(client):
    client.post(
        "/v1/predict",
        json={
            "items": [
                {"text": "pésimo, llegó frío", "region": "Cusco", "channel": "App Review", "language": "es"},
                {"text": "great app", "region": "<script>alert(1)</script>", "channel": "fax"},
            ]
        },
    )
    client.post("/v1/predict", data="{", content_type="application/json")
    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'region="PE-CUS"' in exposition and 'region="unknown"' in exposition
    assert 'channel="app_review"' in exposition and 'channel="unknown"' in exposition
    assert "script" not in exposition and "fax" not in exposition
    assert 'sentiment_errors_total{type="invalid_json"}' in exposition
    assert 'sentiment_http_requests_total{endpoint="predict",method="POST",status="400"}' in exposition
    assert 'sentiment_model_info{checkpoint="tiny",version="tiny-0"} 1.0' in exposition
    assert 'sentiment_training_label_share{label="positive"} 0.5' in exposition
    assert "sentiment_batch_size_count" in exposition
    assert "sentiment_aspect_predictions_total{" not in exposition  # a model without aspect heads: no series
