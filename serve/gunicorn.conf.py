"""Production server: ``gunicorn -c serve/gunicorn.conf.py`` from the repository root, behind
nginx (``serve/nginx.conf``), which holds slow clients so that these threads only see whole requests.

Why these numbers (measured with benchmarks/serve_throughput.py and benchmarks/faults.py on 2 cores).
Feedback texts are short, so a batch's matrices are small and splitting one
model call over two threads costs more in synchronisation than it gains. So
TensorFlow runs each call on one thread (``TF_NUM_INTRAOP_THREADS=1``), and
each worker runs as many calls at once as its share of the cores (the
micro-batcher's ``model_threads``, taking batches from one shared queue).
The fast OpenVINO model is the exception: one of its calls may use all the
cores (``SENTIMENT_MODEL_CALL_THREADS``: cores / share), so a lone request is
not held to one core while the others idle; under load the workers' threads
share the cores, measured without loss (below, where it is set).

Two workers at least, even on 2 cores: with one, a crashed worker (out of
memory, a native fault) means no service at all until its replacement has
loaded and warmed up the model (e5-small: 34 s measured by faults.py). With two, the
other keeps answering while the master starts a replacement, and only the
dead worker's in-flight requests fail. The price, measured with an e5-small
bundle, 16 clients, 1 and 2 workers in alternating 8 s runs (on a shared
machine, so compare the ratios): memory 1.9 -> 3.9 GB RSS (1.6 -> 3.1 GB PSS),
and ~20% fewer predictions per busy core (median 88 -> 71; 44 -> 36
predictions/s, p99 630 -> 1080 ms), as each worker batches only its own
clients' texts on its own core. (Those memory figures predate the fast model's fixed
shapes, ``configs/serve.yaml``: with them an e5-small worker holds 4.2 GB RSS, 3.7 GB PSS,
against 3.0 / 2.5 GB without.) Availability is worth that here; set
``SENTIMENT_WORKERS=1`` where throughput on 2 cores matters more than a crash
gap. Above 8 cores, one worker per 4 cores. ``preload_app`` (load once in the
master, then fork) is not used: TensorFlow is not fork-safe once its runtime
has started.

A worker accepts connections only after its model is warmed up
(``post_worker_init``), so a replacement never answers "warming up". The
threads of a worker only parse JSON, clean text and wait for the batcher,
so many of them (``SENTIMENT_THREADS``, default 32) keep the model threads
busy without costing CPU.

Reload (SIGHUP to the master, e.g. after ``peru-sentiment promote`` moved LATEST): new
workers load the model named in LATEST while the old ones keep answering; an old
worker starts its drain only once a new one is ready, so no request waits for a model.

Shutdown (SIGTERM): each worker reports not ready on ``/readyz`` at once and
keeps serving for ``SENTIMENT_DRAIN_S`` (default 2 s: time for a load
balancer's probe to take it out), then stops accepting and finishes its
in-flight requests (``graceful_timeout``). Requests nginx cannot deliver
after that get its clean JSON 503 with ``Retry-After``.

Environment: ``SENTIMENT_BIND`` (default 127.0.0.1:8000), ``SENTIMENT_WORKERS``,
``SENTIMENT_THREADS``, ``SENTIMENT_DRAIN_S``, plus the server settings (``SENTIMENT_STORE_URL``: the
scored-feedback store, migrated by the master at start and drained by each worker at exit) ``SENTIMENT_*``
(configs/serve.yaml). Prometheus metrics of all workers are aggregated through files
in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless set).
"""

import gc
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

