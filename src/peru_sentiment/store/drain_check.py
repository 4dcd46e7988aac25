"""Does a graceful shutdown lose stored predictions? Load a server, SIGTERM it, compare the store with the 200s.

``clients`` threads send one-text requests with unique ``X-Request-ID`` s until
the server stops answering; :func:`sigterm_under_load` signals it after
``terminate_after_s`` and returns the ids of the predictions that got a 200.
Every one of them must be in the store (:func:`stored_ids`) once the server has
exited. Used by tests/test_store.py and benchmarks/store_throughput.py.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence

import requests
import sqlalchemy as sa

from peru_sentiment.store.database import create_store_engine


def sigterm_under_load(
    process: subprocess.Popen,
    url: str,
    texts: Sequence[str],
    *,
    clients: int = 16,
    terminate_after_s: float = 1.0,
    exit_timeout_s: float = 60.0,
) -> tuple[set[str], int]:
    """The prediction ids acknowledged with 200 while the server was being stopped, and the server's exit code."""
    acknowledged: set[str] = set()
    lock = threading.Lock()

    def client(number: int) -> None:
        session = requests.Session()
        sent = 0
        while True:
            request_id = f"drain-{number}-{sent}-{uuid.uuid4().hex[:6]}"
            body = {"text": texts[(number + sent) % len(texts)]}
            sent += 1
            try:
                response = session.post(
                    f"{url}/v1/predict", json=body, headers={"X-Request-ID": request_id}, timeout=30
                )
            except requests.RequestException:  # the server has closed its socket
                return
            if response.status_code == 200:
                with lock:
                    acknowledged.add(f"{request_id}:0")

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(terminate_after_s)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=exit_timeout_s)
    for thread in threads:
        thread.join(exit_timeout_s)
    return acknowledged, code


def stored_ids(store_url: str) -> set[str]:
    engine = create_store_engine(store_url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(sa.text("SELECT id FROM predictions")).scalars())
    finally:
        engine.dispose()
