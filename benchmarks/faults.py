"""Faults against the production deployment (nginx in front of gunicorn), on loopback only.

Starts ``serve/nginx.conf`` in front of ``gunicorn -c serve/gunicorn.conf.py`` on the bundle given
(the same launcher as the tests) and, in one run, reports:

1. slow clients: the p99 latency and failures of normal clients while ``--slow-clients`` connections
   trickle a request body at 1 byte/s, through nginx and, for comparison, straight to gunicorn
   (goal through nginx: p99 <= 1 s, 0 failures);
2. worker killed: failed requests and the longest time without a successful reply when one gunicorn
   worker gets SIGKILL under ``--clients`` concurrent clients, and when its replacement is ready
   (goal: only the killed worker's in-flight requests fail, <= 5 s without service);
3. SIGTERM: requests lost when gunicorn is stopped under the same load (goal 0: every request gets
   a reply, or a clean JSON 503 with Retry-After from the proxy).

Every phase is bounded by ``--seconds``; each request has a 10 s timeout.

Usage (after `dvc repro export`, or with any export bundle):
    python benchmarks/faults.py [--bundle models/export] [--slow-clients 64] [--clients 8] [--seconds 12]
Writes reports/benchmarks/faults.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REQUEST_TIMEOUT_S = 10
TEXTS = [
    "el pedido llegó frío y tarde, qué roche",
    "todo chévere, llegó al toque",
    "the courier was very kind",
    "pedí lomo saltado y vino incompleto",
]


@dataclass
class Reply:
    started: float
    ended: float
    status: int | None  # None: no HTTP reply at all (reset, timeout)
    error_type: str | None = None  # the JSON error's type, when the body is one

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def clean_503(self) -> bool:
        return self.status == 503 and self.error_type is not None


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def post(url: str, text: str) -> Reply:
    """One POST /v1/predict on its own connection; the reply read to the end."""
    host, port = _address(url)
    body = json.dumps({"text": text}).encode()
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head.encode() + body)
            raw = await reader.read()
    except (OSError, TimeoutError):
        return Reply(started, time.monotonic(), None)
    finally:
        if writer is not None:
            writer.close()
    ended = time.monotonic()
    if not raw.startswith(b"HTTP/"):
        return Reply(started, ended, None)
    status = int(raw.split(b" ", 2)[1])
    try:
        error_type = json.loads(raw.split(b"\r\n\r\n", 1)[1]).get("error", {}).get("type")
    except (ValueError, AttributeError):
        error_type = None
    return Reply(started, ended, status, error_type)


async def load(url: str, clients: int, keep_going: Callable[[], bool], replies: list[Reply]) -> None:
    """``clients`` loops, one text after another, while ``keep_going()``; a client pauses 0.1 s after a failure."""

    async def client(offset: int) -> None:
        index = offset
        while keep_going():
            reply = await post(url, TEXTS[index % len(TEXTS)])
            replies.append(reply)
            index += 1
            if not reply.ok:
                await asyncio.sleep(0.1)

    await asyncio.gather(*(client(n) for n in range(clients)))


def _for(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() < deadline


async def slow_client(url: str, stop: asyncio.Event, open_now: list[int]) -> None:
    """Sends headers, then a 4 KiB body one byte a second; reconnects whenever the server hangs up."""
    host, port = _address(url)
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
    )
    while not stop.is_set():
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        open_now[0] += 1
        try:
            writer.write(head.encode())
            while not stop.is_set() and not writer.is_closing():
                await writer.drain()
                try:
                    await asyncio.wait_for(stop.wait(), 1)
                except TimeoutError:
                    writer.write(b" ")
        except OSError:
            pass
        finally:
            open_now[0] -= 1
            writer.close()


def _latency_summary(replies: list[Reply]) -> dict:
    latencies = np.array([reply.ended - reply.started for reply in replies if reply.ok]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (float("nan"), float("nan"))
    return {
        "requests": len(replies),
        "failed": sum(not reply.ok for reply in replies),
        "p50_ms": round(float(p50), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": round(float(latencies.max()), 1) if latencies.size else None,
    }


async def slow_clients_phase(url: str, slow_clients: int, clients: int, seconds: float) -> dict:
    stop, open_now, replies = asyncio.Event(), [0], []
    trickling = [asyncio.create_task(slow_client(url, stop, open_now)) for _ in range(slow_clients)]
    await asyncio.sleep(2)  # every slow connection open and holding what it can
    held = open_now[0]
    await load(url, clients, _for(seconds), replies)
    held = min(held, open_now[0])
    stop.set()
    await asyncio.gather(*trickling)
    return {"slow_connections_open": held, "normal_clients": clients, **_latency_summary(replies)}


def _longest_gap(replies: list[Reply], since: float, until: float) -> float:
    """The longest time in [since, until] with no successful reply."""
    ends = sorted(reply.ended for reply in replies if reply.ok and since <= reply.ended <= until)
    marks = [since, *ends, until]
    return round(max(later - earlier for earlier, later in itertools.pairwise(marks)), 2)


async def _watch_log(log_path: Path, after_line: int, pids: set[int], found: dict, stop: asyncio.Event) -> None:
    """Note when a worker not in ``pids`` logs that it is ready (serve/gunicorn.conf.py: post_worker_init)."""
    while not stop.is_set():
        for line in log_path.read_text(errors="replace").splitlines()[after_line:]:
            if "] worker " in line and line.endswith(" ready"):
                pid = int(line.rsplit(" ", 2)[1])
                if pid not in pids and "ready_at" not in found:
                    found["ready_at"], found["pid"] = time.monotonic(), pid
        await asyncio.sleep(0.1)


async def worker_kill_phase(deployment, log_path: Path, clients: int, seconds: float) -> dict:
    """Load runs ``seconds`` and at least until the replacement worker is ready (at most 90 s more)."""
    import psutil

    workers = psutil.Process(deployment.server.pid).children()
    replies: list[Reply] = []
    found: dict = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(
        _watch_log(log_path, len(log_path.read_text().splitlines()), {w.pid for w in workers}, found, stop)
    )
    minimum, cap = _for(seconds), _for(seconds + 90)
    running = asyncio.create_task(load(deployment.url, clients, lambda: cap() and (minimum() or not found), replies))
    await asyncio.sleep(min(3, seconds / 4))
    killed_at = time.monotonic()
    os.kill(workers[0].pid, signal.SIGKILL)
    await running
    stop.set()
    await watcher
    end = max(reply.ended for reply in replies)
    failed = [reply for reply in replies if not reply.ok]
    return {
        "workers": len(workers),
        "clients": clients,
        "requests": len(replies),
        "failed": len(failed),
        "failed_started_before_kill": sum(reply.started < killed_at for reply in failed),
        "failed_started_after_kill": sum(reply.started >= killed_at for reply in failed),
        "failure_statuses": sorted({str(reply.status) for reply in failed}),
        "longest_without_service_s": _longest_gap(replies, killed_at, end),
        "replacement_ready_after_s": round(found["ready_at"] - killed_at, 2) if found else None,
    }


async def sigterm_phase(deployment, clients: int, seconds: float) -> dict:
    """Load runs ``seconds`` and at least until 1 s after gunicorn has exited (at most 60 s more)."""
    replies: list[Reply] = []
    exited: dict = {}
    minimum, cap = _for(seconds), _for(seconds + 60)

    def keep_going() -> bool:
        if "at" not in exited and deployment.server.poll() is not None:
            exited["at"] = time.monotonic()
        return cap() and (minimum() or "at" not in exited or time.monotonic() < exited["at"] + 1)

    running = asyncio.create_task(load(deployment.url, clients, keep_going, replies))
    await asyncio.sleep(min(3, seconds / 4))
    signalled_at = time.monotonic()
    deployment.server.send_signal(signal.SIGTERM)
    await running
    after = [reply for reply in replies if reply.started >= signalled_at]
    lost = [reply for reply in replies if not reply.ok and not reply.clean_503]
    answered_503 = [reply for reply in replies if reply.clean_503]
    return {
        "clients": clients,
        "requests": len(replies),
        "ok": sum(reply.ok for reply in replies),
        "ok_after_signal": sum(reply.ok for reply in after),
        "clean_503": len(answered_503),
        "lost": len(lost),
        "lost_statuses": sorted({str(reply.status) for reply in lost}),
        "slowest_503_ms": round(max((r.ended - r.started for r in answered_503), default=0) * 1000, 1),
        "gunicorn_exit_after_s": round(exited["at"] - signalled_at, 2) if exited else None,
        "gunicorn_exit_code": deployment.server.poll(),
    }


def _row(cells: list) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def print_table(results: dict) -> None:
    slow, direct = results["slow_clients"]["through_nginx"], results["slow_clients"]["straight_to_gunicorn"]
    kill, term = results["worker_killed"], results["sigterm"]
    print("\n| fault | measure | result | goal |")
    print("|---|---|---|---|")
    for name, run in (("through nginx", slow), ("straight to gunicorn", direct)):
        print(_row([f"{run['slow_connections_open']} slow clients, {name}",
                    f"normal-client p99 (p50) of the answered; failed of {run['requests']}",
                    f"{run['p99_ms']:.0f} ms ({run['p50_ms']:.0f} ms), {run['failed']}",
                    "≤ 1000 ms, 0" if name == "through nginx" else "(comparison)"]))  # fmt: skip
    print(_row([f"SIGKILL of 1 of {kill['workers']} workers, {kill['clients']} clients",
                f"failed of {kill['requests']} (started before / after the kill)",
                f"{kill['failed']} ({kill['failed_started_before_kill']} / {kill['failed_started_after_kill']})",
                "≤ in flight in that worker, 0 after"]))  # fmt: skip
    print(_row(["", "longest without a successful reply; replacement ready after",
                f"{kill['longest_without_service_s']} s; {kill['replacement_ready_after_s']} s", "≤ 5 s"]))  # fmt: skip
    print(_row([f"SIGTERM of gunicorn, {term['clients']} clients",
                f"lost of {term['requests']} (ok, clean 503)",
                f"{term['lost']} ({term['ok']}, {term['clean_503']})", "0"]))  # fmt: skip
    print(_row(["", "gunicorn exited after; slowest 503",
                f"{term['gunicorn_exit_after_s']} s (code {term['gunicorn_exit_code']}); "
                f"{term['slowest_503_ms']:.0f} ms", ""]))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models/export", help="bundle or export root (LATEST)")
    parser.add_argument("--slow-clients", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8, help="concurrent normal clients")
    parser.add_argument("--seconds", type=float, default=12, help="length of each phase")
    parser.add_argument("--out", type=Path, default=ROOT / "reports/benchmarks/faults.json")
    args = parser.parse_args()

    from peru_sentiment.serving.launch import start_deployment

    run_dir = Path(tempfile.mkdtemp(prefix="faults-"))  # logs and nginx's files, for a look afterwards
    started = time.monotonic()
    deployment = start_deployment(args.bundle, run_dir)
    print(f"deployment ready in {time.monotonic() - started:.0f} s: nginx {deployment.url}, "
          f"gunicorn {deployment.server_url}; logs in {run_dir}", flush=True)  # fmt: skip
    results: dict = {"bundle": str(args.bundle.resolve()), "cores": os.cpu_count(), "seconds": args.seconds}
    try:
        results["slow_clients"] = {
            name: asyncio.run(slow_clients_phase(url, args.slow_clients, args.clients, args.seconds))
            for name, url in (("through_nginx", deployment.url), ("straight_to_gunicorn", deployment.server_url))
        }
        print("slow clients:", results["slow_clients"], flush=True)
        results["worker_killed"] = asyncio.run(
            worker_kill_phase(deployment, run_dir / "gunicorn.log", args.clients, args.seconds)
        )
        print("worker killed:", results["worker_killed"], flush=True)
        time.sleep(1)  # the replacement settles
        results["sigterm"] = asyncio.run(sigterm_phase(deployment, args.clients, args.seconds))
        print("SIGTERM:", results["sigterm"], flush=True)
    finally:
        deployment.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    main()
