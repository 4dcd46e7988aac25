"""One text, explained: prediction, attention per layer and head, rollout and integrated gradients per word.

The payload of ``POST /v1/explain`` and of the report's examples. The text must
already be prepared (``text.prepare.prepare_text``: normalised, personal data
masked), as for :meth:`SentimentPredictor.predict_proba`.

The model-side work is one TensorFlow function (:func:`explanation_function`):
the report runs it on the trained Keras model, and the export saves it as the
SavedModel's ``explain`` endpoint, so the server explains exactly as the report does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import keras
import numpy as np

from peru_sentiment.explain.attention import attention_rollout, find_backbone, forward_from_word_embeddings, pooling_of
from peru_sentiment.explain.attribution import path_integrated_gradients
from peru_sentiment.explain.tokens import align_words
from peru_sentiment.model.inputs import TextEncoder, pad_batch
from peru_sentiment.model.predictor import SentimentPredictor

DECIMALS = 4  # attention weights are rounded to keep the payload small


def explanation_function(classifier: keras.Model, steps: int) -> Callable:
    """``f(inputs, keep)`` in TensorFlow ops for one text (batch of one): the model side of an explanation.

    ``inputs`` holds ``token_ids`` and ``padding_mask`` (1, length); ``keep`` (1, length)
    bool marks the pieces that stay in the integrated-gradients baseline (special
    tokens, the text prefix). Returns ``logits`` (classes,), ``attention`` (layers,
    heads, length, length), ``scores`` (length,) for the predicted label, and that
    label's ``logit`` and ``baseline_logit``.
    """
    import tensorflow as tf

    def explain(inputs, keep):
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        words = find_backbone(classifier).token_embedding(token_ids)
        logits, attention = forward_from_word_embeddings(classifier, words, token_ids, padding_mask)
        target = tf.argmax(logits[0], output_type=tf.int32)
        explained = tf.logical_and(tf.cast(padding_mask, tf.bool), tf.logical_not(keep))
        scores, logit, baseline_logit = path_integrated_gradients(
            classifier, token_ids, padding_mask, explained, target, steps
        )
        return {
            "logits": logits[0],
            "attention": attention[0],
            "scores": scores,
            "logit": logit,
            "baseline_logit": baseline_logit,
        }

    return explain


def explanation_signature() -> list:
    """The input signature of :func:`explanation_function`, for tracing and export."""
    import tensorflow as tf

    return [
        {
            "token_ids": tf.TensorSpec([1, None], tf.int32, name="token_ids"),
            "padding_mask": tf.TensorSpec([1, None], tf.int32, name="padding_mask"),
        },
        tf.TensorSpec([1, None], tf.bool, name="keep"),
    ]


@functools.lru_cache(maxsize=4)
def _traced(classifier: keras.Model, steps: int) -> Callable:
    import tensorflow as tf

    return tf.function(explanation_function(classifier, steps), input_signature=explanation_signature())


def explain_text(predictor: SentimentPredictor, text: str, steps: int = 16) -> dict:
    """Explain the trained Keras model's prediction of `text` (see :func:`explain_encoded` for the payload)."""
    model = predictor.model
    return explain_encoded(_traced(model, steps), predictor.encoder, predictor.labels, pooling_of(model), text)


def explain_encoded(explain: Callable, encoder: TextEncoder, labels: Sequence[str], pooling: str, text: str) -> dict:
    """A JSON-serialisable explanation of the predicted label of `text`, through an :func:`explanation_function`.

    - ``label``, ``probabilities`` (per label);
    - ``words``: the text's words as written; ``rollout`` and
      ``integrated_gradients``: one score per word (sums over its pieces).
      Rollout is the share of the pooled representation that flows from the
      word (non-negative); integrated gradients is the word's signed
      contribution to the predicted label's logit, against a baseline without
      the text's words (see :mod:`peru_sentiment.explain.attribution`); the
      word scores sum to ``logit_difference``;
    - ``tokens``: the model's pieces, special tokens included, ``token_words``
      the word index of each (-1: special token or text prefix), and
      ``attention``: [layer][head][query][key] weights over these pieces;
    - ``truncated``: the text was longer than the model's input.
    """
    encoding = encoder.tokenizer.encode(encoder.prefix + text)
    alignment = align_words(encoding, text, encoder.prefix)
    inputs = pad_batch([encoding.ids], encoder.pad_id)
    outputs = {name: np.asarray(value) for name, value in explain(inputs, (alignment.piece_word < 0)[None]).items()}
    logits = outputs["logits"]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()

    mask = inputs["padding_mask"][0]
    rollout = attention_rollout(outputs["attention"], mask)
    flow = rollout[mask.astype(bool)].mean(axis=0) if pooling == "mean" else rollout[0]
    return {
        "label": labels[int(probabilities.argmax())],
        "probabilities": {label: float(p) for label, p in zip(labels, probabilities, strict=True)},
        "words": alignment.words,
        "rollout": [float(v) for v in alignment.merge(flow)],
        "integrated_gradients": [float(v) for v in alignment.merge(outputs["scores"])],
        "logit_difference": float(outputs["logit"] - outputs["baseline_logit"]),
        "truncated": alignment.truncated,
        "tokens": encoding.tokens,
        "token_words": alignment.piece_word.tolist(),
        "attention": np.round(outputs["attention"], DECIMALS).tolist(),
    }