cores = os.cpu_count() or 1
workers = int(os.environ.get("SENTIMENT_WORKERS", max(2, cores // 4)))
drain_seconds = float(os.environ.get("SENTIMENT_DRAIN_S", 2))
threads = int(os.environ.get("SENTIMENT_THREADS", 32))
worker_class = "gthread"
bind = os.environ.get("SENTIMENT_BIND", "127.0.0.1:8000")
wsgi_app = "peru_sentiment.serving.app:create_app()"

# One TensorFlow thread per model call, and as many calls at once as the worker's share of the cores
# (read when TensorFlow starts in the worker).
share = str(max(1, cores // workers))
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", share)
os.environ.setdefault("SENTIMENT_MODEL_THREADS", share)
# The fast (OpenVINO) model: each of those calls may use the other workers' cores too, so a lone
# request runs on all the cores (2 cores, 2 workers, alternating runs: 1 client p50 13.0-14.0 vs
# 15.5-16.2 ms; 16 clients 130-139 vs 135-136 predictions/s, the same within the runs' spread).
os.environ.setdefault("SENTIMENT_MODEL_CALL_THREADS", str(max(1, cores // int(share))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Set before prometheus_client is imported anywhere: it picks its value storage at import.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="peru-sentiment-metrics-"))
# Where workers say they are ready and the master says it reloads (SIGHUP): see begin_shutdown below.
reload_dir = Path(os.environ.setdefault("SENTIMENT_RELOAD_DIR", tempfile.mkdtemp(prefix="peru-sentiment-reload-")))
RELOAD_MARK = "reload"

from peru_sentiment.serving import metrics  # noqa: E402
from peru_sentiment.serving.settings import EXTENSION  # noqa: E402

child_exit = metrics.child_exit  # a dead worker's live gauges (in flight, model info) are dropped

timeout = 120  # loading and warming the model happens in the worker before it answers
graceful_timeout = 30  # drain + the slowest request (request_timeout_s: 20 s)
keepalive = 5
limit_request_line = 4096
limit_request_fields = 50
accesslog = "-"
# No query strings or bodies in the access log: feedback carries personal data.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = "info"


def on_starting(server):
    """Counters restart with the server; the store's database is migrated once, before the workers start."""
    metrics.reset_multiprocess_dir()
    from peru_sentiment.errors import ConfigError
    from peru_sentiment.serving.settings import load_settings
    from peru_sentiment.store.database import open_store

    try:
        store_url = load_settings().store_url
        if store_url is not None:
            open_store(store_url).dispose()
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None


def on_reload(server):
    """SIGHUP (e.g. after `peru-sentiment promote`): replaced workers keep serving until a new one is ready."""
    (reload_dir / RELOAD_MARK).write_text(str(time.time()))


def _marked_at(path: Path) -> float:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return 0.0


def _new_worker_ready(since: float) -> bool:
    return any(_marked_at(path) > since for path in reload_dir.glob("ready-*"))


def _service(worker):
    """The worker's PredictionService, or None under another app (the benchmark's naive server)."""
    state = getattr(getattr(worker, "wsgi", None), "extensions", {}).get(EXTENSION)
    return state.service if state is not None else None


def post_worker_init(worker):
    """Accept connections only once the model is warm; on SIGTERM, turn /readyz to 503 before stopping."""
    service = _service(worker)
    if service is None:  # another app under this configuration (benchmarks/serve_throughput.py's naive server)
        return
    started = time.time()
    while not service.ready:
        time.sleep(0.05)
    (reload_dir / f"ready-{worker.pid}").write_text(str(time.time()))
    worker.log.info("worker %s ready", worker.pid)
    stop = worker.handle_exit

    def stop_after_drain(signum, frame):
        reloaded_at = _marked_at(reload_dir / RELOAD_MARK)
        if reloaded_at > started:  # replaced by a reload: serve until a replacement has loaded its model
            deadline = time.monotonic() + timeout
            while not _new_worker_ready(reloaded_at) and time.monotonic() < deadline:
                time.sleep(0.1)
        time.sleep(drain_seconds)
        stop(signum, frame)

    def begin_shutdown(signum, frame):
        if not service.stopping:
            service.begin_shutdown()
            threading.Thread(target=stop_after_drain, args=(signum, frame), daemon=True).start()

    signal.signal(signal.SIGTERM, begin_shutdown)


def worker_exit(server, worker):
    """Finish the batches already queued and write the store's queue before the worker process ends."""
    service = _service(worker)
    if service is not None:
        service.close()
    (reload_dir / f"ready-{worker.pid}").unlink(missing_ok=True)
    if os.getpid() == worker.pid:  # (gunicorn also calls this hook in the master)
        # The interpreter's final garbage collection walks TensorFlow's object graphs for
        # ~5 s of CPU (tiny model) before the process can end; the OS frees the memory anyway.
        gc.freeze()
