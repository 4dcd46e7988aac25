"""A trained classifier with its tokenizer: save, load and predict probabilities.

Texts given to :meth:`SentimentPredictor.predict_proba` must already be
prepared (``text.prepare.prepare_text``), as the splits are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from tokenizers import Tokenizer

from peru_sentiment.errors import ConfigError
from peru_sentiment.model.inputs import TextEncoder, predict_texts
from peru_sentiment.schema import LABELS

MODEL_FILE = "model.keras"
TOKENIZER_FILE = "tokenizer.json"
SETTINGS_FILE = "inference.json"


class SentimentPredictor:
    """`bucket_lengths` are the padded lengths the model was trained with; the export bundle keeps them."""

    def __init__(
        self,
        model: keras.Model,
        encoder: TextEncoder,
        bucket_lengths: Sequence[int],
        labels: tuple[str, ...] = LABELS,
        batch_size: int = 64,
    ):
        import tensorflow as tf

        self.model, self.encoder, self.labels, self.batch_size = model, encoder, labels, batch_size
        self.bucket_lengths = list(bucket_lengths)
        self._probabilities = tf.function(
            lambda inputs: tf.nn.softmax(model(inputs, training=False)), reduce_retracing=True
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, one row per text, columns in ``labels`` order."""
        return predict_texts(
            lambda batch: self._probabilities(batch).numpy(), self.encoder, texts, self.batch_size, len(self.labels)
        )

    def predict(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # A new functional model over the same layers carries no optimizer state into the file.
        keras.Model(self.model.inputs, self.model.outputs, name=self.model.name).save(directory / MODEL_FILE)
        self.encoder.tokenizer.save(str(directory / TOKENIZER_FILE))
        settings = {
            "labels": list(self.labels),
            "max_length": self.encoder.max_length,
            "prefix": self.encoder.prefix,
            "bucket_lengths": self.bucket_lengths,
        }
        (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: Path, batch_size: int = 64) -> SentimentPredictor:
        missing = [name for name in (MODEL_FILE, TOKENIZER_FILE, SETTINGS_FILE) if not (directory / name).is_file()]
        if missing:
            raise ConfigError(
                f"{directory} is not a trained model (missing {', '.join(missing)}); run `dvc repro train`"
            )
        import keras_hub  # noqa: F401  (registers the backbone classes for deserialisation)

        from peru_sentiment.model import classifier  # noqa: F401  (registers the pooling layers)

        settings = json.loads((directory / SETTINGS_FILE).read_text())
        if "bucket_lengths" not in settings:
            raise ConfigError(f"{directory / SETTINGS_FILE} predates bucket_lengths; run `dvc repro train` again")
        model = keras.saving.load_model(directory / MODEL_FILE, compile=False)
        encoder = TextEncoder(
            Tokenizer.from_file(str(directory / TOKENIZER_FILE)), settings["max_length"], settings["prefix"]
        )
        return cls(model, encoder, settings["bucket_lengths"], tuple(settings["labels"]), batch_size)
