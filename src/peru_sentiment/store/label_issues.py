"""Suspected label errors in imported data, queued for review (``peru-sentiment review label-issues``).

Every imported labelled row (the split files' rows whose ``source`` is not the
synthetic one) gets out-of-fold probabilities from the cheap TF-IDF + logistic
regression baseline (stratified k folds), and cleanlab's ``find_label_issues``
picks the rows whose given label those probabilities contradict. The suspects
go into the store as predictions with source ``import``: the masked text of the
split, the out-of-fold suggestion as the model's label and the row's own label
as ``given_label``; then into the review queue (reason ``label_issue``), the
least self-confident first (the out-of-fold probability of the given label).
A row is stored once (id ``import:<feedback_id>``), so a rerun queues only new
suspects, and reviewed labels leave through ``review export`` like the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sqlalchemy import Engine, select

from peru_sentiment import paths
from peru_sentiment.errors import DataError
from peru_sentiment.evaluation.baselines import tfidf_pipeline
from peru_sentiment.schema import LABELS, SYNTHETIC_SOURCE
from peru_sentiment.store.models import Prediction, ReviewItem
from peru_sentiment.store.records import prediction_rows, utc_now

log = logging.getLogger(__name__)

LABELLED_SPLITS = ("train", "validation", "test", "external")
REASON = "label_issue"
SOURCE = "import"
MODEL_VERSION = "tfidf-logreg-out-of-fold"
REQUIRED_COLUMNS = ("feedback_id", "text", "text_classical", "label", "source")


def imported_rows(
    data_dir: Path = paths.PROCESSED, splits: Sequence[str] = LABELLED_SPLITS, sources: Sequence[str] = ()
) -> pd.DataFrame:
    """The labelled rows of the split files that were imported (not synthetic), or only those of `sources`."""
    files = [paths.split_file(name, data_dir) for name in splits]
    present = [file for file in files if file.is_file()]
    if not present:
        raise DataError(f"no split files ({', '.join(f.name for f in files)}) in {data_dir}; run `dvc repro split`")
    frames = []
    for file in present:
        frame = pd.read_parquet(file)
        missing = [column for column in REQUIRED_COLUMNS if column not in frame]
        if missing:
            raise DataError(f"{file} lacks column(s) {', '.join(missing)}; point --data-dir at the split stage's files")
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[(rows["source"] != SYNTHETIC_SOURCE) & rows["label"].isin(LABELS)]
    if sources:
        rows = rows[rows["source"].isin(sources)]
    if rows.empty:
        wanted = f"of source(s) {', '.join(sources)} " if sources else ""
        raise DataError(
            f"no imported labelled rows {wanted}in {', '.join(str(f) for f in present)}: declare real labelled "
            "data in ingest.sources of params.yaml (role train or external) and run `dvc repro split`"
        )
    return rows.reset_index(drop=True)


def out_of_fold_probabilities(rows: pd.DataFrame, folds: int, seed: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each row's probabilities from a TF-IDF model that did not see it, and the labels of their columns.

    Only the labels the rows have are classes; each needs at least `folds` rows.
    """
    counts = rows["label"].value_counts()
    classes = tuple(label for label in LABELS if label in counts)
    if len(rows) < folds:
        raise DataError(f"{len(rows)} imported row(s) are fewer than the {folds} folds; lower --folds or import more")
    if len(classes) < 2:
        raise DataError(f"every imported row is {classes[0]}; label errors need at least two labels to compare")
    scarce = {label: int(counts[label]) for label in classes if counts[label] < folds}
    if scarce:
        listed = ", ".join(f"{label} {count}" for label, count in scarce.items())
        raise DataError(
            f"too few imported rows of a label for {folds} folds ({listed}); lower --folds (at least 2) "
            "or import more rows of that label"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    log.info("out-of-fold probabilities of %d imported rows (%d folds)", len(rows), folds)
    probabilities = cross_val_predict(
        tfidf_pipeline(seed), rows["text_classical"], rows["label"], cv=splitter, method="predict_proba"
    )
    return probabilities, classes  # scikit-learn orders the columns by sorted label, as LABELS does


def suspected_label_errors(rows: pd.DataFrame, folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """The rows cleanlab finds mislabelled, most suspect first, with ``suggested_label``, ``self_confidence``
    (out-of-fold probability of the given label) and ``probabilities`` (one per label of LABELS)."""
    probabilities, classes = out_of_fold_probabilities(rows, folds, seed)
    given = rows["label"].map({label: index for index, label in enumerate(classes)}).to_numpy()
    ranked = find_label_issues(given, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    full = np.zeros((len(rows), len(LABELS)))
    full[:, [LABELS.index(label) for label in classes]] = probabilities
    suspects = rows.iloc[ranked].copy()
    suspects["suggested_label"] = [classes[i] for i in probabilities[ranked].argmax(axis=1)]
    suspects["self_confidence"] = probabilities[ranked, given[ranked]]
    suspects["probabilities"] = list(full[ranked])
    log.info("cleanlab suspects %d of %d imported labels", len(suspects), len(rows))
    return suspects.reset_index(drop=True)


def queue_label_issues(engine: Engine, suspects: pd.DataFrame, budget: int) -> int:
    """Store and queue the first `budget` suspects not yet in the store; returns how many were queued."""
    ids = [f"{SOURCE}:{feedback_id}" for feedback_id in suspects["feedback_id"]]
    with engine.begin() as connection:
        stored = set(connection.execute(select(Prediction.id).where(Prediction.id.in_(ids))).scalars())
        chosen = suspects[[identifier not in stored for identifier in ids]].head(budget)
        if chosen.empty:
            return 0
        now = utc_now()
        rows = prediction_rows(
            request_id=SOURCE,
            source=SOURCE,
            model_version=MODEL_VERSION,
            labels=LABELS,
            probabilities=np.stack(chosen["probabilities"].to_list()),
            texts=chosen["text"].tolist(),
            item_ids=chosen["feedback_id"].tolist(),
            regions=_column(chosen, "region"),
            channels=_column(chosen, "channel"),
            languages=_column(chosen, "language"),
            written_at=_column(chosen, "timestamp"),
            received_at=now,
            scored_at=now,
            store_text=True,
            positions=chosen["feedback_id"].tolist(),
            stars=_column(chosen, "stars"),
        )
        for row, given in zip(rows, chosen["label"], strict=True):
            row["given_label"] = given
        connection.execute(Prediction.__table__.insert(), rows)
        connection.execute(
            ReviewItem.__table__.insert(),
            [
                {"prediction_id": row["id"], "reason": REASON, "priority": round(float(p), 6), "queued_at": now}
                for row, p in zip(rows, chosen["self_confidence"], strict=True)
            ],
        )
    return len(rows)


def _column(frame: pd.DataFrame, name: str) -> list:
    """A column's values with missing ones as None (all None when the column is absent); the splits'
    timestamps, UTC without an offset, get it."""
    if name not in frame:
        return [None] * len(frame)
    values = pd.to_datetime(frame[name], utc=True) if name == "timestamp" else frame[name]
    return [None if pd.isna(value) else value for value in values]
