"""Grafana dashboards as code (grafana-foundation-sdk): regional sentiment, service health, model behaviour.

Panels query the raw metrics with Grafana's ``$__rate_interval`` and ``$__range``, and the
recorded series of :mod:`peru_sentiment.monitoring.rules` (named by role, not duration), so
the dashboards do not depend on the window set the rules were rendered with. Thresholds
come from ``configs/monitoring.yaml``.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from prometheus_client.utils import floatToGoString

from peru_sentiment.monitoring import promql as q
from peru_sentiment.monitoring.config import MonitoringConfig

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
RANGE = "$__range"
REGION = 'region=~"$region"'
TAGS = ["peru-sentiment"]
Panel = Any  # a panel builder of the SDK


def build_dashboards(config: MonitoringConfig) -> dict[str, dict[str, Any]]:
    """The three dashboards as Grafana JSON models, by file stem."""
    return {
        "sentiment-by-region": _to_json(_regions(config)),
        "service-health": _to_json(_service(config)),
        "model-behaviour": _to_json(_model(config)),
    }


def render_dashboard(model: dict[str, Any]) -> str:
    """A dashboard JSON model as the text committed under grafana/dashboards/."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dashboard_expressions(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) for every query of a dashboard's panels, in panel order."""
    return [(panel["title"], target["expr"]) for panel in model["panels"] for target in panel.get("targets", [])]


def _to_json(builder: dashboard.Dashboard) -> dict[str, Any]:
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def _dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    datasource = dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(datasource)
    )


