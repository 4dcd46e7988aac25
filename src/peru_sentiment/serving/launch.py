"""Start the production server as a child process on loopback (tests, benchmarks, local trials)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from peru_sentiment.errors import PipelineError

ROOT = Path(__file__).resolve().parents[3]
GUNICORN_CONFIG = ROOT / "serve/gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    bundle_dir: Path, log_path: Path, extra_args: Sequence[str] = (), ready_timeout_s: float = 90, **environment: str
) -> tuple[subprocess.Popen, str]:
    """gunicorn with ``serve/gunicorn.conf.py`` on a free loopback port; returns (process, base URL) once ready.

    ``environment`` adds variables (e.g. ``SENTIMENT_MAX_WAIT_MS="10"``); ``extra_args`` go to gunicorn.
    """
    port = free_port()
    env = {
        **os.environ,
        "SENTIMENT_MODEL_DIR": str(bundle_dir),
        "SENTIMENT_BIND": f"127.0.0.1:{port}",
        **environment,
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(gunicorn), "-c", str(GUNICORN_CONFIG), *extra_args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PipelineError(f"the server exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise PipelineError(f"the server was not ready after {ready_timeout_s:.0f} s; see {log_path}")
