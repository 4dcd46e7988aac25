"""Champion and challenger: `promote` on tiny bundles, one deliberately damaged, and a server reload under load."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
import requests
from typer.testing import CliRunner

from helpers import toy_feedback, write_tiny_bundle
from peru_sentiment.cli.main import app as cli
from peru_sentiment.errors import ConfigError
from peru_sentiment.export.bundle import LATEST_FILE, load_bundle
from peru_sentiment.export.promote import DECISIONS_FILE, promote


@pytest.fixture(scope="module")
def damaged_bundle(tiny_trained, tmp_path_factory, params):
    """The tiny model with its output classes rotated (negative read as neutral, ...): clearly worse."""
    model = tiny_trained.model
    original = model.get_weights()
    kernel, bias = original[-2], original[-1]
    assert kernel.shape[-1] == bias.shape[-1] == 3, "the last weights are the 3-class head"
    model.set_weights([*original[:-2], kernel[:, [1, 2, 0]], bias[[1, 2, 0]]])
    try:
        return write_tiny_bundle(
            tiny_trained, tmp_path_factory.mktemp("damaged") / "tiny-damaged", params.preprocess, model
        )
    finally:
        model.set_weights(original)


@pytest.fixture(scope="module")
def frozen_set(tmp_path_factory):
    path = tmp_path_factory.mktemp("frozen") / "external.csv"
    toy_feedback(150, seed=21)[["text", "label"]].to_csv(path, index=False)
    return path


def _decisions(serving):
    return [json.loads(line) for line in (serving / DECISIONS_FILE).read_text().splitlines()]


def test_promote_refuses_a_worse_challenger_and_promotes_a_better_one(
    tiny_bundle, damaged_bundle, frozen_set, tmp_path
):
    serving = tmp_path / "serving"
    good, bad = load_bundle(tiny_bundle).version, load_bundle(damaged_bundle).version
    assert promote(tiny_bundle, serving, frozen_set, samples=200)["promoted"], "the first bundle serves"
    assert (serving / LATEST_FILE).read_text().strip() == tiny_bundle.name

    command = ["promote", "--challenger", str(damaged_bundle), "--serving", str(serving)]
    command += ["--frozen-set", str(frozen_set), "--samples", "200"]
    refused = CliRunner().invoke(cli, command)
    assert refused.exit_code == 1
    decision = json.loads(refused.output.strip().splitlines()[-1])
    assert (decision["promoted"], decision["champion"], decision["challenger"]) == (False, good, bad)
    assert decision["challenger_macro_f1"] < decision["champion_macro_f1"]
    assert decision["difference_interval"][1] < 0
    assert (serving / LATEST_FILE).read_text().strip() == tiny_bundle.name, "LATEST did not move"

    with pytest.raises(ConfigError, match="--reason"):
        promote(damaged_bundle, serving, frozen_set, force=True)
    forced = promote(damaged_bundle, serving, frozen_set, force=True, reason="rollback drill", samples=200)
    assert forced["promoted"] and forced["forced"] and forced["reason"] == "rollback drill"
    assert load_bundle(serving).version == bad

    back = promote(tiny_bundle, serving, frozen_set, samples=200)
    assert back["promoted"] and not back["forced"] and back["difference_interval"][0] > 0
    assert load_bundle(serving).version == good
    assert [d["promoted"] for d in _decisions(serving)] == [True, False, True, True]


def test_a_promoted_bundle_is_served_after_sighup_without_a_failed_request(
    tiny_bundle, damaged_bundle, frozen_set, tmp_path
):
    from peru_sentiment.serving.launch import start_server

    serving = tmp_path / "serving"
    promote(damaged_bundle, serving, frozen_set, samples=200)
    process, url = start_server(serving, tmp_path / "server.log", SENTIMENT_DRAIN_S="0.5")
    statuses, slowest, stop = [], [0.0], threading.Event()

    def client():
        session = requests.Session()
        while not stop.is_set():
            started = time.monotonic()
            try:
                statuses.append(session.post(f"{url}/v1/predict", json={"text": "llegó frío"}, timeout=60).status_code)
            except requests.RequestException as error:
                statuses.append(type(error).__name__)
            slowest[0] = max(slowest[0], time.monotonic() - started)

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1)
        assert promote(tiny_bundle, serving, frozen_set, samples=200)["promoted"]
        process.send_signal(signal.SIGHUP)
        new_version, deadline = load_bundle(tiny_bundle).version, time.monotonic() + 60
        while requests.get(f"{url}/v1/model", timeout=60).json()["version"] != new_version:
            assert time.monotonic() < deadline, "the server still serves the old bundle a minute after SIGHUP"
            time.sleep(0.2)
        time.sleep(3)  # the old workers finish and go
        assert all(requests.get(f"{url}/v1/model", timeout=60).json()["version"] == new_version for _ in range(10))
        assert f'version="{new_version}"' in requests.get(f"{url}/metrics", timeout=60).text
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        process.terminate()
        process.wait(60)
    assert len(statuses) > 20 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    # old workers answer until a new one is ready (with the drain right away, requests waited ~30 s for a model)
    assert slowest[0] < 10, f"a request took {slowest[0]:.1f} s during the reload"
