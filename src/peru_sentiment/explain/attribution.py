"""Integrated gradients (Sundararajan et al., 2017) on the input word embeddings.

Raw attention says where the model looks, not what moves its decision; the
gradient-based attribution answers the second question and satisfies
*completeness*: the attributions sum to the difference of the target logit
between the input and the baseline.

Baseline: the same sequence with the word embeddings of the explained pieces
replaced by zeros; position and segment embeddings, the padding mask, and the
embeddings of the pieces in ``keep`` (special tokens and the text prefix) stay.
Kept pieces therefore get exactly zero attribution, and the scores of the
explained pieces alone sum to the logit difference.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

from peru_sentiment.explain.attention import find_backbone, forward_from_word_embeddings


class Attribution(NamedTuple):
    scores: np.ndarray  # (length,) attribution per piece; zero on padding and kept pieces
    logit: float  # target logit of the input
    baseline_logit: float  # target logit of the baseline

    @property
    def logit_difference(self) -> float:
        """What the scores sum to, up to the Riemann error of the path integral."""
        return self.logit - self.baseline_logit


def path_integrated_gradients(classifier: keras.Model, token_ids, padding_mask, explained, target, steps: int):
    """TensorFlow ops only (so an export can trace them): one text as a batch of one.

    Returns (scores (length,), target logit of the input, target logit of the baseline);
    ``explained`` (1, length) bool marks the pieces whose embeddings the baseline zeroes.
    """
    import tensorflow as tf

    words = find_backbone(classifier).token_embedding(token_ids)
    baseline = words * tf.cast(tf.logical_not(explained), words.dtype)[:, :, None]
    alphas = tf.reshape(tf.linspace(0.0, 1.0, steps + 1), (-1, 1, 1))
    path = baseline + alphas * (words - baseline)
    batch_ids, batch_mask = tf.repeat(token_ids, steps + 1, axis=0), tf.repeat(padding_mask, steps + 1, axis=0)
    with tf.GradientTape() as tape:
        tape.watch(path)
        logits = tf.gather(forward_from_word_embeddings(classifier, path, batch_ids, batch_mask)[0], target, axis=1)
    gradients = tape.gradient(logits, path)
    average = tf.reduce_mean(gradients[:-1] + gradients[1:], axis=0) / 2  # trapezoid rule
    scores = tf.reduce_sum(average * (words - baseline)[0], axis=-1)
    return scores, logits[-1], logits[0]


def integrated_gradients(
    classifier: keras.Model,
    token_ids: np.ndarray,
    padding_mask: np.ndarray,
    target: int,
    steps: int = 16,
    keep: np.ndarray | None = None,
) -> Attribution:
    """Per-piece integrated gradients of logit `target` for one text (1-D ``token_ids`` and ``padding_mask``).

    ``steps`` trapezoid intervals along the straight path from the baseline;
    ``keep`` (bool, per piece) marks pieces whose embeddings the baseline keeps.
    """
    token_ids = np.asarray(token_ids, dtype=np.int32)[None]
    padding_mask = np.asarray(padding_mask, dtype=np.int32)[None]
    explained = padding_mask.astype(bool) & ~(np.zeros_like(padding_mask, bool) if keep is None else keep[None])
    scores, logit, baseline_logit = path_integrated_gradients(
        classifier, token_ids, padding_mask, explained, target, steps
    )
    return Attribution(scores=np.asarray(scores), logit=float(logit), baseline_logit=float(baseline_logit))
