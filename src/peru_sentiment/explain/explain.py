"""One text, explained: prediction, attention per layer and head, rollout and integrated gradients per word.

The payload of ``POST /v1/explain`` and of the report's examples. The text must
already be prepared (``preprocess.prepare_text``: normalised, personal data
masked), as for :meth:`SentimentPredictor.predict_proba`.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from peru_sentiment.explain.attention import attention_model, attention_rollout, pooling_of
from peru_sentiment.explain.attribution import integrated_gradients
from peru_sentiment.explain.tokens import align_words
from peru_sentiment.model.inputs import pad_batch
from peru_sentiment.model.predictor import SentimentPredictor

DECIMALS = 4  # attention weights are rounded to keep the payload small


@functools.lru_cache(maxsize=4)
def _attention_model(classifier: keras.Model) -> keras.Model:
    return attention_model(classifier)


def explain_text(predictor: SentimentPredictor, text: str, steps: int = 16) -> dict:
    """A JSON-serialisable explanation of the predicted label of `text`.

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
    encoder = predictor.encoder
    encoding = encoder.tokenizer.encode(encoder.prefix + text)
    alignment = align_words(encoding, text, encoder.prefix)
    inputs = pad_batch([encoding.ids], encoder.pad_id)
    outputs = _attention_model(predictor.model)(inputs, training=False)
    logits = np.asarray(outputs["logits"])[0]
    attention = np.asarray(outputs["attention"])[0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    target = int(probabilities.argmax())

    mask = inputs["padding_mask"][0]
    rollout = attention_rollout(attention, mask)
    flow = rollout[mask.astype(bool)].mean(axis=0) if pooling_of(predictor.model) == "mean" else rollout[0]
    attribution = integrated_gradients(
        predictor.model, inputs["token_ids"][0], mask, target, steps, keep=alignment.piece_word < 0
    )
    return {
        "label": predictor.labels[target],
        "probabilities": {label: float(p) for label, p in zip(predictor.labels, probabilities, strict=True)},
        "words": alignment.words,
        "rollout": [float(v) for v in alignment.merge(flow)],
        "integrated_gradients": [float(v) for v in alignment.merge(attribution.scores)],
        "logit_difference": attribution.logit_difference,
        "truncated": alignment.truncated,
        "tokens": encoding.tokens,
        "token_words": alignment.piece_word.tolist(),
        "attention": np.round(attention, DECIMALS).tolist(),
    }
