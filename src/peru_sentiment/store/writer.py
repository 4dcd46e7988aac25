"""Writes predictions to the store off the request path: a bounded queue and one background writer.

A request hands its rows to :meth:`PredictionWriter.submit` and returns; the
writer thread inserts what queues up within ``linger_s`` in one transaction, ignoring rows whose
id is already stored (a retried request). When the queue is full, ``submit``
waits up to ``submit_timeout_s`` and then raises :class:`StoreBusy` (the API
answers 503): a prediction is acknowledged only once its rows are queued.
:meth:`close` drains the queue before it returns, so nothing acknowledged is
lost on a graceful shutdown; a database that stays down is retried with back-off.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from peru_sentiment.store.models import Prediction

log = logging.getLogger(__name__)

_STOP = object()
MAX_BACKOFF_S = 5.0


class StoreBusy(RuntimeError):
    """The write queue stayed full: the database is slower than the traffic, or down."""


class PredictionWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        queue_size: int = 1024,
        batch_rows: int = 256,
        linger_s: float = 0.05,
        submit_timeout_s: float = 5.0,
        close_timeout_s: float = 25.0,
    ):
        self.engine, self.batch_rows, self.linger_s = engine, batch_rows, linger_s
        self.submit_timeout_s, self.close_timeout_s = submit_timeout_s, close_timeout_s
        insert = sqlite_insert if engine.dialect.name == "sqlite" else postgresql_insert
        self._statement = insert(Prediction).on_conflict_do_nothing(index_elements=["id"])
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._close_lock = threading.Lock()
        self.rows_written = 0
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: list[dict]) -> None:
        """Queue one request's rows; raises StoreBusy when the queue stays full or the writer is closed."""
        if self._closed:
            raise StoreBusy("the prediction store is closed (shutting down)")
        if rows:
            try:
                self._queue.put(rows, timeout=self.submit_timeout_s)
            except queue.Full:
                raise StoreBusy(f"the store's write queue stayed full for {self.submit_timeout_s:.0f} s") from None

    def flush(self) -> None:
        """Wait until every row queued so far is written (tests, the predict command)."""
        self._queue.join()

    def close(self) -> None:
        """Write everything queued, then stop the writer thread. Safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join(self.close_timeout_s)
        if self._thread.is_alive():
            log.error(
                "the store writer could not finish within %.0f s; about %d request(s) of predictions not written",
                self.close_timeout_s,
                self._queue.qsize(),
            )
        else:
            log.info("store writer closed; %d prediction row(s) written", self.rows_written)
        self.engine.dispose()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            taken = [self._queue.get()]
            # Wait up to linger_s for more rows: one transaction per batch instead of per request
            # (each commit costs far more CPU than the rows it writes).
            deadline = time.monotonic() + self.linger_s
            while taken[-1] is not _STOP and sum(len(item) for item in taken) < self.batch_rows:
                try:
                    taken.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0)))
                except queue.Empty:
                    break
            stopping = taken[-1] is _STOP
            while stopping:  # take whatever arrived before the stop too
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write([row for item in taken if item is not _STOP for row in item])
            for _ in taken:
                self._queue.task_done()

    def _write(self, rows: list[dict]) -> None:
        """Insert `rows` (ids already stored are skipped), retrying with back-off while the database is unreachable."""
        if not rows:
            return
        unique = list({row["id"]: row for row in rows}.values())
        backoff = 0.1
        while True:
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._statement, unique)
            except (OperationalError, InterfaceError) as error:  # the database is unreachable or locked: wait
                log.warning("writing %d prediction row(s) failed (%s); retrying in %.1f s", len(unique), error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            except SQLAlchemyError:  # rows the database refuses would be refused forever: say so, loudly
                log.exception("the store refused %d prediction row(s); they are not stored", len(unique))
                return
            self.rows_written += len(unique)
            return
