"""Every dashboard and rule expression against a real Prometheus (Debian's binary) on loopback.

Prometheus scrapes a monitored service every second and evaluates the rules rendered with
short windows; the service gets normal traffic in every region, then an incident in
``INCIDENT_REGION``, about ``INCIDENT_ASPECT``. The regional alert must fire there and nowhere
else and name the aspect, and every PromQL expression of the dashboards and rules must return data.

The monitored service is a fixture parameter: the real server (gunicorn, the tiny exported
model, which has no aspect heads, traffic sent with the replay module) and a stand-in exporter
driven through ``ServiceMetrics`` in this process, which checks the rules apart from the model
and predicts aspects. Without aspect heads the aspect expressions have no data and the alert
names the aspect ``unknown``.
"""

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
from prometheus_client import start_http_server

from helpers import ROOT, TOY_WORDS
from peru_sentiment.monitoring import promql as q
from peru_sentiment.monitoring.config import Windows, load_monitoring_config
from peru_sentiment.monitoring.local_prometheus import LocalPrometheus
from peru_sentiment.monitoring.render import promql_expressions
from peru_sentiment.monitoring.replay import plan, replay
from peru_sentiment.monitoring.rules import render_rules
from peru_sentiment.serving.launch import start_server
from peru_sentiment.serving.metrics import PredictionRecord, ServiceMetrics

# Windows compressed so the test takes seconds: a 10 s "recent" window against a 1 min baseline.
TEST_WINDOWS = Windows(rate="5s", short="10s", baseline="1m", pending="2s")
SCRAPE_INTERVAL = "1s"
INCIDENT_REGION = "PE-CUS"
INCIDENT_ASPECT = "delivery_time"
REGIONS = ("PE-CUS", "PE-LIM", "PE-ARE", "PE-LAL", "PE-PIU")
NORMAL_SECONDS = 15  # normal traffic before the incident starts: the baseline
ALERT_TIMEOUT = 40


@dataclass
class MonitoredService:
    """What Prometheus scrapes, and the traffic to send to it."""

    target: str  # host:port of /metrics
    traffic: Callable[[threading.Event], None]  # normal traffic, then the incident, until the event is set
    aspect_heads: bool  # whether the model predicts aspects


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def standin_service(regions) -> Iterator[MonitoredService]:
    """An exporter on a free loopback port serving ServiceMetrics that the traffic drives directly."""
    metrics = ServiceMetrics({region.code: region.name for region in regions})
    metrics.set_model("test", "tiny", {"negative": 0.25, "neutral": 0.25, "positive": 0.5})
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)

    def traffic(stop: threading.Event) -> None:
        started = time.monotonic()
        for tick in itertools.count():
            incident = time.monotonic() - started > NORMAL_SECONDS
            with metrics.track_in_flight():
                metrics.observe_batch(1 + tick % 20)
                metrics.observe_predictions(
                    PredictionRecord(
                        label, 0.55 + 0.1 * (index % 5), region, "app_review", ("es", "en")[index % 2], 80, aspects
                    )
                    for region in REGIONS
                    for index, (label, aspects) in enumerate(_predictions(incident and region == INCIDENT_REGION))
                )
                metrics.observe_request("predict", "POST", 200, 0.02 + 0.01 * (tick % 7))
            if tick % 10 == 0:
                metrics.observe_request("predict", "POST", 422, 0.004)
                metrics.record_error("validation_error")
            if stop.wait(0.25):
                return

    yield MonitoredService(f"127.0.0.1:{server.server_port}", traffic, aspect_heads=True)
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def server_service(tiny_bundle, tmp_path) -> Iterator[MonitoredService]:
    """The production server with the tiny model (trained on TOY_WORDS), fed through the replay module."""
    process, url = start_server(tiny_bundle, tmp_path / "server.log", SENTIMENT_WORKERS="2", SENTIMENT_THREADS="8")

    def traffic(stop: threading.Event) -> None:
        started = time.monotonic()
        for tick in itertools.count():
            incident = time.monotonic() - started > NORMAL_SECONDS
            rows = [
                {
                    "feedback_id": f"{tick}-{region}-{index}",
                    "region": region,
                    "channel": "app_review",
                    "timestamp": pd.Timestamp("2026-02-02 12:00", tz="America/Lima") + pd.Timedelta(seconds=tick),
                    "text": f"{TOY_WORDS['neutral'][(tick + index) % 6]} {TOY_WORDS[label][(tick + index) % 6]}",
                }
                for region in REGIONS
                for index, (label, _) in enumerate(_predictions(incident and region == INCIDENT_REGION))
            ]
            report = replay(url, plan(pd.DataFrame(rows), rate=10_000), progress=False)
            assert report.failed == 0
            if tick % 10 == 0:  # a client error now and then, for the error panels
                replay(url, plan(pd.DataFrame([{**rows[0], "text": " "}]), rate=10_000), progress=False)
            if stop.wait(0.25):
                return

    yield MonitoredService(url.removeprefix("http://"), traffic, aspect_heads=False)
    process.terminate()
    process.wait(timeout=30)


