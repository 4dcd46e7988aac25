"""Traffic replay against a local HTTP server that records what it receives, and the generator's
incidents replayed through the service's metrics and the alert rules (promtool)."""

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from helpers import ROOT
from peru_sentiment.cli.main import app
from peru_sentiment.data import synthetic
from peru_sentiment.errors import ConfigError
from peru_sentiment.model.inputs import aspect_targets
from peru_sentiment.monitoring import promql as q
from peru_sentiment.monitoring import replay as player
from peru_sentiment.monitoring.config import load_monitoring_config
from peru_sentiment.monitoring.rules import render_rules
from peru_sentiment.schema import ASPECT_POLARITIES, SERVICE_ASPECTS
from peru_sentiment.serving.metrics import PredictionRecord, ServiceMetrics


class Recorder(BaseHTTPRequestHandler):
    """Records every POST body; answers 500 to batches holding an item whose text is "fail"."""

    bodies: ClassVar[list[tuple[str, dict, dict]]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append((self.path, body, dict(self.headers)))
        failing = any(item["text"] == "fail" for item in body["items"])
        self.send_response(500 if failing else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Recorder.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", Recorder.bodies
    httpd.shutdown()
    thread.join(timeout=5)


def feedback(rows: int = 12) -> pd.DataFrame:
    """Rows one hour apart, newest first (syn-000 is the newest), regions alternating from PE-CUS."""
    return pd.DataFrame(
        {
            "feedback_id": [f"syn-{i:03d}" for i in range(rows)],
            "text": [f"pedido {i}" for i in range(rows)],
            "label": ["negative"] * rows,
            "region": ["PE-CUS", "PE-LIM"] * (rows // 2),
            "channel": "survey",
            "language": ["es", None] * (rows // 2),
            "timestamp": pd.date_range("2026-02-01", periods=rows, freq="1h")[::-1],
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_reads_every_format_and_orders_by_timestamp(tmp_path, suffix):
    path = tmp_path / f"feedback{suffix}"
    frame = feedback()
    {
        ".parquet": lambda: frame.to_parquet(path),
        ".csv": lambda: frame.to_csv(path, index=False),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True, date_format="iso"),
    }[suffix]()
    selected = player.select(player.read_feedback(path))
    assert selected["feedback_id"].tolist() == [f"syn-{i:03d}" for i in reversed(range(12))]


def test_unreadable_inputs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        player.read_feedback(tmp_path / "missing.parquet")
    feedback().drop(columns="timestamp").to_parquet(tmp_path / "no_time.parquet")
    with pytest.raises(ConfigError, match="no timestamp column"):
        player.read_feedback(tmp_path / "no_time.parquet")


def test_filters_a_window_and_regions():
    selected = player.select(feedback(), start="2026-02-01 02:00", end="2026-02-01 08:00", regions=["PE-CUS"])
    assert selected["timestamp"].dt.hour.tolist() == [3, 5, 7]
    assert set(selected["region"]) == {"PE-CUS"}


def test_plan_compresses_time_and_caps_the_rate():
    frame = player.select(feedback(4))  # 0, 1, 2, 3 hours
    assert player.plan(frame, rate=1000, speedup=3600).due.tolist() == pytest.approx([0, 1, 2, 3])
    assert player.plan(frame, rate=1000, duration=6).due.tolist() == pytest.approx([0, 2, 4, 6])
    assert player.plan(frame, rate=0.5, speedup=3600).due.tolist() == pytest.approx([0, 2, 4, 6])  # capped
    assert player.plan(frame, rate=4).due.tolist() == pytest.approx([0, 0.25, 0.5, 0.75])
    with pytest.raises(ConfigError, match="not both"):
        player.plan(frame, rate=1, speedup=2, duration=3)


def test_items_carry_the_request_fields_and_never_the_label():
    item = player.plan(player.select(feedback(2)), rate=10).items[1]
    assert item == {
        "id": "syn-000",
        "text": "pedido 0",
        "region": "PE-CUS",
        "channel": "survey",
        "timestamp": "2026-02-01T01:00:00",
        "language": "es",
    }


def test_replay_sends_batches_in_order_and_reports(server):
    url, bodies = server
    frame = player.select(feedback(10))
    report = player.replay(url, player.plan(frame, rate=1000), batch_size=4, headers={"X-API-Key": "k"}, progress=False)
    assert report.sent == 10 and report.failed == 0 and report.requests == len(bodies) >= 3
    assert {path for path, _, _ in bodies} == {"/v1/predict"}
    assert all(len(body["items"]) <= 4 and headers["X-API-Key"] == "k" for _, body, headers in bodies)
    sent = [item for _, body, _ in bodies for item in body["items"]]
    assert [item["id"] for item in sent] == frame["feedback_id"].tolist()
    assert all("label" not in item for item in sent)
    assert len(report.latencies) == report.requests and "10 items accepted, 0 failed" in report.summary()


def test_failed_requests_are_counted_and_the_command_exits_non_zero(server, tmp_path):
    url, bodies = server
    frame = feedback(6)
    frame.loc[frame["feedback_id"] == "syn-005", "text"] = "fail"  # the oldest row: alone in its batch
    frame.to_parquet(tmp_path / "feedback.parquet")
    arguments = ["replay", "--url", url, "--input", str(tmp_path / "feedback.parquet"), "--rate", "200"]
    result = CliRunner().invoke(app, [*arguments, "--speedup", "36000", "--batch-size", "2", "--no-progress"])
    assert result.exit_code == 1
    assert "5 items accepted, 1 failed" in result.output
    assert bodies[0][1]["items"][0]["text"] == "fail" and len(bodies[0][1]["items"]) == 1


# The README's replay: the default half-year in 30 minutes against rules with the `replay` window set.
REPLAY_SECONDS = 1800
STEP_SECONDS = 15  # scrape and rule-evaluation interval of the replayed Prometheus


def truth_records(frame: pd.DataFrame) -> list[PredictionRecord]:
    """A perfect model: each row's true label and the aspects it mentions with their true polarities."""
    targets = aspect_targets(frame, SERVICE_ASPECTS)
    return [
        PredictionRecord(
            row.label,
            1.0,
            row.region,
            row.channel,
            row.language,
            len(row.text),
            tuple(
                (aspect, ASPECT_POLARITIES[target])
                for aspect, target in zip(SERVICE_ASPECTS, found, strict=True)
                if target > 0
            ),
        )
        for row, found in zip(frame.itertuples(), targets, strict=True)
    ]


def scraped_series(replay_plan: player.ReplayPlan, records: list[PredictionRecord], regions) -> dict[str, list]:
    """promtool input series: what Prometheus scrapes every STEP_SECONDS from a service that counts ``records``
    as the plan sends them (``None`` before a series exists)."""
    metrics = ServiceMetrics({region.code: region.name for region in regions})
    wanted = {q.PREDICTIONS, q.ASPECT_PREDICTIONS}
    steps = int(replay_plan.due.max() // STEP_SECONDS) + 2
    series: dict[str, list] = {}
    sent = 0
    for step in range(steps):
        while sent < len(records) and replay_plan.due[sent] < step * STEP_SECONDS:
            metrics.observe_predictions([records[sent]])
            sent += 1
        for family in text_string_to_metric_families(metrics.render_metrics()[0].decode()):
            for sample in family.samples:
                if sample.name in wanted:
                    labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
                    series.setdefault(f"{sample.name}{{{labels}}}", [None] * step).append(sample.value)
    return series


@pytest.fixture(scope="module")
def default_corpus(params, regions, phrasebook, vocabulary) -> pd.DataFrame:
    """The default run's corpus (20,000 rows): the incidents need its volume to pass the alert's minimum."""
    return synthetic.generate_feedback(params.generate, regions, phrasebook, vocabulary, progress=False)


def test_replayed_incidents_fire_the_regional_alert_naming_their_true_aspect(default_corpus, params, regions, tmp_path):
    """Every incident of ``generate.incidents``, replayed in time order with the true labels and aspects as the
    predictions: while the alert fires for the incident's region, the aspect it names (the region's driver) is
    the incident's aspect, and it fires at least once; it never fires for another region."""
    config = load_monitoring_config(ROOT / "configs/monitoring.yaml")
    windows = config.window_set("replay")
    frame = player.select(default_corpus)
    replay_plan = player.plan(frame, rate=1000, duration=REPLAY_SECONDS)
    assert [item["id"] for item in replay_plan.items] == frame["feedback_id"].tolist()  # the plan keeps the order
    series = scraped_series(replay_plan, truth_records(frame), regions)

    start, speedup = frame["timestamp"].min(), (frame["timestamp"].max() - frame["timestamp"].min()).total_seconds()
    speedup /= REPLAY_SECONDS
    # The alert can fire until the short window and the pending time have passed the incident's end.
    lag = int((pd.Timedelta(windows.short) + pd.Timedelta(windows.pending)).total_seconds())
    tests = []
    for incident in params.generate.incidents:
        begins, ends = (
            int((pd.Timestamp(day) - start).total_seconds() / speedup)
            for day in (incident.start, incident.end + pd.Timedelta(days=1))
        )
        span = ends + lag - begins
        named = (
            f'{q.REGION_NEGATIVE_DRIVER}{{region="{incident.region}"}}'
            f' and on (region) ALERTS{{alertname="RegionalNegativeSpike",alertstate="firing"}}'
        )
        tests.append(
            {
                "expr": f"count by (aspect, region) (count_over_time(({named})[{span}s:{STEP_SECONDS}s]))",
                "eval_time": f"{ends + lag}s",
                "exp_samples": [{"labels": f'{{aspect="{incident.aspect}",region="{incident.region}"}}', "value": 1}],
            }
        )
    fired = f'ALERTS{{alertname="RegionalNegativeSpike",alertstate="firing"}}[{REPLAY_SECONDS}s:{STEP_SECONDS}s]'
    tests.append(  # and no other region: a perfect model raises no false alarm
        {
            "expr": f"count by (region) (count_over_time({fired}))",
            "eval_time": f"{REPLAY_SECONDS}s",
            "exp_samples": [
                {"labels": f'{{region="{region}"}}', "value": 1}
                for region in sorted({incident.region for incident in params.generate.incidents})
            ],
        }
    )
    (tmp_path / "rules.yml").write_text(render_rules(config, windows))
    values = {name: " ".join("_" if value is None else f"{value:g}" for value in row) for name, row in series.items()}
    unit = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": f"{STEP_SECONDS}s",
        "tests": [
            {
                "interval": f"{STEP_SECONDS}s",
                "input_series": [{"series": name, "values": row} for name, row in values.items()],
                "promql_expr_test": tests,
            }
        ],
    }
    (tmp_path / "replay_test.yml").write_text(yaml.safe_dump(unit, width=10**9))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make test` installs it (Debian package prometheus)"
    result = subprocess.run(
        [promtool, "test", "rules", "replay_test.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
