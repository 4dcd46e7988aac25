"""Hyperparameter sweep with Keras Tuner; objective: validation macro-F1.

The search space lives in ``configs/tuning/*.yaml``. Each trial fine-tunes a
fresh classifier (:class:`~peru_sentiment.training.trainer.FineTuner`) on a
sample of the training split and records its hyperparameters, metrics per
epoch and duration. The best hyperparameters go to a JSON file the ``train``
stage reads.

Distributed mode: Keras Tuner runs one oracle (the chief) and any number of
workers, configured only by environment variables — ``KERASTUNER_TUNER_ID``
(``chief``, ``tuner0``, ``tuner1``, ...), ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` — with the same command on every machine and a
shared ``--directory``. See the README.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import keras_tuner as kt
import pandas as pd

from peru_sentiment.artifacts import read_table
from peru_sentiment.config import Hyperparameters, Params, TrainParams, load_yaml
from peru_sentiment.errors import ConfigError
from peru_sentiment.metadata import write_json
from peru_sentiment.paths import split_file
from peru_sentiment.schema import MONITOR
from peru_sentiment.training.trainer import FineTuner, sample_rows, set_global_training_state

log = logging.getLogger(__name__)

ALGORITHMS = {"bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband, "random": kt.RandomSearch}
RECORDS = "records"


def load_search_space(path: Path) -> dict:
    """Read and check a search-space file against the tunable hyperparameters."""
    config = load_yaml(path)
    unknown = set(config.get("space", {})) - set(Hyperparameters.model_fields)
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)} cannot be tuned; use {sorted(Hyperparameters.model_fields)}")
    if config.get("algorithm") not in ALGORITHMS:
        raise ConfigError(f"{path}: algorithm must be one of {', '.join(ALGORITHMS)}")
    return config


def sample_hyperparameters(hp: kt.HyperParameters, space: dict) -> dict:
    """Declare each searched hyperparameter on `hp` and return the values of this trial."""
    values = {}
    for name, rule in space.items():
        if "choice" in rule:
            values[name] = hp.Choice(name, rule["choice"])
        elif "float" in rule:
            low, high = rule["float"]
            values[name] = hp.Float(name, low, high, sampling="log" if rule.get("log") else "linear")
        elif "int" in rule:
            low, high = rule["int"]
            values[name] = hp.Int(name, low, high, step=rule.get("step", 1))
        else:
            raise ConfigError(f"search rule for {name} needs choice, float or int: {rule}")
    return values


class SentimentHyperModel(kt.HyperModel):
    """Builds a classifier for a trial's hyperparameters and fits it on the trial's data."""

    def __init__(
        self,
        checkpoint: str,
        base: TrainParams,
        space: dict,
        prefix: str,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        records: Path,
    ):
        super().__init__(name="sentiment")
        self.checkpoint, self.base, self.space, self.prefix = checkpoint, base, space, prefix
        self.train, self.validation, self.records = train, validation, records
        self._classifier: FineTuner | None = None

    def build(self, hp: kt.HyperParameters):
        params = self.base.with_hyperparameters(sample_hyperparameters(hp, self.space))
        set_global_training_state(params)
        self._classifier = FineTuner(self.checkpoint, params, self.prefix)
        return self._classifier.model

    def fit(self, hp: kt.HyperParameters, model, *args, callbacks=None, **kwargs):
        classifier = self._classifier
        if classifier is None or classifier.model is not model:
            raise RuntimeError("fit() called for a model this hypermodel did not build")
        if "epochs" in kwargs:  # Hyperband sets the epochs of each bracket
            classifier.params = classifier.params.model_copy(update={"epochs": kwargs["epochs"]})
        start = time.perf_counter()
        history = classifier.fit(
            classifier.encode(self.train),
            classifier.encode(self.validation),
            callbacks=callbacks,
            verbose=2,
        )
        record = {
            "hyperparameters": hp.values,
            "epochs_run": len(history.history.get("loss", [])),
            "history": {key: [round(float(v), 5) for v in values] for key, values in history.history.items()},
            "duration_s": round(time.perf_counter() - start, 1),
            "worker": os.environ.get("KERASTUNER_TUNER_ID", "local"),
        }
        self.records.mkdir(parents=True, exist_ok=True)
        (self.records / f"{_key(hp.values)}.json").write_text(json.dumps(record, indent=2) + "\n")
        return history


def _key(values: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def is_worker() -> bool:
    """Whether this process is a worker of a distributed sweep (the chief serves the oracle)."""
    return os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"


def make_tuner(hypermodel: SentimentHyperModel, config: dict, directory: Path, overwrite: bool) -> kt.Tuner:
    objective = kt.Objective(MONITOR, direction="max")
    common = {
        "objective": objective,
        "directory": str(directory),
        "project_name": "trials",
        "overwrite": overwrite,
        "seed": config.get("seed"),
    }
    if config["algorithm"] == "hyperband":
        return kt.Hyperband(hypermodel, max_epochs=config.get("max_epochs", 2), **common)
    return ALGORITHMS[config["algorithm"]](hypermodel, max_trials=config.get("max_trials", 3), **common)


def run_sweep(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    checkpoint: str,
    base: TrainParams,
    prefix: str,
    config: dict,
    directory: Path,
    train_rows: int | None,
    validation_rows: int | None,
    overwrite: bool = True,
) -> kt.Tuner:
    """Search; on a worker of a distributed sweep this runs the trials the chief hands out."""
    train = sample_rows(train, train_rows, base.seed)
    validation = sample_rows(validation, validation_rows, base.seed)
    hypermodel = SentimentHyperModel(checkpoint, base, config["space"], prefix, train, validation, directory / RECORDS)
    # In a distributed sweep only the chief may clear the shared directory.
    tuner = make_tuner(hypermodel, config, directory, overwrite and not is_worker())
    log.info("sweep: %s over %d training texts, %d validation texts", config["algorithm"], len(train), len(validation))
    tuner.search()
    # Keras Tuner keeps each trial's best weights; train retrains the best configuration, so drop them.
    for weights in directory.glob("trials/trial_*/checkpoint.weights.h5"):
        weights.unlink()
    return tuner


def summarize(tuner: kt.Tuner, base: TrainParams, directory: Path) -> tuple[pd.DataFrame, dict]:
    """One row per trial (hyperparameters, best validation macro-F1, duration) and the best hyperparameters."""
    records = {}
    for path in sorted((directory / RECORDS).glob("*.json")):
        records[path.stem] = json.loads(path.read_text())
    rows = []
    for trial in tuner.oracle.trials.values():
        record = records.get(_key(trial.hyperparameters.values), {})
        rows.append(
            {
                "trial": trial.trial_id,
                "status": trial.status,
                MONITOR: trial.score,
                **{k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")},
                "epochs_run": record.get("epochs_run"),
                "duration_s": record.get("duration_s"),
                "worker": record.get("worker"),
            }
        )
    table = pd.DataFrame(rows).sort_values(MONITOR, ascending=False, na_position="last").reset_index(drop=True)
    best_values = tuner.get_best_hyperparameters(1)[0].values
    best = {k: v for k, v in best_values.items() if k in Hyperparameters.model_fields}
    best_params = base.with_hyperparameters(best)
    return table, {name: getattr(best_params, name) for name in Hyperparameters.model_fields}


def tune_hyperparameters(params: Params, data_dir: Path, directory: Path, best: Path, resume: bool = False) -> dict:
    """The ``tune`` stage: sweep, then (on the chief) write the summary and the best hyperparameters.

    Returns the stage record; empty on a worker of a distributed sweep.
    """
    tuner = run_sweep(
        read_table(split_file("train", data_dir)),
        read_table(split_file("validation", data_dir)),
        checkpoint=params.model.checkpoint,
        base=params.train.model_copy(update={"epochs": params.tune.epochs}),
        prefix=params.model.text_prefix,
        config=load_search_space(params.tune.search_space),
        directory=directory,
        train_rows=params.tune.train_rows,
        validation_rows=params.tune.validation_rows,
        overwrite=not resume,
    )
    if is_worker():
        return {}
    table, best_values = summarize(tuner, params.train, directory)
    table.to_csv(directory / "summary.csv", index=False)
    (directory / "summary.md").write_text(table.to_markdown(index=False) + "\n", encoding="utf-8")
    write_json(best, best_values)
    log.info("best hyperparameters: %s", best_values)
    return {"trials": len(table), "best": best_values, "best_val_macro_f1": float(table[MONITOR].max())}