def _predictions(incident: bool) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """(label, aspect opinions) of one tick in one region: 25% negative (about food) normally, 75% negative
    during the incident, about ``INCIDENT_ASPECT``."""
    if incident:
        return (*[("negative", ((INCIDENT_ASPECT, "negative"),))] * 3, ("positive", ()))
    return (
        ("negative", (("food_quality", "negative"),)),
        ("neutral", ()),
        ("positive", ((INCIDENT_ASPECT, "positive"),)),
        ("positive", ()),
    )


@pytest.fixture(params=["server", "standin"])
def service(request) -> MonitoredService:
    """The monitored service: the real server, or the stand-in exporter."""
    return request.getfixturevalue(f"{request.param}_service")


@pytest.fixture(scope="module")
def monitoring_config():
    return load_monitoring_config(ROOT / "configs/monitoring.yaml")


@pytest.fixture
def prometheus(tmp_path, service, monitoring_config) -> Iterator[LocalPrometheus]:
    rules = render_rules(monitoring_config, TEST_WINDOWS)
    server = LocalPrometheus(
        tmp_path / "prometheus", [service.target], rules, scrape_interval=SCRAPE_INTERVAL, port=free_port()
    )
    with server:
        yield server


def spike_alerts(prometheus: LocalPrometheus, state: str) -> dict[str, str]:
    """Region -> aspect named, of the RegionalNegativeSpike alerts in ``state`` (pending or firing)."""
    return {
        alert["labels"]["region"]: alert["annotations"]["aspect"]
        for alert in prometheus.alerts()
        if alert["labels"]["alertname"] == "RegionalNegativeSpike" and alert["state"] == state
    }


def test_alert_fires_for_the_incident_region_only_names_its_aspect_and_every_expression_returns_data(
    prometheus, service, monitoring_config
):
    stop = threading.Event()
    sender = threading.Thread(target=service.traffic, args=(stop,), daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + NORMAL_SECONDS + ALERT_TIMEOUT
        while INCIDENT_REGION not in spike_alerts(prometheus, "firing"):
            assert time.monotonic() < deadline, f"no spike alert for {INCIDENT_REGION}: {prometheus.alerts()}"
            assert not set(spike_alerts(prometheus, "pending")) - {INCIDENT_REGION}
            time.sleep(0.5)
        assert set(spike_alerts(prometheus, "firing")) | set(spike_alerts(prometheus, "pending")) == {INCIDENT_REGION}
        named = INCIDENT_ASPECT if service.aspect_heads else "unknown"
        assert spike_alerts(prometheus, "firing")[INCIDENT_REGION] == named

        empty = [
            f"{expression.source}: {expression.expr}"
            for expression in promql_expressions(monitoring_config, TEST_WINDOWS)
            if not prometheus.query(expression.expr) and (service.aspect_heads or "aspect" not in expression.expr)
        ]
        assert not empty, "expressions without data:\n" + "\n".join(empty)
        if not service.aspect_heads:
            assert not prometheus.query(f"{q.ASPECT_PREDICTIONS} or {q.REGION_ASPECT_NEGATIVE_SHORT}")
    finally:
        stop.set()
        sender.join(timeout=5)
