"""Typed view of ``configs/monitoring.yaml``: objectives, alert thresholds and window sets."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from peru_sentiment.config import load_yaml
from peru_sentiment.errors import ConfigError
from peru_sentiment.serving.metrics import CONFIDENCE_BUCKETS

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w|y))+$"  # a Prometheus duration such as 15m or 1h30m


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objectives(_Strict):
    latency_p99_seconds: float = Field(gt=0)
    error_ratio: float = Field(gt=0, lt=1)
    low_confidence: float

    @field_validator("low_confidence")
    @classmethod
    def _is_bucket(cls, value: float) -> float:
        if value not in CONFIDENCE_BUCKETS:
            raise ValueError(f"must be a confidence bucket bound: {', '.join(map(str, CONFIDENCE_BUCKETS))}")
        return value


class SpikeRule(_Strict):
    threshold: float = Field(gt=0, lt=1)
    min_volume: int = Field(ge=1)


class DriftRule(_Strict):
    threshold: float = Field(gt=0, le=1)
    min_volume: int = Field(ge=1)


class Windows(_Strict):
    """Prometheus durations: rate() window, recent window, baseline window, pending time of alerts."""

    rate: str = Field(pattern=DURATION_PATTERN)
    short: str = Field(pattern=DURATION_PATTERN)
    baseline: str = Field(pattern=DURATION_PATTERN)
    pending: str = Field(pattern=DURATION_PATTERN)


class MonitoringConfig(_Strict):
    objectives: Objectives
    regional_spike: SpikeRule
    drift: DriftRule
    windows: dict[str, Windows] = Field(min_length=1)

    def window_set(self, name: str) -> Windows:
        """The named window set, or a ConfigError that lists the names."""
        if name not in self.windows:
            raise ConfigError(f"no window set {name!r} in the monitoring config; use one of {', '.join(self.windows)}")
        return self.windows[name]


def load_monitoring_config(path: str | Path) -> MonitoringConfig:
    """Read and validate the monitoring config."""
    try:
        return MonitoringConfig.model_validate(load_yaml(path))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, issue['loc']))}: {issue['msg']}" for issue in error.errors())
        raise ConfigError(f"{path} is invalid: {problems}") from None
