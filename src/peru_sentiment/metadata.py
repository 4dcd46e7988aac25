"""Per-stage metadata (rows in/out, rejected, duration), written as JSON that DVC tracks as metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


@contextmanager
def stage_record(stage: str, path: Path) -> Iterator[dict]:
    """Collect a stage's metadata in a dict; on success add the duration and write it to `path`."""
    record: dict = {"stage": stage}
    start = time.perf_counter()
    yield record
    record["duration_s"] = round(time.perf_counter() - start, 2)
    write_json(path, record)
    log.info("%s finished in %.1f s; metadata in %s", stage, record["duration_s"], path)
