"""Start the production deployment as child processes on loopback (tests, benchmarks, local trials).

:func:`start_server` runs gunicorn with ``serve/gunicorn.conf.py``; :func:`start_deployment` puts
nginx with ``serve/nginx.conf`` in front of it, as in ``docker-compose.yml``: the same template,
rendered for loopback ports and a temporary runtime directory, run as the current user.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peru_sentiment.errors import PipelineError

ROOT = Path(__file__).resolve().parents[3]
GUNICORN_CONFIG = ROOT / "serve/gunicorn.conf.py"
NGINX_TEMPLATE = ROOT / "serve/nginx.conf"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(process: subprocess.Popen, url: str, log_path: Path, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PipelineError(f"{what} exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise PipelineError(f"{what} was not ready after {timeout_s:.0f} s; see {log_path}")


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
    _wait_until_ready(process, url, log_path, ready_timeout_s, "the server")
    return process, url


def nginx_binary() -> str | None:
    """The nginx executable (Debian puts it in /usr/sbin, often not on a user's PATH), or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render_nginx_config(template: str, **values: str) -> str:
    """Fill the ``${NAME}`` placeholders of ``serve/nginx.conf``; every one must be given, and only those."""
    names = set(PLACEHOLDER.findall(template))
    if names != set(values):
        raise PipelineError(f"serve/nginx.conf needs the values {sorted(names)}, got {sorted(values)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def start_proxy(
    upstream: str, runtime_dir: Path, log_path: Path, ready_timeout_s: float = 20
) -> tuple[subprocess.Popen, str]:
    """nginx with ``serve/nginx.conf`` on a free loopback port in front of ``upstream`` (host:port).

    Runs as the current user in the foreground, with its pid file and buffers under ``runtime_dir``;
    returns (process, base URL) once ``/readyz`` answers 200 through it.
    """
    nginx = nginx_binary()
    if nginx is None:
        raise PipelineError("nginx is not installed: `apt-get install nginx` (or `make system-deps`)")
    runtime_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = runtime_dir / "nginx.conf"
    config.write_text(
        render_nginx_config(
            NGINX_TEMPLATE.read_text(), LISTEN=f"127.0.0.1:{port}", UPSTREAM=upstream, RUNTIME_DIR=str(runtime_dir)
        )
    )
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [nginx, "-p", str(runtime_dir), "-c", str(config), "-e", "stderr", "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_until_ready(process, url, log_path, ready_timeout_s, "nginx")
    return process, url


@dataclass
class Deployment:
    """nginx (``url``, what clients use) in front of gunicorn (``server_url``)."""

    server: subprocess.Popen
    proxy: subprocess.Popen
    url: str
    server_url: str

    def stop(self, timeout_s: float = 60) -> None:
        """Graceful stop: gunicorn first (finishing its requests), then nginx."""
        for process, stop_signal in ((self.server, signal.SIGTERM), (self.proxy, signal.SIGQUIT)):
            if process.poll() is None:
                process.send_signal(stop_signal)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_deployment(bundle_dir: Path, run_dir: Path, **environment: str) -> Deployment:
    """gunicorn on ``bundle_dir`` behind nginx, both on loopback; logs and nginx's files under ``run_dir``.

    ``environment`` goes to gunicorn (see :func:`start_server`).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    server, server_url = start_server(bundle_dir, run_dir / "gunicorn.log", **environment)
    try:
        proxy, url = start_proxy(server_url.removeprefix("http://"), run_dir / "nginx", run_dir / "nginx.log")
    except BaseException:
        server.terminate()
        server.wait(timeout=60)
        raise
    return Deployment(server, proxy, url, server_url)
