"""The transfer experiment: how well models trained on synthetic feedback read real feedback, and what real data adds.

For every real set the user declares (a CSV file with ``text`` and ``label``
columns, labels negative / neutral / positive), the protocol of the issue 3
note: a 70/30 split stratified by label, the test portion capped at 1,500 rows
(stratified), seed 0; a set that ships its own split (a ``split`` column with
``test`` rows, as TweetEval's val/test) keeps it. The training portion is used as the user would have it:
its texts without labels (the unlabelled bulk) or N labelled rows of it.

Conditions, for each learner (the pipeline's BERT and TF-IDF + logistic regression):

- ``synthetic``: trained on the synthetic training split only, no real text seen;
- ``synthetic + prior adjustment``: the same probabilities, calibrated on the
  synthetic validation split, adjusted to the label prior EM estimates on the
  training portion's texts (``label_shift``);
- ``synthetic + unlabelled``: one round of self-training on the training
  portion's texts (``training.adaptation.self_training_round``);
- ``synthetic + N labelled``: N labelled rows of the training portion
  (stratified sample), weighted like an imported source of that name
  (``adaptation`` params; ``default`` unless the set is listed;
  ``training.adaptation.training_mix``). A learner that continues training
  (BERT) continues from its synthetic state on them, mixed with
  ``self_training.labelled_rows`` synthetic rows, for ``self_training.epochs``
  (the same round as self-training, minutes instead of a full retraining); one
  that starts over (TF-IDF) is trained on the synthetic rows and them. N = 0 is
  ``synthetic``.

BERT's synthetic state can come from the pipeline's own trained model
(``--trained models/trained``) instead of a second fit on the same split.

Training and scoring go through the library's learners and adaptation
functions; this module only arranges the conditions and writes the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from peru_sentiment.artifacts import read_table
from peru_sentiment.config import AdaptationParams, Params, PreprocessParams
from peru_sentiment.data.preprocess import preprocess_feedback
from peru_sentiment.errors import ConfigError
from peru_sentiment.evaluation.label_shift import LabelShift
from peru_sentiment.evaluation.metrics import classification_metrics
from peru_sentiment.metadata import write_json
from peru_sentiment.paths import split_file
from peru_sentiment.schema import LABELS, SYNTHETIC_SOURCE
from peru_sentiment.training.adaptation import Learner, self_training_round, training_mix, unlabelled_sample
from peru_sentiment.training.trainer import sample_rows

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
PRIOR_ADJUSTED = "synthetic + prior adjustment"
UNLABELLED = "synthetic + unlabelled"


def labelled_condition(rows: int) -> str:
    return f"synthetic + {rows} labelled"


@dataclass
class RealSet:
    name: str
    train: pd.DataFrame  # the 70% portion: its texts are the unlabelled pool, its rows the labelled sample
    test: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out of the file, by reason


@dataclass
class TransferProtocol:
    test_share: float = 0.3
    max_test_rows: int = 1500
    seed: int = 0
    labelled_rows: Sequence[int] = (0, 100, 300, 1000)


def read_real_csv(path: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """A real set's rows with a usable text and label, and how many rows were left out and why."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in ("text", "label") if column not in frame]
    if missing:
        raise ConfigError(f"{path} lacks column(s) {', '.join(missing)}; a real set needs text and label columns")
    text = frame["text"].str.strip()
    label = frame["label"].str.strip().str.lower()
    empty, unknown = text.eq(""), ~label.isin(LABELS)
    dropped = {"empty text": int(empty.sum()), "unknown label": int((unknown & ~empty).sum())}
    if any(dropped.values()):
        log.warning("%s: %s rows left out", path.name, dropped)
    keep = ~(empty | unknown)
    declared = frame["language"].str.strip().str.lower() if "language" in frame else pd.Series(None, index=frame.index)
    rows = pd.DataFrame({"text": text[keep], "label": label[keep], "declared_language": declared[keep]})
    if "split" in frame:
        rows["split"] = frame["split"].str.strip().str.lower()[keep]
    return rows.assign(feedback_id=[f"{path.stem}-{i:06d}" for i in range(keep.sum())]).reset_index(drop=True), dropped


