"""The tools beside the pipeline: predict (file, Beam), promote, profile, store, review, monitoring, replay."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

import typer

from peru_sentiment import paths
from peru_sentiment.cli.app import ParamsOption, ProgressOption, app
from peru_sentiment.config import load_params
from peru_sentiment.errors import PipelineError


@app.command()
def transfer(
    real_dir: Path = typer.Option(..., "--real-dir", help="Folder of real sets: one CSV (text,label columns) per set."),
    params_file: Path = ParamsOption,
    data_dir: Path = typer.Option(paths.PROCESSED, help="Folder with the synthetic train/validation splits."),
    best: Path = typer.Option(paths.BEST_HPARAMS, help="Best hyperparameters, if tuned."),
    out_dir: Path = typer.Option(paths.TRANSFER, help="Folder for transfer.json and transfer.md."),
    labelled_rows: list[int] = typer.Option([0, 100, 300, 1000], "--labelled-rows", help="N labelled real rows."),
    learner: list[str] = typer.Option(["bert", "tfidf"], "--learner", help="bert (params: model, train) or tfidf."),
    max_test_rows: int = typer.Option(1500, min=10, help="Cap on each set's test portion (stratified)."),
    seed: int = typer.Option(0, help="Seed of the real sets' splits and samples."),
    trained: Path | None = typer.Option(
        None, help="Start BERT from this trained model (e.g. models/trained) instead of fitting it again."
    ),
) -> None:
    """Transfer experiment: synthetic-trained models on real sets; prior adjustment, unlabelled, labelled rows."""
    from peru_sentiment.evaluation.transfer import TransferProtocol, run_transfer_experiment

    protocol = TransferProtocol(max_test_rows=max_test_rows, seed=seed, labelled_rows=labelled_rows)
    run_transfer_experiment(load_params(params_file), real_dir, data_dir, best, out_dir, learner, protocol, trained)
    typer.echo(f"wrote {out_dir / 'transfer.json'} and {out_dir / 'transfer.md'}")


RUNTIME_HELP = (
    "auto: the bundle's fast model (OpenVINO) when it has one, else the TensorFlow SavedModel; "
    "tensorflow: always the SavedModel; fast: the fast model or an error."
)


StoreUrlOption = typer.Option(
    None,
    "--store-url",
    envvar="SENTIMENT_STORE_URL",
    help="The store's database URL (sqlite:///path or postgresql://...); default: store_url in configs/serve.yaml.",
)


def _store_settings(store_url: str | None):
    """The server settings (configs/serve.yaml, SENTIMENT_*), with `store_url` when given."""
    from peru_sentiment.serving.settings import load_settings

    return load_settings(**({"store_url": store_url} if store_url is not None else {}))


def _store_target(store_url: str | None) -> tuple[str | None, bool]:
    """The store's URL (None: no store) and whether it keeps texts, from the option or the server settings."""
    from peru_sentiment.serving.settings import config_file
    from peru_sentiment.store.database import parse_store_url

    if not config_file().is_file() and store_url is not None:
        parse_store_url(store_url)
        return store_url, True
    settings = _store_settings(store_url)
    return settings.store_url, settings.store_text


ESCAPE_FORMULAS_HELP = (
    "In a CSV output, prefix cells starting with = + - @ tab or CR with ' so that spreadsheets show them as text "
    "instead of running them as formulas."
)


ModelOption = typer.Option(paths.EXPORT, help="Export bundle, or the export root (latest bundle).")
InputOption = typer.Option(..., "--input", help="CSV, JSON Lines or Parquet file.")
TextColumnOption = typer.Option("text", help="Column with the feedback text.")
OutputOption = typer.Option(..., help="Output file (CSV, JSON Lines or Parquet): the input rows plus predictions.")
BatchSizeOption = typer.Option(64, min=1, help="Texts per model call.")
EncodingOption = typer.Option("utf-8", help="Encoding of a CSV or JSON Lines input (e.g. latin-1, cp1252).")
EscapeFormulasOption = typer.Option(True, help=ESCAPE_FORMULAS_HELP)
RuntimeOption = typer.Option("auto", help=RUNTIME_HELP)


