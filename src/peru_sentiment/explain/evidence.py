"""Evidence words of the aspect heads: the words each aspect's attention reads.

Every aspect head pools the token vectors by its own attention
(``model.classifier.AspectAttention``), so the words it weighs most are the
words its polarity is read from. Weights are summed over each word's pieces and
shown for the words as written (``explain.tokens``).
"""

from __future__ import annotations

import keras
import numpy as np

from peru_sentiment.explain.tokens import align_words
from peru_sentiment.model.classifier import ASPECT_OUTPUT
from peru_sentiment.model.inputs import pad_batch
from peru_sentiment.model.predictor import SentimentPredictor


def aspect_evidence(predictor: SentimentPredictor, texts: list[str], top_words: int = 3) -> list[dict[str, list[str]]]:
    """Per prepared text, per aspect, the `top_words` words its head attends to most, most attended first."""
    if not predictor.aspects:
        raise ValueError("the model has no aspect heads: there is no aspect evidence to show")
    head = predictor.network.get_layer(ASPECT_OUTPUT)
    head_inputs = keras.Model(predictor.network.inputs, head.input)  # built once for all the texts
    encoder = predictor.encoder
    evidence = []
    for text in texts:
        encoding = encoder.tokenizer.encode(encoder.prefix + text)
        alignment = align_words(encoding, text, encoder.prefix)
        sequence, padding_mask = head_inputs(pad_batch([encoding.ids], encoder.pad_id), training=False)
        weights = np.asarray(head.attention(sequence, padding_mask))[0]  # (aspects, pieces)
        evidence.append(
            {
                aspect: [
                    alignment.words[i] for i in np.argsort(-alignment.merge(piece_weights), kind="stable")[:top_words]
                ]
                for aspect, piece_weights in zip(predictor.aspects, weights, strict=True)
            }
        )
    return evidence
