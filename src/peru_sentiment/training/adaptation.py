"""Learning from the user's real feedback, on top of the synthetic corpus.

- Labelled real rows (ingest role ``train``) join the synthetic rows of the
  training split with a per-source loss weight and cap (``params.yaml:
  adaptation.sources``); the synthetic rows keep ``train.train_rows`` as cap.
- Unlabelled real rows (ingest role ``unlabelled``) adapt the model by one
  round of self-training: the trained model labels them, the confident
  predictions (per class, most confident first, capped per class) become
  pseudo-labelled rows with their own loss weight, and training continues on
  them mixed with a sample of the labelled rows. Unlabelled rows reach the
  loss only through a label the model gave them, and never the evaluation.

Everything here works through the :class:`Learner` protocol, so the pipeline
(the BERT classifier) and the transfer experiment (BERT and TF-IDF) share it.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import pandas as pd

from peru_sentiment.config import AdaptationParams, SelfTrainingParams, TrainParams
from peru_sentiment.errors import DataError
from peru_sentiment.schema import ASPECTS, LABELS, SYNTHETIC_SOURCE, aspect_column
from peru_sentiment.training.trainer import FineTuner, sample_rows, set_global_training_state

log = logging.getLogger(__name__)


class Learner(Protocol):
    """A classifier the adaptation methods can fit, refit and query."""

    class_balanced: bool  # trained with class-balanced loss weights (its probabilities reflect a uniform prior)
    continues_training: bool  # a second fit continues from the first (BERT) rather than starting over (TF-IDF)

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame, epochs: int | None = None) -> dict:
        """Fit (or continue fitting) on rows with ``text``, ``label`` and optional ``sample_weight``."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities (columns in ``LABELS`` order) of the frame's texts."""

    def get_state(self) -> object:
        """What :meth:`set_state` needs to return the learner to this point (weights, fitted model)."""

    def set_state(self, state: object) -> None: ...


class BertLearner:
    """The fine-tuned BERT classifier of the pipeline as a :class:`Learner`."""

    def __init__(self, checkpoint: str, params: TrainParams, text_prefix: str = ""):
        self.class_balanced = params.class_weights
        self.continues_training = True
        set_global_training_state(params)
        self.fine_tuner = FineTuner(checkpoint, params, text_prefix)
        self.predictor = self.fine_tuner.predictor()

    def fit(
        self, train: pd.DataFrame, validation: pd.DataFrame, epochs: int | None = None, callbacks: list | None = None
    ) -> dict:
        base = self.fine_tuner.params
        if epochs is not None:
            self.fine_tuner.params = base.model_copy(update={"epochs": epochs})
        try:
            history = self.fine_tuner.fit(
                self.fine_tuner.encode(train),
                self.fine_tuner.encode(validation),
                callbacks=callbacks,
            )
        finally:
            self.fine_tuner.params = base
        return history.history

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predictor.predict_proba(frame["text"].tolist())

    def get_state(self) -> list[np.ndarray]:
        return self.fine_tuner.model.get_weights()

    def set_state(self, state: list[np.ndarray]) -> None:
        self.fine_tuner.model.set_weights(state)


def training_mix(train: pd.DataFrame, params: AdaptationParams, synthetic_rows: int | None, seed: int) -> pd.DataFrame:
    """The rows to train on: synthetic rows capped at `synthetic_rows`, each real source by its own cap.

    With real rows present, every row gets a ``sample_weight`` (synthetic 1,
    real rows their source's weight); without, the frame is the synthetic sample.
    """
    if train["label"].isna().any():
        raise DataError("the training split holds rows without a label; unlabelled rows belong in unlabelled.parquet")
    is_synthetic = train["source"] == SYNTHETIC_SOURCE
    parts = [sample_rows(train[is_synthetic], synthetic_rows, seed)]
    if is_synthetic.all():
        return parts[0]
    parts[0] = parts[0].assign(sample_weight=1.0)
    for source, rows in train[~is_synthetic].groupby("source", sort=True):
        mix = params.mix(str(source))
        chosen = sample_rows(rows, mix.max_rows, seed).assign(sample_weight=mix.weight)
        log.info("real source %s: %d of %d rows, loss weight %g", source, len(chosen), len(rows), mix.weight)
        parts.append(chosen)
    return pd.concat(parts, ignore_index=True)


def select_pseudo_labels(
    probabilities: np.ndarray, threshold: float, max_per_class: int
) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, class ids) of confident predictions.

    A row qualifies when its top probability is at least `threshold`; per
    predicted class at most `max_per_class` rows are kept, the most confident
    first, so the majority class cannot flood the round.
    """
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    chosen = []
    for label_id in range(probabilities.shape[1]):
        rows = np.flatnonzero((predicted == label_id) & (confidence >= threshold))
        chosen.append(rows[np.argsort(-confidence[rows], kind="stable")][:max_per_class])
    indices = np.sort(np.concatenate(chosen))
    return indices, predicted[indices]


def unlabelled_sample(unlabelled: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """A random sample of at most `rows` unlabelled rows (all when `rows` is None), re-indexed."""
    if rows is not None and len(unlabelled) > rows:
        unlabelled = unlabelled.sample(n=rows, random_state=seed)
    return unlabelled.reset_index(drop=True)


def self_training_round(
    learner: Learner,
    training: pd.DataFrame,
    validation: pd.DataFrame,
    unlabelled: pd.DataFrame,
    params: SelfTrainingParams,
    seed: int,
) -> dict:
    """Pseudo-label `unlabelled` with the fitted `learner` and continue fitting it once; a summary.

    The round trains on the pseudo-labelled rows (loss weight ``params.weight``)
    and a stratified sample of ``params.labelled_rows`` of the labelled rows
    (all of them for a learner that starts over on every fit).
    """
    pool = unlabelled_sample(unlabelled, params.max_unlabelled_rows, seed)
    log.info("self-training: pseudo-labelling %d unlabelled texts", len(pool))
    indices, label_ids = select_pseudo_labels(learner.predict_proba(pool), params.threshold, params.max_per_class)
    pseudo = pool.iloc[indices].assign(label=np.asarray(LABELS)[label_ids], sample_weight=params.weight)
    summary = {
        "unlabelled_scored": len(pool),
        "pseudo_labelled": {label: int((pseudo["label"] == label).sum()) for label in LABELS},
    }
    if pseudo.empty:
        log.warning("self-training: no prediction reaches %.2f; the model stays as trained", params.threshold)
        return summary
    labelled = sample_rows(training, params.labelled_rows if learner.continues_training else None, seed)
    labelled = labelled.assign(sample_weight=labelled.get("sample_weight", 1.0))
    kept = ("text", "text_classical", "label", "sample_weight", "source", *map(aspect_column, ASPECTS))
    columns = [c for c in kept if c in labelled]  # pseudo-labelled rows have no aspect truth: masked
    round_rows = pd.concat([labelled[columns], pseudo[[c for c in columns if c in pseudo]]], ignore_index=True)
    log.info(
        "self-training: %d pseudo-labelled %s + %d labelled rows",
        len(pseudo),
        summary["pseudo_labelled"],
        len(labelled),
    )
    history = learner.fit(round_rows, validation, epochs=params.epochs)
    if history and "val_macro_f1" in history:
        summary["val_macro_f1"] = float(max(history["val_macro_f1"]))
    return summary
