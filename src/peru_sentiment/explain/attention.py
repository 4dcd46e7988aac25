"""Attention of a trained classifier: per layer and head, and rolled out over the layers.

The KerasHub ``BertBackbone`` hides its attention scores; :func:`attention_model`
rebuilds the classifier's forward pass from the same layer objects (so the same
weights), asking every transformer layer for its scores.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from peru_sentiment.model.classifier import FirstToken, MaskedMeanPooling


def find_backbone(classifier: keras.Model):
    """The KerasHub BERT backbone inside a classifier built by ``build_classifier``."""
    import keras_hub

    for layer in classifier.layers:
        if isinstance(layer, keras_hub.models.BertBackbone):
            return layer
    raise ValueError(f"{classifier.name} holds no KerasHub BertBackbone")


def pooling_of(classifier: keras.Model) -> str:
    """``mean`` or ``cls``: how the classifier pools the sequence."""
    for layer in classifier.layers:
        if isinstance(layer, MaskedMeanPooling):
            return "mean"
        if isinstance(layer, FirstToken):
            return "cls"
    raise ValueError(f"{classifier.name} has no pooling layer from peru_sentiment.model.classifier")


class _WithAttentionScores(keras.layers.Layer):
    """A KerasHub transformer layer returning (output, attention scores), usable in a functional model."""

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_with_scores", **kwargs)
        self.layer = layer

    def call(self, x, padding_mask):
        return self.layer(x, padding_mask=padding_mask, return_attention_scores=True)

    def compute_output_spec(self, x, padding_mask):
        scores = (x.shape[0], self.layer.num_heads, x.shape[1], x.shape[1])
        return keras.KerasTensor(x.shape, x.dtype), keras.KerasTensor(scores, x.dtype)


def forward_from_word_embeddings(classifier: keras.Model, word_embeddings, token_ids, padding_mask) -> tuple:
    """(logits, attention (batch, layers, heads, length, length)) from the word-embedding output onwards.

    Shared by :func:`attention_model` and the integrated gradients, which
    interpolate the word embeddings; inference mode (dropout off).
    """
    backbone = find_backbone(classifier)
    positions = backbone.position_embedding(word_embeddings)
    segments = backbone.segment_embedding(ops.zeros_like(token_ids))
    x = backbone.embeddings_add((word_embeddings, positions, segments))
    x = backbone.embeddings_layer_norm(x)
    scores = []
    for layer in backbone.transformer_layers:
        x, layer_scores = _WithAttentionScores(layer)(x, padding_mask)
        scores.append(layer_scores)
    pooled = classifier.get_layer("mean_pooling")(x, padding_mask) if pooling_of(classifier) == "mean" else x[:, 0, :]
    logits = classifier.get_layer("logits")(pooled)  # head_dropout is the identity at inference
    return logits, ops.stack(scores, axis=1)


def attention_model(classifier: keras.Model) -> keras.Model:
    """A model sharing the classifier's weights: {token_ids, padding_mask} -> {logits, attention}.

    ``attention`` is (batch, layers, heads, length, length), softmax over the
    last axis: row ``q`` is how query position ``q`` spreads its attention
    over the key positions; padded keys get none.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
    words = find_backbone(classifier).token_embedding(token_ids)
    logits, attention = forward_from_word_embeddings(classifier, words, token_ids, padding_mask)
    return keras.Model(
        {"token_ids": token_ids, "padding_mask": padding_mask},
        {"logits": logits, "attention": attention},
        name="sentiment_attention",
    )


def attention_rollout(attention: np.ndarray, padding_mask) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) of one text or a batch.

    ``attention`` is (layers, heads, length, length) or with a leading batch
    axis; ``padding_mask`` (length,) or (batch, length). Each layer's heads are
    averaged, the residual connection added as the identity (0.5 A + 0.5 I),
    rows renormalised over the real tokens, and the layers multiplied from
    the bottom up. Row ``q`` of the result says how much each input token
    flows into position ``q`` at the top; padded rows and columns are zero.
    """
    attention = np.asarray(attention, dtype=np.float64)
    mask = np.asarray(padding_mask).astype(bool)
    single = attention.ndim == 4
    if single:
        attention, mask = attention[None], mask[None]
    length = attention.shape[-1]
    real = (mask[:, :, None] & mask[:, None, :]).astype(np.float64)  # (batch, length, length)
    rollout = np.broadcast_to(np.eye(length), real.shape) * real
    for layer in range(attention.shape[1]):
        mixed = (0.5 * attention[:, layer].mean(axis=1) + 0.5 * np.eye(length)) * real
        mixed /= np.maximum(mixed.sum(axis=-1, keepdims=True), 1e-12)
        rollout = mixed @ rollout
    return rollout[0] if single else rollout
