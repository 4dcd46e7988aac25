"""Production server: ``gunicorn -c serve/gunicorn.conf.py`` from the repository root.

Why these numbers (measured with benchmarks/serve_throughput.py on 2 cores).
Feedback texts are short, so a batch's matrices are small and splitting one
model call over two threads costs more in synchronisation than it gains. So
TensorFlow runs each call on one thread (``TF_NUM_INTRAOP_THREADS=1``), and
each worker runs as many calls at once as it has cores (the micro-batcher's
``model_threads``, taking batches from one shared queue, so the cores stay
evenly loaded). One worker then uses the whole machine and holds the model
once (e5-small: about 0.5 GB); with 16 concurrent clients this answered ~85
predictions/s against ~57 for one model thread using both cores, and ~80 for
two single-threaded workers, whose clients were unevenly split between them.
Set ``SENTIMENT_WORKERS`` above 1 only on machines with many cores (the cores
are divided among the workers). The threads of a worker only parse JSON,
clean text and wait for the batcher, so many of them (``SENTIMENT_THREADS``,
default 32) keep the model threads busy without costing CPU.

Environment: ``SENTIMENT_BIND`` (default 127.0.0.1:8000), ``SENTIMENT_WORKERS``,
``SENTIMENT_THREADS``, plus the server settings ``SENTIMENT_*`` (configs/serve.yaml).
Prometheus metrics of all workers are aggregated through files in
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless set).
SIGTERM stops accepting connections and lets in-flight requests finish
(``graceful_timeout``) before the workers exit.
"""

import os
import tempfile

cores = os.cpu_count() or 1
workers = int(os.environ.get("SENTIMENT_WORKERS", 1))
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Set before prometheus_client is imported anywhere: it picks its value storage at import.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="peru-sentiment-metrics-"))

from peru_sentiment.serving import metrics  # noqa: E402

child_exit = metrics.child_exit  # a dead worker's live gauges (in flight, model info) are dropped

timeout = 120  # loading and warming the model happens in the worker before it answers
graceful_timeout = 30
keepalive = 5
limit_request_line = 4096
limit_request_fields = 50
accesslog = "-"
# No query strings or bodies in the access log: feedback carries personal data.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = "info"


def on_starting(server):
    """Counters restart with the server."""
    metrics.reset_multiprocess_dir()


def worker_exit(server, worker):
    """Finish the batches already queued before the worker process ends."""
    service = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("peru_sentiment")
    if service is not None:
        service.close()
