"""Micro-batching: texts from concurrent requests share one model call.

Request threads put their texts on a queue and wait. A model thread takes
the first waiting request, lets others join for at most ``max_wait_s`` or until
``max_batch_size`` texts are collected, runs the model once on all of them and
hands each request its rows. On a CPU a batch of 16 texts costs far less than
16 single calls. With ``threads`` > 1, several model threads take batches from
the same queue, so each core can run its own batch (TensorFlow with one
intra-op thread per call) while the work stays balanced between them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new work."""


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[list[str]], np.ndarray],
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        threads: int = 1,
    ):
        self._predict, self.max_batch_size, self.max_wait_s = predict, max_batch_size, max_wait_s
        self._on_batch = on_batch
        self._queue: queue.Queue[tuple[list[str], Future] | None] = queue.Queue()
        self._closed = threading.Event()
        self._workers = [
            threading.Thread(target=self._run, name=f"micro-batcher-{index}", daemon=True) for index in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, texts: Sequence[str], timeout: float | None = None) -> np.ndarray:
        """Probabilities for `texts`, computed together with whatever else is waiting; blocks."""
        if self._closed.is_set():
            raise BatcherClosed("the server is shutting down")
        future: Future = Future()
        self._queue.put((list(texts), future))
        return future.result(timeout=timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued work, then stop the model threads."""
        self._closed.set()
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout)
        while True:  # anything that slipped in meanwhile gets a clear error
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[1].set_exception(BatcherClosed("the server is shutting down"))

    def _collect(self, first: tuple[list[str], Future]) -> tuple[list[tuple[list[str], Future]], bool]:
        jobs, size, stop = [first], len(first[0]), False
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if job is None:  # this thread's stop signal: finish this batch, then stop
                stop = True
                break
            jobs.append(job)
            size += len(job[0])
        return jobs, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._collect(first)
            texts = [text for job_texts, _ in jobs for text in job_texts]
            try:
                probabilities = self._predict(texts)
            except Exception as error:  # the requests get the error; the worker keeps serving
                log.error("model call failed on a batch of %d texts: %s", len(texts), type(error).__name__)
                for _, future in jobs:
                    future.set_exception(error)
                continue
            if self._on_batch is not None:
                self._on_batch(len(texts))
            start = 0
            for job_texts, future in jobs:
                future.set_result(probabilities[start : start + len(job_texts)])
                start += len(job_texts)
