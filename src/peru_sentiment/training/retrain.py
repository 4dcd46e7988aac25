"""The ``train`` stage: retrain the best configuration of the sweep on the training split."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from peru_sentiment.artifacts import read_table
from peru_sentiment.config import Params, TrainParams
from peru_sentiment.paths import split_file
from peru_sentiment.schema import MONITOR
from peru_sentiment.training.distribution import strategy_scope
from peru_sentiment.training.trainer import FineTuner, encode_split, sample_rows, set_global_training_state

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
    training = sample_rows(read_table(split_file("train", data_dir)), train_params.train_rows, train_params.seed)
    validation = read_table(split_file("validation", data_dir))
    with strategy_scope(train_params.distribution), Live(str(live_dir), dvcyaml=None, save_dvc_exp=False) as live:
        set_global_training_state(train_params)
        fine_tuner = FineTuner(params.model.checkpoint, train_params, params.model.text_prefix)
        live.log_params(train_params.model_dump())
        history = fine_tuner.fit(
            encode_split(training, fine_tuner.encoder),
            encode_split(validation, fine_tuner.encoder),
            callbacks=[DVCLiveCallback(live=live), keras.callbacks.TensorBoard(str(tensorboard_dir))],
        )
    fine_tuner.predictor().save(out)
    return {
        "rows_in": len(training),
        "hyperparameters": train_params.model_dump(),
        "epochs_run": len(history.history["loss"]),
        "best_val_macro_f1": max(history.history[MONITOR]),
    }