@app.command()
def predict(
    model: Path = ModelOption,
    input_file: Path = InputOption,
    text_column: str = TextColumnOption,
    output: Path = OutputOption,
    chunk_rows: int = typer.Option(2048, min=1, help="Rows read, predicted and written at a time."),
    batch_size: int = BatchSizeOption,
    encoding: str = EncodingOption,
    escape_formulas: bool = EscapeFormulasOption,
    runtime: str = RuntimeOption,
    store: bool = typer.Option(True, "--store/--no-store", help="Also keep the predictions in the store."),
    store_url: str | None = StoreUrlOption,
    request_id: str | None = typer.Option(
        None, help="Store rows as <request-id>:<row>; rerunning with the same id stores nothing twice."
    ),
    progress: bool = ProgressOption,
) -> None:
    """Predict the sentiment of every row of a file; rows without text are kept and marked in `error`.

    The output replaces --output only when every row is done; a failed run leaves it as it was.
    """
    import json

    from peru_sentiment.export.bundle import load_bundle
    from peru_sentiment.serving.predict_file import predict_file
    from peru_sentiment.store.database import open_store
    from peru_sentiment.store.writer import PredictionWriter

    bundle = load_bundle(model, batch_size=batch_size, runtime=runtime)
    url, store_text = _store_target(store_url) if store else (None, True)
    writer = PredictionWriter(open_store(url)) if url else None
    try:
        summary = predict_file(
            bundle,
            input_file,
            output,
            text_column,
            chunk_rows,
            progress,
            encoding=encoding,
            escape_formulas=escape_formulas,
            store=writer,
            store_text=store_text,
            request_id=request_id,
        )
    finally:
        if writer is not None:
            writer.close()
    typer.echo(json.dumps(summary, ensure_ascii=False))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def predict_beam(
    context: typer.Context,
    model: Path = ModelOption,
    input_file: Path = InputOption,
    text_column: str = TextColumnOption,
    output: Path = OutputOption,
    chunk_rows: int = typer.Option(2048, min=1, help="Rows per chunk (the unit of work spread over workers)."),
    batch_size: int = BatchSizeOption,
    encoding: str = EncodingOption,
    escape_formulas: bool = EscapeFormulasOption,
    runtime: str = RuntimeOption,
    model_threads: int = typer.Option(None, min=1, help="Fast-model threads per worker (default: all cores)."),
) -> None:
    """`predict` on Apache Beam; arguments after the options go to Beam (e.g. --runner, --direct_num_workers).

    Locally: --direct_running_mode multi_processing --direct_num_workers 2. See the README for Dataflow, Flink, Spark.
    """
    import json

    from peru_sentiment.serving.predict_beam import predict_with_beam

    summary = predict_with_beam(
        model,
        input_file,
        output,
        text_column,
        pipeline_args=context.args,
        chunk_rows=chunk_rows,
        batch_size=batch_size,
        runtime=runtime,
        model_threads=model_threads,
        encoding=encoding,
        escape_formulas=escape_formulas,
    )
    typer.echo(json.dumps(summary, ensure_ascii=False))


