"""A trained classifier with its tokenizer: save, load and predict probabilities.

Texts given to :meth:`SentimentPredictor.predict_proba` must already be
prepared (``text.prepare.prepare_text``), as the splits are. A classifier with
aspect heads also gives per-aspect polarity probabilities
(:meth:`SentimentPredictor.predict_with_aspects`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from tokenizers import Tokenizer

from peru_sentiment.errors import ConfigError
from peru_sentiment.model.inputs import TextEncoder, join_outputs, predict_texts, split_outputs
from peru_sentiment.schema import ASPECT_POLARITIES, LABELS

MODEL_FILE = "model.keras"
TOKENIZER_FILE = "tokenizer.json"
SETTINGS_FILE = "inference.json"


class SentimentPredictor:
    """`bucket_lengths` are the padded lengths the model was trained with; the export bundle keeps them.

    `model` is the classifier as built (with aspect heads: two outputs, and `aspects` names them);
    :attr:`model` is its overall head alone, the single-output model that explanation and export use,
    and :attr:`network` the whole classifier.
    """

    def __init__(
        self,
        model: keras.Model,
        encoder: TextEncoder,
        bucket_lengths: Sequence[int],
        labels: tuple[str, ...] = LABELS,
        batch_size: int = 64,
        aspects: Sequence[str] = (),
    ):
        import tensorflow as tf

        from peru_sentiment.model.classifier import ASPECT_OUTPUT, OVERALL_OUTPUT, has_aspect_heads, head_model

        if bool(aspects) != has_aspect_heads(model):
            raise ConfigError(f"the model's aspect heads do not match the aspect names {list(aspects)}")
        self.network, self.encoder, self.labels, self.batch_size = model, encoder, labels, batch_size
        self.aspects = tuple(aspects)
        self.model = head_model(model, OVERALL_OUTPUT)
        self.bucket_lengths = list(bucket_lengths)
        overall = self.model
        self._probabilities = tf.function(
            lambda inputs: tf.nn.softmax(overall(inputs, training=False)), reduce_retracing=True
        )
        if self.aspects:

            def both(inputs):
                outputs = model(inputs, training=False)
                return tf.nn.softmax(outputs[OVERALL_OUTPUT]), tf.nn.softmax(outputs[ASPECT_OUTPUT])

            self._both = tf.function(both, reduce_retracing=True)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, one row per text, columns in ``labels`` order."""
        return predict_texts(
            lambda batch: self._probabilities(batch).numpy(), self.encoder, texts, self.batch_size, len(self.labels)
        )

    def predict(self, texts: list[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def predict_with_aspects(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (as :meth:`predict_proba`) and aspect probabilities, in one pass.

        The aspect probabilities have shape (texts, aspects, polarities): axis 1 in ``aspects`` order,
        axis 2 in ``ASPECT_POLARITIES`` order (absent, negative, neutral, positive).
        """
        if not self.aspects:
            raise ConfigError("this model has no aspect heads; train it with train.aspects.enabled: true")
        width = len(self.labels) + len(self.aspects) * len(ASPECT_POLARITIES)
        rows = predict_texts(
            lambda batch: join_outputs(*(output.numpy() for output in self._both(batch))),
            self.encoder,
            texts,
            self.batch_size,
            width,
        )
        return split_outputs(rows, len(self.labels), len(self.aspects))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # A new functional model over the same layers carries no optimizer state into the file.
        from peru_sentiment.model.classifier import ASPECT_OUTPUT, OVERALL_OUTPUT

        network = self.network
        outputs = (
            {name: network.get_layer(name).output for name in (OVERALL_OUTPUT, ASPECT_OUTPUT)}
            if self.aspects
            else network.outputs
        )
        keras.Model(network.inputs, outputs, name=network.name).save(directory / MODEL_FILE)
        self.encoder.tokenizer.save(str(directory / TOKENIZER_FILE))
        settings = {
            "labels": list(self.labels),
            "max_length": self.encoder.max_length,
            "prefix": self.encoder.prefix,
            "bucket_lengths": self.bucket_lengths,
            "aspects": list(self.aspects),
            "aspect_polarities": list(ASPECT_POLARITIES) if self.aspects else [],
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
        aspects = settings.get("aspects", [])  # models trained before the aspect heads have none
        return cls(model, encoder, settings["bucket_lengths"], tuple(settings["labels"]), batch_size, aspects)
