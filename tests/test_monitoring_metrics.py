"""The service's Prometheus metrics: bounded label values, the exposition, multiprocess aggregation."""

import ast
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import ROOT
from peru_sentiment.regions import region_lookup
from peru_sentiment.serving.metrics import (
    ERROR_TYPES,
    MULTIPROC_ENV,
    PredictionRecord,
    ServiceMetrics,
    child_exit,
    normalize_channel,
    normalize_language,
    normalize_region,
    reset_multiprocess_dir,
)


@pytest.fixture(scope="module")
def region_names(regions):
    return {region.code: region.name for region in regions}


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed exposition: (sample name, sorted labels) -> value."""
    body, content_type = metrics.render_metrics()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def record(**changes) -> PredictionRecord:
    fields = {"label": "negative", "confidence": 0.9, "region": "PE-CUS", "channel": "survey", "language": "es"}
    return PredictionRecord(**{**fields, "text_length": 42, **changes})


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("PE-CUS", "PE-CUS"),
        ("pe-cus", "PE-CUS"),
        ("Cusco", "PE-CUS"),
        ("CUSCO ", "PE-CUS"),
        ("Áncash", "PE-ANC"),
        ("ancash", "PE-ANC"),
        ("san martin", "PE-SAM"),
        ("Lima Metropolitana", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_regions_are_codes_or_unknown(region_names, value, code):
    assert normalize_region(value, region_lookup(region_names)) == code


@pytest.mark.parametrize(
    ("value", "channel"),
    [
        ("survey", "survey"),
        ("App Review", "app_review"),
        ("social-media", "social_media"),
        ("email", "unknown"),
        (None, "unknown"),
    ],
)
def test_channels_are_known_or_unknown(value, channel):
    assert normalize_channel(value) == channel


@pytest.mark.parametrize(("value", "language"), [("es", "es"), ("EN", "en"), ("pt", "other"), (None, "other")])
def test_languages_are_es_en_or_other(value, language):
    assert normalize_language(value) == language


def test_prediction_labels_stay_bounded_and_raw_input_never_appears(region_names):
    metrics = ServiceMetrics(region_names)
    hostile = 'Cusco"} 1e9\n# injected'
    metrics.observe_predictions(
        [
            record(region="cusco"),
            record(region=hostile, channel="<script>", language="xx", label="positive"),
            record(region="Áncash", channel="App Review", language=None, label="neutral", confidence=0.4),
        ]
    )
    body = metrics.render_metrics()[0].decode()
    assert "<script>" not in body and "injected" not in body and "xx" not in body
    predictions = {
        labels: value for (name, labels), value in samples(metrics).items() if name == "sentiment_predictions_total"
    }
    assert predictions == {
        (("channel", "survey"), ("label", "negative"), ("language", "es"), ("region", "PE-CUS")): 1.0,
        (("channel", "unknown"), ("label", "positive"), ("language", "other"), ("region", "unknown")): 1.0,
        (("channel", "app_review"), ("label", "neutral"), ("language", "other"), ("region", "PE-ANC")): 1.0,
    }
    values = samples(metrics)
    assert values[("sentiment_prediction_confidence_bucket", (("label", "neutral"), ("le", "0.4")))] == 1.0
    assert values[("sentiment_prediction_confidence_bucket", (("label", "neutral"), ("le", "0.35")))] == 0.0
    assert values[("sentiment_text_length_chars_count", ())] == 3.0


def test_aspect_opinions_are_counted_by_aspect_polarity_and_region_only_when_found(region_names):
    metrics = ServiceMetrics(region_names)
    metrics.observe_predictions([record(), record(label="positive")])
    assert not [name for name, _ in samples(metrics) if name.startswith("sentiment_aspect_predictions")]
    metrics.observe_predictions(
        [
            record(region="cusco", aspects=(("delivery_time", "negative"), ("food_quality", "positive"))),
            record(region="Cusco", channel="survey", aspects=(("delivery_time", "negative"),)),
            record(region='Cusco"} 1e9', aspects=(("courier", "neutral"),)),
        ]
    )
    aspects = {
        labels: value
        for (name, labels), value in samples(metrics).items()
        if name == "sentiment_aspect_predictions_total"
    }
    assert aspects == {
        (("aspect", "delivery_time"), ("polarity", "negative"), ("region", "PE-CUS")): 2.0,
        (("aspect", "food_quality"), ("polarity", "positive"), ("region", "PE-CUS")): 1.0,
        (("aspect", "courier"), ("polarity", "neutral"), ("region", "unknown")): 1.0,
    }


@pytest.mark.parametrize("opinion", [("weather", "negative"), ("other", "negative"), ("courier", "absent")])
def test_an_aspect_opinion_outside_the_bounded_sets_is_a_bug(region_names, opinion):
    with pytest.raises(ValueError, match="unknown aspect opinion"):
        ServiceMetrics(region_names).observe_predictions([record(aspects=(opinion,))])


def test_unknown_prediction_label_is_a_bug(region_names):
    with pytest.raises(ValueError, match="unknown label"):
        ServiceMetrics(region_names).observe_predictions([record(label="mixed")])


def test_requests_errors_batches_and_in_flight(region_names):
    metrics = ServiceMetrics(region_names)
    with metrics.track_in_flight():
        assert samples(metrics)[("sentiment_http_requests_in_flight", ())] == 1.0
        metrics.observe_request("predict", "post", 200, 0.012)
    metrics.observe_request(None, "BREW", 404, 0.001)
    metrics.observe_batch(5)
    metrics.record_error("invalid_json")
    metrics.record_error("something we never planned for")
    values = samples(metrics)
    assert values[("sentiment_http_requests_in_flight", ())] == 0.0
    assert (
        values[("sentiment_http_requests_total", (("endpoint", "predict"), ("method", "POST"), ("status", "200")))] == 1
    )
    assert (
        values[("sentiment_http_requests_total", (("endpoint", "unmatched"), ("method", "OTHER"), ("status", "404")))]
        == 1
    )
    assert values[("sentiment_http_request_duration_seconds_bucket", (("endpoint", "predict"), ("le", "0.01")))] == 0
    assert values[("sentiment_http_request_duration_seconds_bucket", (("endpoint", "predict"), ("le", "0.025")))] == 1
    assert values[("sentiment_batch_size_bucket", (("le", "4.0"),))] == 0
    assert values[("sentiment_batch_size_bucket", (("le", "8.0"),))] == 1
    errors = {
        dict(labels)["type"]: value for (name, labels), value in values.items() if name == "sentiment_errors_total"
    }
    assert set(errors) == set(ERROR_TYPES)  # every type exists from the start
    assert errors["invalid_json"] == 1 and errors["other"] == 1 and errors["internal"] == 0


def _emitted_error_kinds() -> set[str]:
    """Every error kind written in the serving code: ApiError(status, kind, ...), error_response(status, kind, ...)
    and the kinds given to Werkzeug's HTTP errors."""
    from peru_sentiment.serving.errors import HTTP_ERROR_KINDS

    kinds = set(HTTP_ERROR_KINDS.values())
    for path in (ROOT / "src/peru_sentiment/serving").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"ApiError", "error_response"}:
                kind = node.args[1] if len(node.args) > 1 else None
                if isinstance(kind, ast.Constant):
                    kinds.add(kind.value)
    return kinds


