"""Fine-tuning: datasets, optimiser and loss, and the fit loop with early stopping on macro-F1.

The same functions serve the ``tune`` stage (one call per trial) and the
``train`` stage (the best configuration, retrained: ``training.retrain``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from peru_sentiment.config import TrainParams
from peru_sentiment.model.checkpoints import load_backbone, load_tokenizer
from peru_sentiment.model.classifier import ASPECT_OUTPUT, OVERALL_OUTPUT, build_classifier, freeze
from peru_sentiment.model.inputs import TextEncoder, aspect_targets, bucket_lengths_for, make_dataset
from peru_sentiment.model.predictor import SentimentPredictor
from peru_sentiment.schema import ASPECT_POLARITIES, LABEL_TO_ID, LABELS, MONITOR

log = logging.getLogger(__name__)


@dataclass
class EncodedSplit:
    ids: list[list[int]]
    labels: np.ndarray
    weights: np.ndarray | None = None  # per-row loss weights (real sources, pseudo-labels); None = all 1
    aspects: np.ndarray | None = None  # (rows, aspects) polarity class ids, -1 without truth; None = no aspect heads

    def __len__(self) -> int:
        return len(self.ids)


def encode_split(frame: pd.DataFrame, encoder: TextEncoder, aspects: Sequence[str] = ()) -> EncodedSplit:
    """Token ids and label ids; a ``sample_weight`` column becomes the rows' loss weights.

    With `aspects` (the aspect heads' names) each row also gets its aspect targets (``aspect_targets``).
    """
    unknown = sorted(set(frame["label"]) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown labels {unknown}; unlabelled rows cannot be trained on")
    weights = frame["sample_weight"].to_numpy(dtype=np.float32) if "sample_weight" in frame else None
    return EncodedSplit(
        encoder.encode(frame["text"].tolist()),
        frame["label"].map(LABEL_TO_ID).to_numpy(),
        weights,
        aspect_targets(frame, aspects) if aspects else None,
    )


def sample_rows(frame: pd.DataFrame, rows: int | None, seed: int) -> pd.DataFrame:
    """At most `rows` rows, stratified by label (all rows when `rows` is None or larger)."""
    if rows is None or rows >= len(frame):
        return frame
    share = rows / len(frame)
    return frame.groupby("label", group_keys=False).sample(frac=share, random_state=seed).reset_index(drop=True)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """n / (k * count_c): each class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return {c: float(len(labels) / (num_classes * counts[c])) if counts[c] else 0.0 for c in range(num_classes)}


def learning_rate_schedule(params: TrainParams, total_steps: int):
    """Linear warm-up to ``learning_rate`` over ``warmup_ratio`` of the steps, then cosine decay to 0."""
    warmup = int(total_steps * params.warmup_ratio)
    decay = max(1, total_steps - warmup)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(params.learning_rate, decay)
    return keras.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=params.learning_rate, warmup_steps=warmup)


def masked_aspect_loss(y_true, y_pred):
    """Per-row cross-entropy of the aspect heads, averaged over aspects.

    `y_true` is one-hot over ``ASPECT_POLARITIES`` per aspect; a row without aspect truth is all zero and
    so adds nothing to the loss or its gradients.
    """
    from keras import ops

    per_aspect = -ops.sum(y_true * ops.log_softmax(y_pred, axis=-1), axis=-1)
    return ops.mean(per_aspect, axis=-1)


class OverallMetricNames(keras.callbacks.Callback):
    """With two outputs Keras prefixes the overall head's metrics (``val_logits_macro_f1``); this renames them
    back to their single-output names (``val_macro_f1``, schema.MONITOR) for early stopping, the sweep, dvclive
    and the report. It must come before the callbacks that read them."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for prefix in ("", "val_"):
                for name in ("accuracy", "macro_f1"):
                    key = f"{prefix}{OVERALL_OUTPUT}_{name}"
                    if key in logs:
                        logs[f"{prefix}{name}"] = logs.pop(key)


def compile_classifier(model: keras.Model, params: TrainParams, total_steps: int) -> None:
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate_schedule(params, total_steps), weight_decay=params.weight_decay
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "LayerNorm", "layer_norm"])
    if params.loss == "focal":
        loss = keras.losses.CategoricalFocalCrossentropy(from_logits=True, gamma=params.focal_gamma, alpha=None)
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    metrics = [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        keras.metrics.F1Score(average="macro", name="macro_f1"),
    ]
    if not params.aspects.enabled:
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=params.jit_compile)
        return
    model.compile(
        optimizer=optimizer,
        loss={OVERALL_OUTPUT: loss, ASPECT_OUTPUT: masked_aspect_loss},
        loss_weights={OVERALL_OUTPUT: 1.0, ASPECT_OUTPUT: params.aspects.loss_weight},
        metrics={OVERALL_OUTPUT: metrics},
        jit_compile=params.jit_compile,
    )


def set_global_training_state(params: TrainParams) -> None:
    """Seed Python, NumPy and TensorFlow and set Keras's precision policy: process-wide, before building a model."""
    keras.utils.set_random_seed(params.seed)
    policy = "float32" if params.mixed_precision == "none" else params.mixed_precision
    keras.mixed_precision.set_global_policy(policy)


