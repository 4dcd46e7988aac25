# The sentiment service: Flask under gunicorn, metrics in Prometheus multiprocess mode.
# Build from the repository root: docker build -t peru-sentiment .
# The model bundle is not in the image: mount an export bundle (or the export root) at /models.
# Run it behind nginx (serve/nginx.conf), as docker-compose.yml does: gunicorn alone is open to slow clients.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Every version pinned, as in the virtualenv of `make setup`.
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml README.md LICENSE ./
COPY src src
RUN pip install --constraint requirements/constraints.txt . \
    && useradd --create-home --uid 10001 sentiment \
    && mkdir -p /models /var/run/prometheus-multiproc \
    && chown sentiment /var/run/prometheus-multiproc
COPY configs configs
COPY serve serve

USER sentiment
# Workers write their metrics to files here; /metrics adds them up (serving/metrics.py).
ENV PROMETHEUS_MULTIPROC_DIR=/var/run/prometheus-multiproc \
    SENTIMENT_MODEL_DIR=/models \
    SENTIMENT_BIND=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["gunicorn", "--config", "serve/gunicorn.conf.py", "peru_sentiment.serving.app:create_app()"]
