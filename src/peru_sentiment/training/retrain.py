"""The ``train`` stage: retrain the best configuration of the sweep on the training split.

Imported real rows join by their source's weight and cap (``params.yaml: adaptation``);
imported unlabelled rows, if any, add one round of self-training (``training.adaptation``).
With aspect heads, ``train.aspects.refine_epochs`` more epochs then train the heads alone
(``training.aspect_refinement``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from peru_sentiment.artifacts import read_table
from peru_sentiment.config import Params, TrainParams
from peru_sentiment.paths import split_file
from peru_sentiment.schema import MONITOR
from peru_sentiment.training.adaptation import BertLearner, self_training_round, training_mix
from peru_sentiment.training.aspect_refinement import refine_aspect_heads
from peru_sentiment.training.distribution import strategy_scope

log = logging.getLogger(__name__)


def best_train_params(params: Params, best: Path) -> TrainParams:
    """``params.train`` with the sweep's best hyperparameters, or the defaults when there is no sweep."""
    if best.is_file():
        hyperparameters = json.loads(best.read_text())
        log.info("hyperparameters from %s: %s", best, hyperparameters)
    else:
        hyperparameters = {}
        log.warning("%s not found: training with the defaults in params.yaml (run `dvc repro tune` first)", best)
    return params.train.with_hyperparameters(hyperparameters)


def train_best_model(
    params: Params, data_dir: Path, best: Path, out: Path, live_dir: Path, tensorboard_dir: Path
) -> dict:
    """Fine-tune with early stopping on validation macro-F1, save the predictor to `out`; return the stage record.

    Metrics and plots go to dvclive (`live_dir`) and TensorBoard (`tensorboard_dir`).
    """
    import keras
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    train_params = best_train_params(params, best)
    training = training_mix(
        read_table(split_file("train", data_dir)), params.adaptation, train_params.train_rows, train_params.seed
    )
    validation = read_table(split_file("validation", data_dir))
    unlabelled_file = split_file("unlabelled", data_dir)
    unlabelled = read_table(unlabelled_file) if unlabelled_file.is_file() else pd.DataFrame()
    record = {}
    with strategy_scope(train_params.distribution), Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        learner = BertLearner(params.model.checkpoint, train_params, params.model.text_prefix)
        live.log_params(train_params.model_dump())
        history = learner.fit(
            training,
            validation,
            callbacks=[DVCLiveCallback(live=live), keras.callbacks.TensorBoard(str(tensorboard_dir))],
        )
        if params.adaptation.self_training.enabled and len(unlabelled):
            record["self_training"] = self_training_round(
                learner, training, validation, unlabelled, params.adaptation.self_training, train_params.seed
            )
    predictor = learner.fine_tuner.predictor()
    if predictor.aspects and train_params.aspects.refine_epochs:
        record["aspect_refinement"] = refine_aspect_heads(
            predictor,
            training,
            validation,
            epochs=train_params.aspects.refine_epochs,
            learning_rate=train_params.aspects.refine_learning_rate,
            seed=train_params.seed,
        )
    predictor.save(out)
    return {
        "rows_in": len(training),
        "hyperparameters": train_params.model_dump(),
        "epochs_run": len(history["loss"]),
        "best_val_macro_f1": max(history[MONITOR]),
        "rows_by_source": {str(k): int(v) for k, v in training["source"].value_counts().sort_index().items()},
        **record,
    }