class FineTuner:
    """A checkpoint's tokenizer and a freshly headed classifier, ready to fine-tune.

    Call :func:`set_global_training_state` first: the seed and precision policy apply to the layers built here.
    """

    def __init__(self, checkpoint: str, params: TrainParams, text_prefix: str = ""):
        self.params = params
        self.encoder = TextEncoder(load_tokenizer(checkpoint), params.max_length, text_prefix)
        backbone = load_backbone(checkpoint)
        freeze(backbone, params.trainable_layers, params.freeze_word_embeddings)
        self.aspects = tuple(params.aspects.names) if params.aspects.enabled else ()
        self.model = build_classifier(
            backbone,
            len(LABELS),
            params.pooling,
            params.dropout,
            len(self.aspects),
            len(ASPECT_POLARITIES),
            params.aspects.weight_scale,
        )

    @property
    def bucket_lengths(self) -> list[int]:
        """The padded lengths of the batches: what the trained model is saved with."""
        return bucket_lengths_for(self.params.max_length, self.params.bucket_lengths)

    def predictor(self) -> SentimentPredictor:
        """The fitted classifier with its tokenizer and bucket lengths, ready to save or predict."""
        return SentimentPredictor(self.model, self.encoder, self.bucket_lengths, aspects=self.aspects)

    def encode(self, frame: pd.DataFrame) -> EncodedSplit:
        """The frame's texts, labels, row weights and (with aspect heads) aspect targets, ready to fit."""
        return encode_split(frame, self.encoder, self.aspects)

    def datasets(self, train: EncodedSplit, validation: EncodedSplit):
        common = {
            "batch_size": self.params.batch_size,
            "bucket_lengths": self.bucket_lengths,
            "pad_id": self.encoder.pad_id,
            "num_classes": len(LABELS),
            "pad_to_bucket": self.params.jit_compile,
        }
        # Under XLA a partial batch is one more shape to compile; reshuffled each epoch, no text is always left out.
        train_ds = make_dataset(
            train.ids,
            train.labels,
            shuffle_seed=self.params.seed,
            drop_remainder=self.params.jit_compile,
            sample_weights=self.loss_weights(train),
            aspect_ids=train.aspects,
            **common,
        )
        validation_ds = make_dataset(validation.ids, validation.labels, aspect_ids=validation.aspects, **common)
        return train_ds, validation_ds

    def loss_weights(self, train: EncodedSplit) -> np.ndarray | None:
        """Row weights times balanced class weights, when rows carry weights or the model has aspect heads
        (Keras takes class weights only alone and only for a single output)."""
        if train.weights is None and not self.aspects:
            return None
        weights = np.ones(len(train), np.float32) if train.weights is None else train.weights
        if not self.params.class_weights:
            return weights
        by_class = balanced_class_weights(train.labels, len(LABELS))
        return weights * np.array([by_class[c] for c in range(len(LABELS))], dtype=np.float32)[train.labels]

    def fit(
        self, train: EncodedSplit, validation: EncodedSplit, callbacks: list | None = None, verbose: int | str = "auto"
    ) -> keras.callbacks.History:
        """Fit with early stopping on validation macro-F1; the best epoch's weights are kept."""
        params = self.params
        if self.aspects and (train.aspects is None or validation.aspects is None):
            raise ValueError("the classifier has aspect heads: encode the splits with FineTuner.encode")
        train_ds, validation_ds = self.datasets(train, validation)
        steps_per_epoch = int(train_ds.cardinality())  # exact: make_dataset counts the batches of each bucket
        compile_classifier(self.model, params, steps_per_epoch * params.epochs)
        stopping = keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="max", patience=params.early_stopping_patience, restore_best_weights=True
        )
        weights = balanced_class_weights(train.labels, len(LABELS)) if params.class_weights else None
        log.info("fitting on %d texts, validating on %d (class weights %s)", len(train), len(validation), weights)
        if self.aspects:
            truth = int((train.aspects >= 0).all(axis=1).sum()) if train.aspects is not None else 0
            log.info("aspect heads %s: %d of %d training texts carry aspect truth", self.aspects, truth, len(train))
        folded = train.weights is not None or bool(self.aspects)  # class weights folded into the sample weights
        return self.model.fit(
            train_ds,
            validation_data=validation_ds,
            epochs=params.epochs,
            shuffle=False,  # the dataset reshuffles itself every epoch
            class_weight=None if folded else weights,
            callbacks=[*([OverallMetricNames()] if self.aspects else []), *(callbacks or []), stopping],
            verbose=verbose,
        )
