"""A Prometheus server on loopback with the generated rules, for running without Docker and for tests.

It needs the ``prometheus`` binary (Debian: ``apt-get install prometheus``). The server writes
its configuration, rules, data and log under ``workdir``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml

from peru_sentiment.errors import PipelineError

RULES_FILE = "rules/sentiment.yml"


def prometheus_config(targets: list[str], scrape_interval: str, rule_files: list[str]) -> dict[str, Any]:
    """A Prometheus configuration that scrapes ``targets`` (host:port) and evaluates ``rule_files``."""
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": rule_files,
        "scrape_configs": [{"job_name": "peru-sentiment", "static_configs": [{"targets": targets}]}],
    }


class LocalPrometheus:
    """Runs ``prometheus`` as a child process; use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        rules: str,
        *,
        scrape_interval: str = "15s",
        port: int = 9090,
        binary: str = "prometheus",
    ) -> None:
        """``rules`` is the text of a rule file (``rules.render_rules``); Prometheus listens on 127.0.0.1:``port``."""
        self.workdir, self.targets, self.rules = Path(workdir), targets, rules
        self.scrape_interval, self.port, self.binary = scrape_interval, port, binary
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Write the configuration and rules, start Prometheus and wait until it is ready."""
        executable = shutil.which(self.binary)
        if executable is None:
            raise PipelineError(f"{self.binary} not found; install it (Debian: apt-get install prometheus)")
        (self.workdir / RULES_FILE).parent.mkdir(parents=True, exist_ok=True)
        (self.workdir / RULES_FILE).write_text(self.rules, encoding="utf-8")
        config = prometheus_config(self.targets, self.scrape_interval, [RULES_FILE])
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        log = (self.workdir / "prometheus.log").open("wb")
        command = [
            executable,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PipelineError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise PipelineError(f"prometheus not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of Prometheus's log."""
        path = self.workdir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait(self) -> int:
        """Block until Prometheus exits (Ctrl-C stops it); its exit status."""
        assert self.process is not None, "start() first"
        return self.process.wait()

    def _api(self, path: str, **params: str) -> Any:
        response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PipelineError(f"prometheus {path} {params}: {body.get('error', response.text)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (a scalar result becomes one sample without labels)."""
        data = self._api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with their labels."""
        return self._api("alerts")["alerts"]

    def __enter__(self) -> LocalPrometheus:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