def _target(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query.range()


def _thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _timeseries(title: str, description: str, unit: str, *targets: prometheus.Dataquery) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    panel = panel.height(8).span(12).line_width(2).fill_opacity(10)
    for target in targets:
        panel = panel.with_target(target)
    return panel.legend(common.VizLegendOptions().show_legend(True).placement(common_models.LegendPlacement.BOTTOM))


def _with_limit(panel: timeseries.Panel, limit: float) -> timeseries.Panel:
    """Draw ``limit`` (an objective or alert threshold) as a dashed red line."""
    dashed = common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
    return panel.thresholds(_thresholds((None, "transparent"), (limit, "red"))).thresholds_style(dashed)


def _dashed(panel: timeseries.Panel, ref: str) -> timeseries.Panel:
    """Draw the series of query ``ref`` (a baseline or reference) dashed."""
    return panel.override_by_query(
        ref, [DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]
    )


def _stat(title: str, description: str, unit: str, expr: str) -> stat.Panel:
    panel = stat.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    return panel.height(4).span(6).with_target(_target(expr, instant=True))


def _bars(title: str, description: str, unit: str, expr: str, legend: str) -> bargauge.Panel:
    """A horizontal bar per series of an instant query (regions ranked)."""
    reduce = common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    panel = bargauge.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    panel = panel.height(14).span(12).orientation(common_models.VizOrientation.HORIZONTAL)
    return (
        panel.display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(reduce)
        .with_target(_target(expr, legend, instant=True))
    )


def _failing_where(config: MonitoringConfig) -> table.Panel:
    """Negative share by aspect x region over the dashboard's range: a region per row, an aspect per column
    (Grafana's grouping-to-matrix names the first column ``region\\aspect``; it stays uncoloured)."""
    spike = config.regional_spike.threshold
    matrix = DataTransformerConfig(
        id_val="groupingToMatrix",
        options={"rowField": "region", "columnField": "aspect", "valueField": "Value", "emptyValue": "null"},
    )
    return (
        table.Panel()
        .title("What is failing where")
        .description(
            "Share of each region's feedback in the selected range with a complaint about each aspect (texts can "
            f"complain about several). Red from {spike:.0%}. Empty without a model with aspect heads."
        )
        .datasource(DATASOURCE)
        .unit("percentunit")
        .height(10)
        .span(24)
        .cell_options(
            common_models.TableColoredBackgroundCellOptions(mode=common_models.TableCellBackgroundDisplayMode.GRADIENT)
        )
        .thresholds(_thresholds((None, "green"), (spike / 2, "orange"), (spike, "red")))
        .override_by_name("region\\aspect", [DynamicConfigValue(id_val="custom.cellOptions", value={"type": "auto"})])
        .with_target(_target(q.aspect_negative_share(RANGE, REGION), instant=True).format(PromQueryFormat.TABLE))
        .with_transformation(matrix)
    )


def _net_score(group: str, scope: str) -> str:
    """(positive − negative) / all feedback in ``scope`` over the dashboard's range, per ``group``."""
    positive = q.share_by(group, 'label="positive"', RANGE, scope)
    negative = q.share_by(group, 'label="negative"', RANGE, scope)
    return f"{positive} - {negative}"


def _regions(config: MonitoringConfig) -> dashboard.Dashboard:
    spike = config.regional_spike.threshold
    region = (
        dashboard.QueryVariable("region")
        .label("Region")
        .datasource(DATASOURCE)
        .query({"query": f"label_values({q.PREDICTIONS}, region)", "refId": "regions"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    net = _net_score("region", "")
    net_all = _net_score("", REGION)
    return (
        _dashboard(
            "peru-sentiment-regions",
            "Customer sentiment by region",
            "Where customers are unhappy, and where it is getting worse. Codes are ISO 3166-2:PE (PE-CUS is Cusco).",
        )
        .with_variable(region)
        .with_panel(
            _stat(
                "Feedback received",
                "Texts classified in the selected time range and regions.",
                "short",
                q.increase_by("", RANGE, REGION),
            )
        )
        .with_panel(
            _stat(
                "Net sentiment score",
                "(positive − negative) / all feedback in the selected range and regions: +100% all positive, "
                "−100% all negative.",
                "percentunit",
                net_all,
            ).thresholds(_thresholds((None, "red"), (0, "orange"), (0.2, "green")))
        )
        .with_panel(
            _stat(
                "Negative share",
                "Share of the feedback in the selected range and regions that is negative.",
                "percentunit",
                q.share_by("", 'label="negative"', RANGE, REGION),
            )
        )
        .with_panel(
            _stat(
                "Regions spiking now",
                f"Regions whose recent negative share is more than {spike:.0%} above their own baseline "
                "(the condition of the regional alert, before its minimum volume).",
                "short",
                f"count({q.REGION_NEGATIVE_CHANGE} > {spike}) or vector(0)",
            ).thresholds(_thresholds((None, "green"), (1, "red")))
        )
        .with_panel(
            _bars(
                "Net sentiment score by region",
                "(positive − negative) / all feedback per region over the selected time range, worst first. "
                "Below zero: more complaints than praise.",
                "percentunit",
                f"sort({net})",
                "{{region}}",
            )
            .min(-1)
            .max(1)
            .thresholds(_thresholds((None, "red"), (0, "orange"), (0.2, "green")))
        )
        .with_panel(
            _bars(
                "Regions ranked by change against their own baseline",
                "Recent negative share minus the region's baseline negative share (percentage points), largest rise "
                f"first. Above {spike:.0%} a region is spiking; the alert also needs enough feedback.",
                "percentunit",
                f"sort_desc({q.REGION_NEGATIVE_CHANGE})",
                "{{region}}",
            )
            .min(-0.5)
            .max(0.5)
            .thresholds(_thresholds((None, "green"), (spike / 2, "orange"), (spike, "red")))
        )
        .with_panel(
            _dashed(
                _timeseries(
                    "Negative share over time",
                    "Solid: share of negative feedback in the recent window, per selected region. Dashed: the same "
                    "region's baseline share. A solid line far above its dashed line is an incident.",
                    "percentunit",
                    _target(f"{q.REGION_NEGATIVE_SHORT}{{{REGION}}}", "{{region}} recent"),
                    _target(f"{q.REGION_NEGATIVE_BASELINE}{{{REGION}}}", "{{region}} baseline", ref="B"),
                ).span(24),
                "B",
            )
        )
        .with_panel(_failing_where(config))
        .with_panel(
            _timeseries(
                "What is failing where, over time",
                "Share of each selected region's feedback in the recent window with a complaint about each aspect "
                "(region and aspect per line). The aspect whose line rises most against its baseline is the one "
                "the regional alert names.",
                "percentunit",
                _target(f"{q.REGION_ASPECT_NEGATIVE_SHORT}{{{REGION}}} > 0", "{{region}} {{aspect}}"),
            ).span(24)
        )
        .with_panel(
            _timeseries(
                "Feedback by channel",
                "Texts per minute from each channel (survey, app review, social media, support chat) in the selected "
                "regions.",
                "cpm",
                _target(f"60 * sum by (channel) (rate({q.PREDICTIONS}{{{REGION}}}[{RATE}]))", "{{channel}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Feedback by language",
                "Texts per minute by detected language (es, en, other), selected regions.",
                "cpm",
                _target(f"60 * sum by (language) (rate({q.PREDICTIONS}{{{REGION}}}[{RATE}]))", "{{language}}"),
            )
        )
    )


def _service(config: MonitoringConfig) -> dashboard.Dashboard:
    objectives = config.objectives
    latency = [
        _target(q.quantile(quantile, q.DURATION, RATE), f"p{round(quantile * 100)}", ref=ref)
        for quantile, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]
    batch_mean = f"sum(rate({q.BATCH_SIZE}_sum[{RATE}])) / sum(rate({q.BATCH_SIZE}_count[{RATE}]))"
    return (
        _dashboard(
            "peru-sentiment-service", "Sentiment service health", "Traffic, latency, errors and saturation of the API."
        )
        .with_panel(
            _stat(
                "Requests/s",
                "Requests answered per second, all endpoints.",
                "reqps",
                f"sum(rate({q.REQUESTS}[{RATE}]))",
            )
        )
        .with_panel(
            _stat(
                "p99 latency",
                f"Slowest 1% of requests; the objective is {objectives.latency_p99_seconds:g} s.",
                "s",
                q.quantile(0.99, q.DURATION, RATE),
            ).thresholds(_thresholds((None, "green"), (objectives.latency_p99_seconds, "red")))
        )
        .with_panel(
            _stat(
                "Error rate",
                "Share of requests answered with a server error (5xx).",
                "percentunit",
                q.error_ratio(RATE),
            ).thresholds(_thresholds((None, "green"), (objectives.error_ratio, "red")))
        )
        .with_panel(
            _stat(
                "In flight",
                "Requests being answered right now, all workers.",
                "short",
                f"sum({q.IN_FLIGHT})",
            )
        )
        .with_panel(
            _timeseries(
                "Requests by endpoint and status",
                "Requests per second, split by endpoint and HTTP status.",
                "reqps",
                _target(f"sum by (endpoint, status) (rate({q.REQUESTS}[{RATE}]))", "{{endpoint}} {{status}}"),
            )
        )
        .with_panel(
            _with_limit(
                _timeseries(
                    "Latency p50 / p95 / p99",
                    "Time to answer: half of the requests are faster than p50, 99% faster than p99. "
                    "The dashed line is the p99 objective.",
                    "s",
                    *latency,
                ),
                objectives.latency_p99_seconds,
            )
        )
        .with_panel(
            _with_limit(
                _timeseries(
                    "Error rate",
                    "Share of requests with a server error (5xx); the dashed line is the alert threshold.",
                    "percentunit",
                    _target(q.error_ratio(RATE), "5xx share"),
                ),
                objectives.error_ratio,
            )
        )
        .with_panel(
            _timeseries(
                "Errors by type",
                "Error answers per second by type: invalid JSON, validation, too large, unauthorized, not ready, "
                "internal, ...",
                "reqps",
                _target(f"sum by (type) (rate({q.ERRORS}[$__rate_interval]))", "{{type}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Batch sizes",
                "Texts per micro-batch run through the model: mean and 95th percentile.",
                "short",
                _target(batch_mean, "mean"),
                _target(q.quantile(0.95, q.BATCH_SIZE, RATE), "p95", ref="B"),
            )
        )
        .with_panel(
            _timeseries(
                "Saturation",
                "Requests in flight (sampled at each scrape) and the average number of requests being served "
                "(busy time per second). Near the number of workers × threads, requests start to queue.",
                "short",
                _target(f"sum({q.IN_FLIGHT})", "in flight"),
                _target(f"sum(rate({q.DURATION}_sum[{RATE}]))", "busy (average)", ref="B"),
            )
        )
        .with_panel(
            table.Panel()
            .title("Model loaded")
            .description("Version and backbone checkpoint of the model bundle the workers serve.")
            .datasource(DATASOURCE)
            .height(5)
            .span(24)
            .with_target(
                _target(f"max by (version, checkpoint) ({q.MODEL_INFO}) == 1", instant=True).format(
                    PromQueryFormat.TABLE
                )
            )
        )
    )


def _model(config: MonitoringConfig) -> dashboard.Dashboard:
    low = config.objectives.low_confidence
    bucket = floatToGoString(low)
    low_share = (
        f'sum(rate({q.CONFIDENCE}_bucket{{le="{bucket}"}}[{RATE}])) / (sum(rate({q.CONFIDENCE}_count[{RATE}])) > 0)'
    )
    confidence = (
        heatmap.Panel()
        .title("Confidence distribution")
        .description("How sure the model is: predictions per confidence band over time. Mass near 1.0 is good.")
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .calculate(False)
        .with_target(
            _target(f"sum by (le) (increase({q.CONFIDENCE}_bucket[{RATE}]))", "{{le}}").format(PromQueryFormat.HEATMAP)
        )
    )
    return (
        _dashboard(
            "peru-sentiment-model",
            "Sentiment model behaviour",
            "What the model predicts against what it was trained on, and how confident it is.",
        )
        .with_panel(
            _dashed(
                _timeseries(
                    "Label mix: served vs training",
                    "Solid: share of each predicted label in the recent window. Dashed: the label's share in the "
                    "training data shipped with the model. Lines apart mean the feedback or the model changed.",
                    "percentunit",
                    _target(q.LABEL_SHARE, "{{label}} served"),
                    _target(f"max by (label) ({q.TRAINING_SHARE})", "{{label}} training", ref="B"),
                ),
                "B",
            )
        )
        .with_panel(
            _with_limit(
                _timeseries(
                    "Label drift (total variation distance)",
                    "Half the summed absolute differences between served and training label shares: 0 identical, "
                    "1 disjoint. The dashed line is the drift alert threshold.",
                    "percentunit",
                    _target(q.LABEL_DRIFT, "drift"),
                ),
                config.drift.threshold,
            )
        )
        .with_panel(confidence)
        .with_panel(
            _timeseries(
                "Low-confidence predictions",
                f"Share of predictions whose probability is at most {low:.0%}: texts the model finds ambiguous.",
                "percentunit",
                _target(low_share, f"confidence ≤ {low:g}"),
            )
        )
        .with_panel(
            _timeseries(
                "Median confidence by label",
                "Median probability of the predicted label, per label.",
                "percentunit",
                _target(q.quantile(0.5, q.CONFIDENCE, RATE, group="label"), "{{label}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Language mix",
                "Share of the feedback in each detected language (es, en, other).",
                "percentunit",
                _target(q.mix("language", RATE), "{{language}}"),
            ).stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
        )
        .with_panel(
            _timeseries(
                "Text length",
                "Characters per text: median and 95th percentile.",
                "short",
                _target(q.quantile(0.5, q.TEXT_LENGTH, RATE), "p50"),
                _target(q.quantile(0.95, q.TEXT_LENGTH, RATE), "p95", ref="B"),
            ).span(24)
        )
    )