def test_every_error_kind_the_app_emits_is_a_counted_type():
    emitted = _emitted_error_kinds()
    assert {"body_too_large", "unavailable", "validation_error", "not_ready"} <= emitted, "the scan finds the calls"
    assert emitted <= set(ERROR_TYPES), f"counted as other: {sorted(emitted - set(ERROR_TYPES))}"
    assert ERROR_TYPES[-1] == "other" and len(set(ERROR_TYPES)) == len(ERROR_TYPES)


def test_model_info_follows_the_loaded_model(region_names):
    metrics = ServiceMetrics(region_names)
    metrics.set_model("v1", "e5-small", {"negative": 0.3, "neutral": 0.18, "positive": 0.52})
    metrics.set_model("v2", "e5-small", {"negative": 0.25, "positive": 0.75})
    values = samples(metrics)
    info = {labels: value for (name, labels), value in values.items() if name == "sentiment_model_info"}
    assert info == {(("checkpoint", "e5-small"), ("version", "v2")): 1.0}
    shares = {
        dict(labels)["label"]: v for (name, labels), v in values.items() if name == "sentiment_training_label_share"
    }
    assert shares == {"negative": 0.25, "neutral": 0.0, "positive": 0.75}
    with pytest.raises(ValueError, match="unknown labels"):
        metrics.set_model("v3", "x", {"mixed": 1.0})


WORKER = textwrap.dedent(
    """
    import sys
    from peru_sentiment.serving.metrics import PredictionRecord, ServiceMetrics

    metrics = ServiceMetrics({"PE-CUS": "Cusco", "PE-LIM": "Lima"})
    metrics.set_model("v1", "tiny", {"negative": 0.3, "neutral": 0.2, "positive": 0.5})
    count = int(sys.argv[1])
    metrics.observe_predictions([PredictionRecord("negative", 0.8, "Cusco", "survey", "es", 10)] * count)
    metrics.observe_request("predict", "POST", 200, 0.05)
    metrics.in_flight.inc()  # a request this worker never finishes
    """
)


def test_multiprocess_mode_aggregates_workers_and_drops_dead_ones(tmp_path, monkeypatch, region_names):
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(count)], env=env) for count in (3, 4)]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    metrics = ServiceMetrics(region_names)  # the /metrics handler's process: it aggregates the files
    values = samples(metrics)
    labels = (("channel", "survey"), ("label", "negative"), ("language", "es"), ("region", "PE-CUS"))
    assert values[("sentiment_predictions_total", labels)] == 7.0
    assert (
        values[("sentiment_http_requests_total", (("endpoint", "predict"), ("method", "POST"), ("status", "200")))] == 2
    )
    assert values[("sentiment_http_requests_in_flight", ())] == 2.0  # livesum over both workers
    assert values[("sentiment_model_info", (("checkpoint", "tiny"), ("version", "v1")))] == 1.0

    for worker in workers:
        child_exit(server=None, worker=SimpleNamespace(pid=worker.pid))
    values = samples(metrics)
    assert ("sentiment_http_requests_in_flight", ()) not in values  # live gauges of dead workers are gone
    assert values[("sentiment_predictions_total", labels)] == 7.0  # counters survive their worker

    assert reset_multiprocess_dir() == tmp_path and not any(tmp_path.iterdir())
