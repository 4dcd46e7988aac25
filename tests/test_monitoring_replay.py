"""Traffic replay against a local HTTP server that records what it receives."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pandas as pd
import pytest
from typer.testing import CliRunner

from peru_sentiment.cli.main import app
from peru_sentiment.errors import ConfigError
from peru_sentiment.monitoring import replay as player


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