def split_real_set(frame: pd.DataFrame, protocol: TransferProtocol) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training portion, test portion): stratified by label, the test portion capped (stratified too).

    A set with its own split (``split`` column with ``test`` and other rows) keeps it.
    """
    own_split = frame["split"].eq("test") if "split" in frame else pd.Series(False, index=frame.index)
    if own_split.any() and not own_split.all():
        train, test = frame[~own_split], frame[own_split]
    else:
        train, test = train_test_split(
            frame, test_size=protocol.test_share, stratify=frame["label"], random_state=protocol.seed
        )
    if len(test) > protocol.max_test_rows:
        test, _ = train_test_split(
            test, train_size=protocol.max_test_rows, stratify=test["label"], random_state=protocol.seed
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def load_real_sets(real_dir: Path, preprocess: PreprocessParams, protocol: TransferProtocol) -> list[RealSet]:
    """Every ``*.csv`` under `real_dir` (named by its file stem), cleaned as the pipeline cleans text, and split."""
    paths = sorted(real_dir.rglob("*.csv"))
    if not paths:
        raise ConfigError(f"no CSV files under {real_dir}; put one CSV (text,label columns) per real set there")
    sets = []
    for path in paths:
        rows, dropped = read_real_csv(path)
        log.info("%s: %d rows; cleaning (normalise, mask, language, classical text)", path.stem, len(rows))
        rows, _ = preprocess_feedback(rows, preprocess, progress=False)
        train, test = split_real_set(rows.assign(source=path.stem), protocol)
        sets.append(RealSet(path.stem, train, test, dropped))
    return sets


def _scores(real_set: RealSet, probabilities: np.ndarray) -> dict:
    predicted = np.asarray(LABELS)[probabilities.argmax(axis=1)]
    metrics = classification_metrics(real_set.test["label"], predicted)
    return {
        "macro_f1": round(metrics["macro_f1"], 4),
        "accuracy": round(metrics["accuracy"], 4),
        "recall": {label: round(values["recall"], 4) for label, values in metrics["per_class"].items()},
    }


def run_transfer(
    learners: dict[str, Callable[[], Learner]],
    synthetic_train: pd.DataFrame,
    synthetic_validation: pd.DataFrame,
    real_sets: list[RealSet],
    adaptation: AdaptationParams,
    protocol: TransferProtocol,
    trained_states: dict[str, object] | None = None,
) -> list[dict]:
    """One result per (learner, condition, real set): macro-F1, accuracy, per-class recall.

    A learner named in `trained_states` starts from that state instead of a fit on `synthetic_train`.
    """
    results = []

    def record(learner_name: str, condition: str, real_set: RealSet, probabilities: np.ndarray, **extra) -> None:
        scores = _scores(real_set, probabilities)
        log.info("%s | %s | %s: macro-F1 %.3f", learner_name, condition, real_set.name, scores["macro_f1"])
        results.append({"learner": learner_name, "condition": condition, "set": real_set.name, **scores, **extra})

    for learner_name, make_learner in learners.items():
        learner = make_learner()
        if learner_name in (trained_states or {}):
            log.info("%s: starting from the given trained state", learner_name)
            try:
                learner.set_state(trained_states[learner_name])
            except ValueError as error:
                raise ConfigError(
                    f"the trained model does not fit the {learner_name} learner ({error}); "
                    "train it with the same params and best hyperparameters, or leave out --trained"
                ) from error
        else:
            log.info("%s: training on %d synthetic rows", learner_name, len(synthetic_train))
            learner.fit(synthetic_train, synthetic_validation)
        trained = learner.get_state()
        validation_probabilities = learner.predict_proba(synthetic_validation)
        label_shift = LabelShift.for_model(
            synthetic_train["label"], learner.class_balanced, validation_probabilities, synthetic_validation["label"]
        )
        self_training = adaptation.self_training
        for real_set in real_sets:
            unlabelled = real_set.train.drop(columns=["label"])
            test_probabilities = learner.predict_proba(real_set.test)
            record(learner_name, SYNTHETIC, real_set, test_probabilities)

            pool = unlabelled_sample(unlabelled, self_training.max_unlabelled_rows, protocol.seed)
            estimate = label_shift.estimate(learner.predict_proba(pool))
            adjusted = label_shift.adjust(test_probabilities, estimate.prior)
            record(
                learner_name,
                PRIOR_ADJUSTED,
                real_set,
                adjusted,
                estimated_prior=dict(zip(LABELS, np.round(estimate.prior, 4).tolist(), strict=True)),
            )

            summary = self_training_round(
                learner, synthetic_train, synthetic_validation, unlabelled, self_training, protocol.seed
            )
            record(
                learner_name,
                UNLABELLED,
                real_set,
                learner.predict_proba(real_set.test),
                pseudo_labelled=summary["pseudo_labelled"],
            )
            learner.set_state(trained)

            for rows in protocol.labelled_rows:
                if rows == 0:
                    continue  # the synthetic condition
                labelled = sample_rows(real_set.train, rows, protocol.seed)  # weighted as adaptation says
                if learner.continues_training:
                    synthetic_rows = sample_rows(synthetic_train, self_training.labelled_rows, protocol.seed)
                    mix = training_mix(pd.concat([synthetic_rows, labelled]), adaptation, None, protocol.seed)
                    learner.fit(mix, synthetic_validation, epochs=self_training.epochs)
                    adapted = learner
                else:
                    adapted = make_learner()
                    adapted.fit(
                        training_mix(pd.concat([synthetic_train, labelled]), adaptation, None, protocol.seed),
                        synthetic_validation,
                    )
                record(
                    learner_name,
                    labelled_condition(rows),
                    real_set,
                    adapted.predict_proba(real_set.test),
                    labelled_rows=len(labelled),
                )
                learner.set_state(trained)
    return results


def conditions(protocol: TransferProtocol) -> list[str]:
    return [SYNTHETIC, PRIOR_ADJUSTED, UNLABELLED, *(labelled_condition(n) for n in protocol.labelled_rows if n)]


def summarize(results: list[dict], real_sets: list[RealSet], protocol: TransferProtocol) -> dict:
    """The experiment as JSON: protocol, the sets, every result and the mean macro-F1 per learner and condition."""
    frame = pd.DataFrame(results)
    means = frame.groupby(["learner", "condition"], sort=False)["macro_f1"].mean().round(4)
    return {
        "protocol": {
            "split": f"{1 - protocol.test_share:.0%}/{protocol.test_share:.0%} stratified by label",
            "max_test_rows": protocol.max_test_rows,
            "seed": protocol.seed,
            "labelled_rows": list(protocol.labelled_rows),
        },
        "sets": {
            real_set.name: {
                "train_rows": len(real_set.train),
                "test_rows": len(real_set.test),
                "test_label_shares": {
                    label: round(float((real_set.test["label"] == label).mean()), 4) for label in LABELS
                },
                "rows_left_out": real_set.dropped,
            }
            for real_set in real_sets
        },
        "mean_macro_f1": {
            learner: {
                condition: float(means[(learner, condition)])
                for condition in conditions(protocol)
                if (learner, condition) in means
            }
            for learner in frame["learner"].unique()
        },
        "results": results,
    }


def transfer_markdown(summary: dict) -> str:
    """Two Markdown tables: macro-F1 per set and condition, and per-class recall."""
    results = pd.DataFrame(summary["results"])
    sets = list(summary["sets"])
    lines = ["| learner | condition | " + " | ".join(sets) + " | mean |", "|---|---|" + "---:|" * (len(sets) + 1)]
    for learner, by_condition in summary["mean_macro_f1"].items():
        for condition, mean in by_condition.items():
            rows = results[(results["learner"] == learner) & (results["condition"] == condition)].set_index("set")
            cells = [f"{rows.loc[name, 'macro_f1']:.3f}" for name in sets]
            lines.append(f"| {learner} | {condition} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines += ["", "Recall per class (negative / neutral / positive):", ""]
    lines += ["| learner | condition | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for learner, by_condition in summary["mean_macro_f1"].items():
        for condition in by_condition:
            rows = results[(results["learner"] == learner) & (results["condition"] == condition)].set_index("set")
            cells = [" / ".join(f"{rows.loc[name, 'recall'][label]:.2f}" for label in LABELS) for name in sets]
            lines.append(f"| {learner} | {condition} | " + " | ".join(cells) + " |")
    shares = "; ".join(
        f"{name}: {info['test_rows']} test rows, "
        + ", ".join(f"{label} {share:.0%}" for label, share in info["test_label_shares"].items())
        for name, info in summary["sets"].items()
    )
    header = (
        f"Macro-F1 on the test portion of each real set ({summary['protocol']['split']}, at most "
        f"{summary['protocol']['max_test_rows']} test rows, seed {summary['protocol']['seed']}). {shares}."
    )
    return header + "\n\n" + "\n".join(lines) + "\n"


LEARNERS = ("bert", "tfidf")


def trained_weights(model_dir: Path) -> list[np.ndarray]:
    """The weights of a saved classifier (the train stage's ``models/trained``), to start BERT from."""
    from peru_sentiment.model.predictor import SentimentPredictor

    if not model_dir.is_dir():
        raise ConfigError(f"no trained model at {model_dir}; run `dvc repro train` first or leave out --trained")
    return SentimentPredictor.load(model_dir).network.get_weights()  # both heads, as BertLearner.set_state takes them


def run_transfer_experiment(
    params: Params,
    real_dir: Path,
    data_dir: Path,
    best: Path,
    out_dir: Path,
    learners: Sequence[str],
    protocol: TransferProtocol,
    trained: Path | None = None,
) -> dict:
    """The whole experiment: the synthetic splits of `data_dir` against every real set in `real_dir`.

    Writes ``transfer.json`` and ``transfer.md`` to `out_dir` and returns the summary.
    With `trained` (the train stage's model), BERT starts from it instead of fitting on the synthetic split.
    """
    from peru_sentiment.evaluation.baselines import TfidfLearner
    from peru_sentiment.training.adaptation import BertLearner
    from peru_sentiment.training.retrain import best_train_params

    unknown = sorted(set(learners) - set(LEARNERS))
    if unknown:
        raise ConfigError(f"unknown learner(s) {unknown}; use {' and/or '.join(LEARNERS)}")
    train_params = best_train_params(params, best)
    factories = {
        "bert": lambda: BertLearner(params.model.checkpoint, train_params, params.model.text_prefix),
        "tfidf": lambda: TfidfLearner(protocol.seed),
    }
    synthetic = {}
    for name in ("train", "validation"):
        frame = read_table(split_file(name, data_dir))
        synthetic[name] = frame[frame["source"] == SYNTHETIC_SOURCE]
    synthetic_train = training_mix(synthetic["train"], params.adaptation, train_params.train_rows, train_params.seed)
    real_sets = load_real_sets(real_dir, params.preprocess, protocol)
    trained_states = {"bert": trained_weights(trained)} if trained is not None and "bert" in learners else None
    results = run_transfer(
        {name: factories[name] for name in learners},
        synthetic_train,
        synthetic["validation"],
        real_sets,
        params.adaptation,
        protocol,
        trained_states,
    )
    summary = summarize(results, real_sets, protocol)
    write_json(out_dir / "transfer.json", summary)
    (out_dir / "transfer.md").write_text(transfer_markdown(summary), encoding="utf-8")
    return summary
