"""Dashboards and rules as code: committed files equal a fresh render, promtool passes, deployment files agree."""

import re
import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from helpers import ROOT
from peru_sentiment.cli.main import app
from peru_sentiment.errors import ConfigError
from peru_sentiment.monitoring import promql
from peru_sentiment.monitoring.config import load_monitoring_config
from peru_sentiment.monitoring.dashboards import build_dashboards
from peru_sentiment.monitoring.local_prometheus import prometheus_config
from peru_sentiment.monitoring.render import promql_expressions, render_files
from peru_sentiment.monitoring.rules import recording_rules, render_rules
from peru_sentiment.serving.metrics import ServiceMetrics

CONFIG = ROOT / "configs/monitoring.yaml"


@pytest.fixture(scope="module")
def config():
    return load_monitoring_config(CONFIG)


def promtool(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    executable = shutil.which("promtool")
    assert executable, "promtool not found: `make test` installs it (Debian package prometheus)"
    return subprocess.run([executable, *args], capture_output=True, text=True, cwd=cwd, check=False)


def test_committed_files_equal_a_fresh_render(config):
    rendered = render_files(config, config.window_set("production"))
    assert {path.name for path in rendered} == {
        "sentiment.yml",
        "sentiment-by-region.json",
        "service-health.json",
        "model-behaviour.json",
        "customer-feedback-store.json",
    }
    for path, text in rendered.items():
        assert (ROOT / path).read_text(encoding="utf-8") == text, (
            f"{path} is stale: run `peru-sentiment monitoring render`"
        )


def test_render_command_writes_the_same_files(tmp_path, config):
    result = CliRunner().invoke(app, ["monitoring", "render", "--config", str(CONFIG), "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for path, text in render_files(config, config.window_set("production")).items():
        assert (tmp_path / path).read_text(encoding="utf-8") == text


def test_committed_rules_pass_promtool_check_and_unit_tests():
    check = promtool("check", "rules", "monitoring/rules/sentiment.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 16 rules found" in check.stdout
    tests = promtool("test", "rules", *sorted(str(path) for path in (ROOT / "monitoring/tests").glob("*.yml")))
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_rules_take_their_windows_from_the_window_set(tmp_path, config):
    replay = config.window_set("replay")
    text = render_rules(config, replay)
    assert f"[{replay.short}]" in text and f"[{replay.baseline}]" in text and f"for: {replay.pending}" in text
    assert "[15m]" not in text and "[1d]" not in text
    (tmp_path / "rules.yml").write_text(text)
    assert promtool("check", "rules", str(tmp_path / "rules.yml")).returncode == 0


def test_docker_prometheus_config_scrapes_the_app_and_loads_the_rules():
    committed = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    assert committed == prometheus_config(["app:8000"], "15s", ["rules/*.yml"])
    check = promtool("check", "config", "monitoring/prometheus.yml")
    assert check.returncode == 0 and "16 rules found" in check.stdout, check.stdout + check.stderr


def test_every_metric_and_recorded_series_in_the_expressions_exists(config, regions):
    metrics = ServiceMetrics({region.code: region.name for region in regions})
    exposed = {
        line.split()[2] for line in metrics.render_metrics()[0].decode().splitlines() if line.startswith("# TYPE")
    }
    series = exposed | {f"{name}_{suffix}" for name in exposed for suffix in ("bucket", "sum", "count", "total")}
    recorded = {rule["record"] for rule in recording_rules(config.window_set("production"))}
    expressions = promql_expressions(config, config.window_set("production"))
    used = {name for expression in expressions for name in re.findall(r"sentiment[a-z0-9_:]*", expression.expr)}
    assert used - series - recorded == set()
    assert {promql.PREDICTIONS, promql.REGION_NEGATIVE_CHANGE, "sentiment_batch_size_bucket"} <= used
    assert {promql.ASPECT_PREDICTIONS, promql.REGION_ASPECT_NEGATIVE_SHORT} <= used
    assert not [expression for expression in expressions if "$" in expression.expr]  # Grafana variables replaced


def test_dashboards_use_the_datasource_variable_and_explain_every_panel(config):
    dashboards = build_dashboards(config)
    assert len({model["uid"] for model in dashboards.values()}) == 3
    for name, model in dashboards.items():
        variables = {variable["name"]: variable for variable in model["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        for panel in model["panels"]:
            assert panel["description"], f"{name}: {panel['title']} has no description"
            assert panel["datasource"]["uid"] == "${datasource}"
            assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])
            if panel["type"] == "bargauge":  # one bar per series (region), so not the table format
                assert all(target["instant"] and target.get("format") != "table" for target in panel["targets"])
    region = {v["name"]: v for v in dashboards["sentiment-by-region"]["templating"]["list"]}["region"]
    assert region["query"]["query"] == "label_values(sentiment_predictions_total, region)"
    assert region["includeAll"] and region["multi"]
    titles = {panel["title"] for model in dashboards.values() for panel in model["panels"]}
    expected = {
        "Net sentiment score by region",
        "Regions ranked by change against their own baseline",
        "Latency p50 / p95 / p99",
        "Label mix: served vs training",
        "Low-confidence predictions",
        "What is failing where",
        "What is failing where, over time",
    }
    assert expected <= titles


def test_thresholds_come_from_the_config(config, tmp_path):
    changed = yaml.safe_load(CONFIG.read_text())
    changed["regional_spike"]["threshold"] = 0.3
    changed["objectives"]["latency_p99_seconds"] = 2.5
    (tmp_path / "monitoring.yaml").write_text(yaml.safe_dump(changed))
    other = load_monitoring_config(tmp_path / "monitoring.yaml")
    text = render_rules(other, other.window_set("production"))
    assert "sentiment:region_negative_share:change > 0.3\n" in text and "p99_short > 2.5" in text
    ranking = next(
        panel
        for panel in build_dashboards(other)["sentiment-by-region"]["panels"]
        if panel["title"].startswith("Regions ranked")
    )
    assert ranking["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 0.3


@pytest.mark.parametrize(
    ("change", "message"),
    [(("objectives", "low_confidence", 0.62), "confidence bucket"), (("windows", "production", {"rate": "5 min"}), "")],
)
def test_invalid_monitoring_config_is_a_readable_error(tmp_path, change, message):
    raw = yaml.safe_load(CONFIG.read_text())
    section, key, value = change
    raw[section][key] = {**raw[section][key], **value} if isinstance(value, dict) else value
    (tmp_path / "monitoring.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"monitoring.yaml is invalid: {section}\.{key}.*{message}"):
        load_monitoring_config(tmp_path / "monitoring.yaml")


def test_unknown_window_set_lists_the_known_ones(config):
    with pytest.raises(ConfigError, match="production, replay"):
        config.window_set("weekly")


def test_compose_stack_mounts_existing_files_and_pins_images():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"app", "proxy", "prometheus", "grafana"}
    assert "ports" not in services["app"], "the API is published through the proxy only"
    assert services["proxy"]["image"].startswith("nginx:1.")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:11.")
    mounts = {
        target: source
        for service in services.values()
        for source, target, *_ in (volume.split(":") for volume in service.get("volumes", []))
        if source.startswith("./")
    }
    for target, source in mounts.items():
        assert (ROOT / source).exists(), f"{source} (mounted at {target}) does not exist"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    assert mounts[provider["providers"][0]["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/prometheus/rules"] == "./monitoring/rules"
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_dockerfile_runs_gunicorn_as_a_user_with_multiprocess_metrics():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "\nFROM python:3.11-slim\n" in dockerfile
    assert "--constraint requirements/constraints.txt" in dockerfile
    assert "\nUSER sentiment\n" in dockerfile
    assert "PROMETHEUS_MULTIPROC_DIR=" in dockerfile and "SENTIMENT_MODEL_DIR=/models" in dockerfile
    assert '"gunicorn", "--config", "serve/gunicorn.conf.py"' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    copied = re.findall(r"^COPY (\S+)", dockerfile, flags=re.MULTILINE)
    assert copied and not set(copied) & set(ignored)
