"""Traffic replay: streams feedback from a file to the service's ``POST /v1/predict`` in time order.

Real timestamps are compressed by a speed-up factor (or so the whole file fits a chosen
duration), and a rate cap keeps the service from being flooded; items that are due together
go in one request of at most ``batch_size`` items. The file's label is never sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
from tqdm import tqdm

from peru_sentiment.errors import ConfigError
from peru_sentiment.tables import read_table

log = logging.getLogger(__name__)

PREDICT_PATH = "/v1/predict"
ID_COLUMNS = ("feedback_id", "id")
OPTIONAL_COLUMNS = ("region", "channel", "language")


@dataclass(frozen=True)
class ReplayPlan:
    """Items to send and when: ``due[i]`` seconds after the start for ``items[i]``."""

    items: list[dict[str, Any]]
    due: np.ndarray


@dataclass
class ReplayReport:
    """What a replay did: items the service accepted (2xx) or not, requests, and request latencies in seconds."""

    sent: int = 0
    failed: int = 0
    requests: int = 0
    failed_requests: int = 0
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal."""
        line = f"{self.sent} items accepted, {self.failed} failed, in {self.requests} requests"
        if self.latencies:
            p50, p95, worst = np.percentile(self.latencies, [50, 95, 100]) * 1000
            line += f"; latency p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {worst:.0f} ms"
        return line


def read_feedback(path: Path) -> pd.DataFrame:
    """Read a CSV, JSONL/NDJSON or Parquet file of feedback (needs ``text`` and ``timestamp`` columns)."""
    frame = read_table(path)
    missing = {"text", "timestamp"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path} has no {', '.join(sorted(missing))} column")
    return frame


def select(
    frame: pd.DataFrame, start: dt.datetime | None = None, end: dt.datetime | None = None, regions: Sequence[str] = ()
) -> pd.DataFrame:
    """Rows from ``start`` (inclusive) to ``end`` (exclusive) and in ``regions`` (all if empty), by timestamp."""
    frame = frame.assign(timestamp=pd.to_datetime(frame["timestamp"]))
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= frame["timestamp"] >= pd.Timestamp(start)
    if end is not None:
        keep &= frame["timestamp"] < pd.Timestamp(end)
    if regions:
        if "region" not in frame.columns:
            raise ConfigError("the file has no region column to filter on")
        keep &= frame["region"].isin(regions)
    return frame[keep].sort_values("timestamp", kind="stable").reset_index(drop=True)


def plan(
    frame: pd.DataFrame, *, rate: float, speedup: float | None = None, duration: float | None = None
) -> ReplayPlan:
    """When to send each row: its timestamp offset divided by the speed-up, at most ``rate`` items per second.

    ``duration`` (seconds) sets the speed-up so that the whole span fits; with neither, rows go
    out back to back at ``rate``.
    """
    if rate <= 0:
        raise ConfigError("--rate must be positive")
    if speedup is not None and duration is not None:
        raise ConfigError("give --speedup or --duration, not both")
    offsets = (frame["timestamp"] - frame["timestamp"].min()).dt.total_seconds().to_numpy(dtype=float)
    if duration is not None:
        span = offsets.max(initial=0.0)
        speedup = span / duration if span > 0 and duration > 0 else None
    scheduled = offsets / speedup if speedup else np.zeros(len(frame))
    due = np.empty(len(frame))
    previous = -1.0 / rate
    for index, moment in enumerate(scheduled):  # the rate cap: never closer than 1/rate to the previous item
        previous = max(moment, previous + 1.0 / rate)
        due[index] = previous
    return ReplayPlan([_item(row, index) for index, row in enumerate(frame.to_dict("records"))], due)


def _item(row: dict[str, Any], index: int) -> dict[str, Any]:
    """The request item of a row: id, text, region, channel, timestamp, language; never the label."""
    identifier = next((row[column] for column in ID_COLUMNS if _present(row.get(column))), index)
    item: dict[str, Any] = {"id": str(identifier), "text": str(row["text"])}
    for column in OPTIONAL_COLUMNS:
        value = row.get(column)
        item[column] = str(value) if _present(value) else None
    item["timestamp"] = pd.Timestamp(row["timestamp"]).isoformat()
    return item


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and value is not pd.NA


def batches(replay: ReplayPlan, batch_size: int, clock: Callable[[], float]) -> Iterator[list[dict[str, Any]]]:
    """Items grouped as they fall due on ``clock`` (seconds since the start), at most ``batch_size`` per group."""
    index, total = 0, len(replay.items)
    while index < total:
        wait = replay.due[index] - clock()
        if wait > 0:
            time.sleep(wait)
        now = clock()
        stop = index + 1
        while stop < total and stop - index < batch_size and replay.due[stop] <= now:
            stop += 1
        yield replay.items[index:stop]
        index = stop


def replay(
    url: str,
    replay_plan: ReplayPlan,
    *,
    batch_size: int = 32,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
    progress: bool = True,
) -> ReplayReport:
    """Send the plan to ``{url}/v1/predict``; failed requests are counted, not retried."""
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    report = ReplayReport()
    endpoint = url.rstrip("/") + PREDICT_PATH
    started = time.monotonic()
    with requests.Session() as session, tqdm(total=len(replay_plan.items), disable=not progress, unit="text") as bar:
        session.headers.update(headers or {})
        for batch in batches(replay_plan, batch_size, lambda: time.monotonic() - started):
            before = time.perf_counter()
            try:
                ok = session.post(endpoint, json={"items": batch}, timeout=timeout).ok
            except requests.RequestException as error:
                log.debug("request failed: %s", error)
                ok = False
            report.latencies.append(time.perf_counter() - before)
            report.requests += 1
            if ok:
                report.sent += len(batch)
            else:
                report.failed += len(batch)
                report.failed_requests += 1
            bar.update(len(batch))
    return report