@app.command()
def promote(
    challenger: Path = typer.Option(paths.EXPORT, help="The new bundle, or an export root (its LATEST)."),
    serving: Path = typer.Option(paths.SERVING, help="Serving root: promoted bundles, LATEST, promotions.jsonl."),
    frozen_set: Path = typer.Option(
        paths.split_file("external"), "--frozen-set", help="Labelled real rows (text, label) both models predict."
    ),
    force: bool = typer.Option(False, help="Promote even when not proven better (needs --reason)."),
    reason: str | None = typer.Option(None, help="Why a forced promotion is right; recorded with the decision."),
    samples: int = typer.Option(1000, min=100, help="Bootstrap resamples of the frozen set."),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999, help="Confidence of the interval."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Serve the challenger only when its macro-F1 beats the champion's beyond a bootstrap interval.

    Then reload the server: `kill -HUP <gunicorn master pid>` (new workers load the new LATEST).
    """
    import json

    from peru_sentiment.export.promote import promote as run_promotion

    decision = run_promotion(
        challenger,
        serving,
        frozen_set,
        force=force,
        reason=reason,
        samples=samples,
        confidence=confidence,
        seed=seed,
    )
    typer.echo(json.dumps(decision, ensure_ascii=False))
    if not decision["promoted"]:
        raise SystemExit(1)


@app.command()
def profile(
    name: str = typer.Argument(..., help="smoke, cpu (the default) or gpu: a file in configs/profiles/."),
    params_file: Path = ParamsOption,
) -> None:
    """Switch parameters to a profile; `dvc repro` then reruns what changed."""
    from peru_sentiment.profiles import apply_profile

    changed = apply_profile(name, params_file)
    typer.echo(f"profile {name}: {len(changed)} value(s) changed" + (f" ({', '.join(changed)})" if changed else ""))


store_app = typer.Typer(help="The scored-feedback store: migrations and retention.", no_args_is_help=True)


app.add_typer(store_app, name="store")


def _configured_store_url(store_url: str | None) -> str:
    url = _store_settings(store_url).store_url
    if url is None:
        raise PipelineError("no store is configured; set store_url in configs/serve.yaml or pass --store-url")
    return url


@store_app.command("upgrade")
def store_upgrade(store_url: str | None = StoreUrlOption) -> None:
    """Create the store's tables or migrate them to this version (the server also does this at start)."""
    from peru_sentiment.store.database import create_store_engine, upgrade

    engine = create_store_engine(_configured_store_url(store_url))
    typer.echo(f"store {engine.url.render_as_string()} at migration {upgrade(engine)}")


@store_app.command("cleanup")
def store_cleanup(
    store_url: str | None = StoreUrlOption,
    retention_days: int | None = typer.Option(
        None, min=1, help="Delete predictions received longer ago; default: store_retention_days of the server."
    ),
) -> None:
    """Delete the predictions older than the retention period."""
    from peru_sentiment.store.database import open_store
    from peru_sentiment.store.retention import delete_older_than

    settings = _store_settings(store_url)
    days = retention_days or settings.store_retention_days
    deleted = delete_older_than(open_store(_configured_store_url(store_url), migrate=False), days)
    typer.echo(f"deleted {deleted} prediction(s) received more than {days} day(s) ago")


review_app = typer.Typer(
    help="The review loop: queue unsure predictions and suspected label errors, export people's labels.",
    no_args_is_help=True,
)


app.add_typer(review_app, name="review")


@review_app.command("queue")
def review_queue(
    store_url: str | None = StoreUrlOption,
    day: datetime | None = typer.Option(None, formats=["%Y-%m-%d"], help="Day (UTC) to choose from; default today."),
    budget: int = typer.Option(100, min=1, help="Least sure predictions to queue for that day, shared by region."),
    stars_budget: int = typer.Option(50, min=0, help="Predictions contradicting their stars to queue, by region."),
    params_file: Path = ParamsOption,
) -> None:
    """Queue the day's least sure predictions (smallest top-two margin) and those that contradict
    their stars (thresholds: ingest.stars in params.yaml) for review on /review."""
    from peru_sentiment.store.database import open_store
    from peru_sentiment.store.records import utc_now
    from peru_sentiment.store.review import queue_low_margin, queue_star_disagreements

    stars = load_params(params_file).ingest.stars
    chosen_day = (day or utc_now()).date()
    engine = open_store(_configured_store_url(store_url))
    unsure = queue_low_margin(engine, chosen_day, budget)
    contradicting = queue_star_disagreements(engine, chosen_day, stars_budget, stars.negative_max, stars.positive_min)
    typer.echo(f"queued {unsure} unsure and {contradicting} star-contradicting prediction(s) of {chosen_day}")


@review_app.command("label-issues")
def review_label_issues(
    store_url: str | None = StoreUrlOption,
    data_dir: Path = typer.Option(paths.PROCESSED, help="Folder of the split stage's files."),
    split: list[str] = typer.Option(
        ["train", "validation", "test", "external"], "--split", help="Split files to read (repeatable)."
    ),
    source: list[str] = typer.Option([], "--source", help="Only rows of these ingest sources (repeatable)."),
    folds: int = typer.Option(5, min=2, help="Folds of the out-of-fold probabilities."),
    seed: int = typer.Option(0, help="Seed of the folds and the TF-IDF model."),
    budget: int = typer.Option(100, min=1, help="Suspects to queue at most, the least self-confident first."),
) -> None:
    """Queue imported rows whose label looks wrong (cleanlab on out-of-fold TF-IDF probabilities) for review,
    with the given and the suggested label; a rerun queues no row twice."""
    from peru_sentiment.store.database import open_store
    from peru_sentiment.store.label_issues import imported_rows, queue_label_issues, suspected_label_errors

    url = _configured_store_url(store_url)
    if not _store_settings(store_url).store_text:
        raise PipelineError("the store keeps no texts (store_text is off), so imported rows cannot be reviewed there")
    rows = imported_rows(data_dir, split, source)
    suspects = suspected_label_errors(rows, folds, seed)
    queued = queue_label_issues(open_store(url), suspects, budget)
    typer.echo(
        f"{len(suspects)} of {len(rows)} imported label(s) look wrong; queued {queued} new one(s) for review "
        f"(reason label_issue, at most {budget})"
    )


@review_app.command("export")
def review_export(
    out: Path = typer.Option(..., help="CSV file to write (e.g. data/external/reviewed.csv)."),
    role: str = typer.Option("train", help="train (joins the training data) or external (held-out evaluation)."),
    name: str = typer.Option("reviewed", help="Source name for params.yaml ingest.sources."),
    store_url: str | None = StoreUrlOption,
) -> None:
    """Write the reviewed labels as a file `ingest` reads, and print its ingest.sources entry for params.yaml."""
    import yaml

    from peru_sentiment.store.database import open_store
    from peru_sentiment.store.review import export_reviews, ingest_source

    if role not in ("train", "external"):
        raise PipelineError(f"--role must be train or external, not {role!r}")
    rows = export_reviews(open_store(_configured_store_url(store_url), migrate=False), out)
    typer.echo(f"wrote {rows} reviewed label(s) to {out}; add this to ingest.sources in params.yaml:")
    typer.echo(yaml.safe_dump([ingest_source(name, out, role)], sort_keys=False, allow_unicode=True))


monitoring_app = typer.Typer(help="Dashboards and alert rules as code, and a local Prometheus.", no_args_is_help=True)


app.add_typer(monitoring_app, name="monitoring")


MonitoringConfigOption = typer.Option(paths.MONITORING_CONFIG, "--config", help="Monitoring config.")


@monitoring_app.command("render")
def monitoring_render(
    config_file: Path = MonitoringConfigOption,
    windows: str = typer.Option("production", help="Window set of the rules (configs/monitoring.yaml: windows)."),
    root: Path = typer.Option(Path("."), help="Folder to write grafana/dashboards and monitoring/rules under."),
) -> None:
    """Write grafana/dashboards/*.json and monitoring/rules/sentiment.yml from the monitoring config."""
    from peru_sentiment.monitoring.config import load_monitoring_config
    from peru_sentiment.monitoring.render import render_files, write_files

    config = load_monitoring_config(config_file)
    for path in write_files(render_files(config, config.window_set(windows)), root):
        typer.echo(f"wrote {path}")


@monitoring_app.command("prometheus")
def monitoring_prometheus(
    target: list[str] = typer.Option(["127.0.0.1:8000"], help="host:port of the service to scrape (repeatable)."),
    config_file: Path = MonitoringConfigOption,
    windows: str = typer.Option("replay", help="Window set of the rules: replay suits a compressed replay."),
    port: int = typer.Option(9090, help="Port Prometheus listens on (127.0.0.1)."),
    scrape_interval: str = typer.Option("5s", help="Scrape and rule evaluation interval."),
    workdir: Path = typer.Option(paths.LOCAL_PROMETHEUS, help="Configuration, rules and data of this Prometheus."),
) -> None:
    """Run Prometheus (the Debian binary) on loopback with the rules, scraping the service, until Ctrl-C."""
    from peru_sentiment.monitoring.config import load_monitoring_config
    from peru_sentiment.monitoring.local_prometheus import LocalPrometheus
    from peru_sentiment.monitoring.rules import render_rules

    config = load_monitoring_config(config_file)
    rules = render_rules(config, config.window_set(windows))
    server = LocalPrometheus(workdir, target, rules, scrape_interval=scrape_interval, port=port)
    with server:
        typer.echo(f"Prometheus on {server.url} scraping {', '.join(target)}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            server.wait()


@app.command()
def replay(
    url: str = typer.Option("http://127.0.0.1:8000", help="Base URL of the sentiment service."),
    input_file: Path = typer.Option(paths.SYNTHETIC, "--input", help="CSV, JSONL or Parquet."),
    rate: float = typer.Option(50.0, help="At most this many texts per second."),
    speedup: float | None = typer.Option(None, help="Compress real time by this factor (e.g. 8640: a day in 10 s)."),
    duration: float | None = typer.Option(None, help="Or fit the whole period in this many seconds."),
    start: datetime | None = typer.Option(None, help="Replay from this timestamp (inclusive)."),
    end: datetime | None = typer.Option(None, help="Replay up to this timestamp (exclusive)."),
    region: list[str] = typer.Option([], help="Only these region codes (repeatable)."),
    batch_size: int = typer.Option(32, help="At most this many texts per request."),
    api_key: str | None = typer.Option(None, envvar="SENTIMENT_API_KEY", help="API key, if the service wants one."),
    progress: bool = ProgressOption,
) -> None:
    """Stream feedback to POST {url}/v1/predict in time order, compressed, so dashboards and alerts come alive."""
    from peru_sentiment.monitoring import replay as player

    frame = player.select(player.read_feedback(input_file), start, end, region)
    if frame.empty:
        raise PipelineError(f"no rows of {input_file} match the filters")
    plan = player.plan(frame, rate=rate, speedup=speedup, duration=duration)
    typer.echo(f"replaying {len(plan.items)} texts over {plan.due[-1]:.0f} s to {url}")
    headers = {"X-API-Key": api_key} if api_key else None
    report = player.replay(url, plan, batch_size=batch_size, headers=headers, progress=progress)
    typer.echo(report.summary())
    if report.failed:
        raise SystemExit(1)
