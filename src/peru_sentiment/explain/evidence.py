"""Evidence words of the aspect heads: the words each aspect's attention reads.

Every aspect head pools the token vectors by its own attention
(``model.classifier.AspectAttention``), so the words it weighs most are the
words its polarity is read from. Weights are summed over each word's pieces and
shown for the words as written (``explain.tokens``). The report reads the
weights from the trained Keras model (:func:`aspect_attention`); the exported
bundle's ``serve`` graph returns the same weights, and the server and
``predict`` turn them into words with :func:`evidence_words`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from peru_sentiment.explain.tokens import align_words
from peru_sentiment.model.classifier import ASPECT_OUTPUT, aspect_head_inputs
from peru_sentiment.model.inputs import TextEncoder, pad_batch
from peru_sentiment.model.predictor import SentimentPredictor

EVIDENCE_WORDS = 3  # words shown per detected aspect


def aspect_attention(predictor: SentimentPredictor, texts: list[str]) -> list[np.ndarray]:
    """Per prepared text, its aspect heads' attention over its pieces: (aspects, pieces)."""
    if not predictor.aspects:
        raise ValueError("the model has no aspect heads: there is no aspect evidence to show")
    head = predictor.network.get_layer(ASPECT_OUTPUT)
    head_inputs = aspect_head_inputs(predictor.network)

    @tf.function(reduce_retracing=True)  # traced once for all the texts: 4x faster than eager calls
    def attention(batch):
        sequence, padding_mask = head_inputs(batch, training=False)
        return head.attention(sequence, padding_mask)

    return [
        np.asarray(attention(pad_batch([ids], predictor.encoder.pad_id)))[0] for ids in predictor.encoder.encode(texts)
    ]


def evidence_words(
    encoder: TextEncoder, text: str, attention: np.ndarray, aspects: Sequence[str], top_words: int = EVIDENCE_WORDS
) -> dict[str, list[str]]:
    """Per aspect, the `top_words` words of the prepared `text` its attention (aspects, pieces) weighs most."""
    alignment = align_words(encoder.tokenizer.encode(encoder.prefix + text), text, encoder.prefix)
    return {aspect: alignment.top(weights, top_words) for aspect, weights in zip(aspects, attention, strict=True)}


def aspect_evidence(
    predictor: SentimentPredictor, texts: list[str], top_words: int = EVIDENCE_WORDS
) -> list[dict[str, list[str]]]:
    """Per prepared text, per aspect, the `top_words` words its head attends to most, most attended first."""
    return [
        evidence_words(predictor.encoder, text, weights, predictor.aspects, top_words)
        for text, weights in zip(texts, aspect_attention(predictor, texts), strict=True)
    ]
