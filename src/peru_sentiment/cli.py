"""Command-line entry points; each DVC stage is one command over library functions."""

from __future__ import annotations

import logging
import os
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
            params, region_list, synthetic.load_phrasebook(phrasebook), load_yaml(vocabulary), progress=progress
        )
        _write_parquet(frame, out)
        incidents = synthetic.incident_events(params, region_list, frame)
        write_json(events, incidents)
        write_data_card(
            frame, card, "Synthetic feedback",
            [f"Generated with seed {params.seed}, {params.start} to {params.end}. "
             "Labels follow from the aspect polarities (sum > 0 positive, < 0 negative, else neutral)."],
        )  # fmt: skip
        record.update(rows_in=0, rows_out=len(frame), rejected=0, counts=feedback_counts(frame), incidents=incidents)


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
        splits, topics, summary = split_feedback(_read_parquet(feedback), params.split, params.near_duplicates)
        for name, frame in splits.items():
            _write_parquet(frame, out_dir / f"{name}.parquet")
        write_json(out_dir / "topics.json", {str(topic): words for topic, words in topics.items()})
        record.update(rejected=0, **summary)


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
