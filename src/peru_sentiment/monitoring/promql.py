"""The service's metric names, and PromQL building blocks shared by the recording rules, the alerts and the dashboards.

The metric names are spelled only here: the service (``serving/metrics.py``) registers
its metrics under them and every query reads them from here.

Recorded series are named ``sentiment:<what>:<window>`` where the window is the role
(``short`` or ``baseline``), not a duration: the same dashboards then work with rules
rendered for any window set.
"""

from __future__ import annotations

PREDICTIONS = "sentiment_predictions_total"
ASPECT_PREDICTIONS = "sentiment_aspect_predictions_total"
REQUESTS = "sentiment_http_requests_total"
DURATION = "sentiment_http_request_duration_seconds"
IN_FLIGHT = "sentiment_http_requests_in_flight"
BATCH_SIZE = "sentiment_batch_size"
CONFIDENCE = "sentiment_prediction_confidence"
TEXT_LENGTH = "sentiment_text_length_chars"
MODEL_INFO = "sentiment_model_info"
TRAINING_SHARE = "sentiment_training_label_share"
ERRORS = "sentiment_errors_total"

REGION_VOLUME = "sentiment:region_predictions:short"
REGION_NEGATIVE_SHORT = "sentiment:region_negative_share:short"
REGION_NEGATIVE_BASELINE = "sentiment:region_negative_share:baseline"
REGION_NEGATIVE_CHANGE = "sentiment:region_negative_share:change"
REGION_ASPECT_NEGATIVE_SHORT = "sentiment:region_aspect_negative_share:short"
REGION_ASPECT_NEGATIVE_BASELINE = "sentiment:region_aspect_negative_share:baseline"
REGION_ASPECT_NEGATIVE_CHANGE = "sentiment:region_aspect_negative_share:change"
REGION_NEGATIVE_DRIVER = "sentiment:region_negative_driver:change"
LABEL_SHARE = "sentiment:label_share:short"
LABEL_DRIFT = "sentiment:label_distribution_tvd:short"
ERROR_RATIO = "sentiment:http_error_ratio:short"
LATENCY_P99 = "sentiment:http_request_duration_seconds:p99_short"


def increase_by(group: str, window: str, selector: str = "") -> str:
    """Predictions in ``window``, summed by the ``group`` labels (empty: one total)."""
    matcher = f"{{{selector}}}" if selector else ""
    by = f" by ({group})" if group else ""
    return f"sum{by} (increase({PREDICTIONS}{matcher}[{window}]))"


def mix(group: str, window: str, selector: str = "") -> str:
    """Share of each ``group`` value (label, language, ...) in all predictions matching ``selector``."""
    total = increase_by("", window, selector)
    return f"{increase_by(group, window, selector)} / ignoring ({group}) group_left () ({total} > 0)"


def error_ratio(window: str) -> str:
    """Share of requests answered with a 5xx status; 0 when there were requests and none failed."""
    failed = f'sum(rate({REQUESTS}{{status=~"5.."}}[{window}]))'
    return f"({failed} or vector(0)) / (sum(rate({REQUESTS}[{window}])) > 0)"


def share_by(group: str, selector: str, window: str, scope: str = "") -> str:
    """Share of the predictions in ``scope`` that match ``selector``, per ``group``, in ``window``.

    A group with predictions but none matching gets 0 rather than no value.
    """
    total = increase_by(group, window, scope)
    part = increase_by(group, window, ",".join(matcher for matcher in (selector, scope) if matcher))
    return f"({part} or 0 * {total}) / ({total} > 0)"


def aspect_negative_share(window: str, scope: str = "") -> str:
    """Share of a region's predictions (in ``scope``) with a negative opinion on each aspect, per aspect and region.

    The denominator is all of the region's predictions: 0.4 means that 40% of the region's
    feedback complains about the aspect. An aspect mentioned in the region but never
    negatively gets 0 rather than no value.
    """
    negative = _aspect_increase(window, ",".join(part for part in ('polarity="negative"', scope) if part))
    total = increase_by("region", window, scope)
    return f"({negative} or 0 * {_aspect_increase(window, scope)}) / on (region) group_left () ({total} > 0)"


def _aspect_increase(window: str, selector: str) -> str:
    """Aspect opinions in ``window`` matching ``selector``, summed by aspect and region."""
    matcher = f"{{{selector}}}" if selector else ""
    return f"sum by (aspect, region) (increase({ASPECT_PREDICTIONS}{matcher}[{window}]))"


def quantile(q: float, metric: str, window: str, group: str = "", selector: str = "") -> str:
    """``histogram_quantile`` of a histogram's rate over ``window``, optionally per ``group``."""
    by = ", ".join(part for part in (group, "le") if part)
    matcher = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{matcher}[{window}])))"
