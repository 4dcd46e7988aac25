"""Suspected label errors in imported rows (cleanlab on out-of-fold TF-IDF probabilities) join the review queue."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from peru_sentiment.cli.main import app as cli
from peru_sentiment.errors import DataError
from peru_sentiment.schema import SYNTHETIC_SOURCE
from peru_sentiment.store.database import open_store
from peru_sentiment.store.label_issues import imported_rows, suspected_label_errors
from peru_sentiment.store.review import pending_reviews, record_review, reviewed_labels

# Hand-made phrases, one vocabulary per label, combined into distinct short texts.
WORDS = {
    "negative": (["pésimo", "horrible", "malísimo", "terrible", "fatal"], ["llegó frío", "demoró horas", "vino roto"]),
    "neutral": (["consulta", "pregunta", "duda", "aviso", "dato"], ["sobre el horario", "del número de pedido"]),
    "positive": (["excelente", "buenazo", "riquísimo", "genial", "bacán"], ["llegó rapidito", "todo caliente"]),
}
# (true label, row number within that label) -> the wrong label the row is imported with
FLIPS = {
    ("negative", 1): "positive",
    ("positive", 2): "negative",
    ("negative", 7): "neutral",
    ("neutral", 4): "positive",
}


def _imported(source: str = "encuesta") -> pd.DataFrame:
    rows = []
    for label, (openers, endings) in WORDS.items():
        for number, (opener, ending) in enumerate(itertools.product(openers, endings)):
            text = f"{opener}, {ending}"
            rows.append(
                {
                    "feedback_id": f"{source}-{label}-{number:03d}",
                    "text": text,
                    "text_classical": text.replace(",", ""),
                    "label": FLIPS.get((label, number), label),
                    "true_label": label,
                    "source": source,
                    "region": "PE-LIM" if number % 2 else "PE-PIU",
                    "channel": "survey",
                    "language": "es",
                    "timestamp": pd.Timestamp("2026-05-01 12:00") + pd.Timedelta(hours=number),
                }
            )
    return pd.DataFrame(rows)


def _write_splits(folder, imported: pd.DataFrame) -> None:
    """Imported rows in train and external, beside synthetic rows whose labels are deliberately wrong."""
    synthetic = _imported(SYNTHETIC_SOURCE).assign(label="neutral", source=SYNTHETIC_SOURCE)
    folder.mkdir(parents=True, exist_ok=True)
    external = imported.iloc[::4]
    train = pd.concat([imported.drop(external.index), synthetic], ignore_index=True)
    train.drop(columns="true_label").to_parquet(folder / "train.parquet")
    external.drop(columns="true_label").to_parquet(folder / "external.parquet")


def _label_issues(data_dir, store_url, *options: str):
    return CliRunner().invoke(
        cli, ["review", "label-issues", "--data-dir", str(data_dir), "--store-url", store_url, "--folds", "3", *options]
    )


def test_flipped_imported_labels_are_queued_once_with_the_given_and_the_suggested_label(tmp_path):
    imported = _imported()
    _write_splits(tmp_path / "processed", imported)
    store_url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    flipped = {f"import:{row.feedback_id}" for row in imported.itertuples() if row.label != row.true_label}

    first = _label_issues(tmp_path / "processed", store_url, "--budget", "2")
    assert first.exit_code == 0, first.output
    assert "queued 2 new one(s)" in first.output
    rest = _label_issues(tmp_path / "processed", store_url)
    assert rest.exit_code == 0, rest.output
    again = _label_issues(tmp_path / "processed", store_url)
    assert "queued 0 new one(s)" in again.output, "a rerun queues nothing twice"

    engine = open_store(store_url)
    items = pending_reviews(engine, limit=50)
    queued = {item["id"] for item in items}
    assert len(queued) == len(items)
    assert len(queued & flipped) >= 3, f"most flipped rows are suspected: {sorted(queued)}"
    assert len(queued - flipped) <= 1, f"few correct rows are suspected: {sorted(queued - flipped)}"
    truth = dict(zip("import:" + imported["feedback_id"], imported["true_label"], strict=True))
    given = dict(zip("import:" + imported["feedback_id"], imported["label"], strict=True))
    for item in items:
        assert item["reason"] == "label_issue"
        assert item["given_label"] == given[item["id"]]
        if item["id"] in flipped:
            assert item["label"] == truth[item["id"]], "the suggestion is the out-of-fold model's label"
    with engine.connect() as connection:
        sources = connection.execute(sa.text("SELECT DISTINCT source FROM predictions")).scalars().all()
    assert sources == ["import"], "synthetic rows are never suspected"

    corrected = sorted(queued & flipped)[0]
    record_review(engine, corrected, truth[corrected])
    exported = reviewed_labels(engine)
    assert exported[["source_id", "label"]].values.tolist() == [[corrected, truth[corrected]]]
    assert exported["text"].iloc[0] == imported.set_index("feedback_id").loc[corrected[len("import:") :], "text"]


def test_the_most_suspect_rows_come_first():
    suspects = suspected_label_errors(_imported(), folds=3)
    assert suspects["self_confidence"].is_monotonic_increasing
    assert (suspects["label"] != suspects["suggested_label"]).all()


def test_no_imported_rows_says_to_declare_sources(tmp_path):
    _write_splits(tmp_path / "processed", _imported().iloc[:0])
    result = _label_issues(tmp_path / "processed", f"sqlite:///{tmp_path / 's.sqlite'}")
    assert isinstance(result.exception, DataError)
    assert "ingest.sources" in str(result.exception)
    with pytest.raises(DataError, match="run `dvc repro split`"):
        imported_rows(tmp_path / "elsewhere")


def test_too_few_rows_for_the_folds_is_a_clear_error():
    imported = _imported()
    with pytest.raises(DataError, match="fewer than the 500 folds"):
        suspected_label_errors(imported, folds=500)
    scarce = pd.concat([imported[imported["label"] == "negative"], imported[imported["label"] == "neutral"].head(2)])
    with pytest.raises(DataError, match=r"too few imported rows of a label for 3 folds \(neutral 2\)"):
        suspected_label_errors(scarce, folds=3)
