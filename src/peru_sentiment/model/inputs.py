"""From text to model inputs: fast tokenization outside the graph, length-bucketed batches.

Feedback is short (median ~16 tokens) with a long tail, so padding every batch
to the maximum length wastes most of the compute. Batches are drawn from
length buckets and padded only to their bucket, and inference sorts texts by
length before batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from tokenizers import Tokenizer

from peru_sentiment.schema import ASPECT_POLARITIES, SYNTHETIC_SOURCE, aspect_column

PAD_CANDIDATES = ("<pad>", "[PAD]")


class TextEncoder:
    """Token ids for texts, truncated to ``max_length`` (special tokens included), never padded."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, prefix: str = ""):
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.prefix = prefix
        self.pad_id = next(
            (tokenizer.token_to_id(token) for token in PAD_CANDIDATES if tokenizer.token_to_id(token) is not None), 0
        )

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch([self.prefix + text for text in texts])]


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> dict[str, np.ndarray]:
    """Right-pad to the longest sequence (or `length`); ``padding_mask`` is 1 on real tokens."""
    width = length or max(len(sequence) for sequence in ids)
    token_ids = np.full((len(ids), width), pad_id, dtype=np.int32)
    mask = np.zeros((len(ids), width), dtype=np.int32)
    for row, sequence in enumerate(ids):
        token_ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return {"token_ids": token_ids, "padding_mask": mask}


def bucket_lengths_for(max_length: int, bucket_lengths: Sequence[int]) -> list[int]:
    """The padded lengths in use: the configured ones below `max_length`, then `max_length`."""
    return sorted({length for length in bucket_lengths if length < max_length} | {max_length})


def aspect_targets(frame: pd.DataFrame, aspects: Sequence[str]) -> np.ndarray:
    """Per row and aspect the polarity class id (``ASPECT_POLARITIES``), -1 on rows without aspect truth.

    Generated rows carry the truth (``aspect_<name>``: -1, 0, 1, or missing when the text does not
    mention the aspect); imported real rows, and frames without the columns, have none: -1, which
    keeps them out of the aspect loss and the aspect metrics.
    """
    targets = np.full((len(frame), len(aspects)), -1, dtype=np.int64)
    columns = [aspect_column(aspect) for aspect in aspects]
    if not all(column in frame for column in columns):
        return targets
    has_truth = (frame["source"] == SYNTHETIC_SOURCE).to_numpy() if "source" in frame else np.ones(len(frame), bool)
    polarities = frame[columns].astype("Float64").to_numpy(dtype=float, na_value=np.nan)[has_truth]
    if not np.isin(polarities[~np.isnan(polarities)], (-1, 0, 1)).all():
        raise ValueError(f"aspect truth columns {columns} must hold -1, 0, 1 or nothing")
    targets[has_truth] = np.where(np.isnan(polarities), 0, polarities + 2).astype(np.int64)
    return targets


def make_dataset(
    ids: Sequence[Sequence[int]],
    labels: np.ndarray,
    *,
    batch_size: int,
    bucket_lengths: Sequence[int],
    pad_id: int,
    num_classes: int,
    shuffle_seed: int | None = None,
    pad_to_bucket: bool = False,
    drop_remainder: bool = False,
    sample_weights: np.ndarray | None = None,
    aspect_ids: np.ndarray | None = None,
):
    """A cached ``tf.data`` pipeline of ({token_ids, padding_mask}, one-hot label[, sample weight]) batches.

    With `aspect_ids` (rows, aspects: ``aspect_targets``) the targets are a dict of the classifier's two
    outputs, ``logits`` and ``aspects`` (one-hot over ``ASPECT_POLARITIES``, all zero on rows without
    truth, so they add no aspect loss), and the sample weights weigh only the overall loss.

    Texts are grouped by length into buckets (``bucket_lengths`` are the padded
    lengths; the last must be at least the longest text). With ``shuffle_seed``
    the order is reshuffled every epoch. ``pad_to_bucket`` pads every batch to
    its bucket's length, so XLA sees a handful of shapes; otherwise a batch is
    padded to its own longest text. One bucket of length ``max_length`` with
    ``pad_to_bucket`` is the naive fixed-length padding.
    """
    import tensorflow as tf

    lengths = sorted(bucket_lengths)
    if max(len(sequence) for sequence in ids) > lengths[-1]:
        raise ValueError(f"a text has more tokens than the largest bucket ({lengths[-1]}); truncate first")
    from peru_sentiment.model.classifier import ASPECT_OUTPUT, OVERALL_OUTPUT

    targets = np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]
    signature = (tf.TensorSpec([None], tf.int32), tf.TensorSpec([num_classes], tf.float32))
    padded_shapes, padding_values = ([None], [num_classes]), (-1, 0.0)
    columns = [targets]
    if aspect_ids is not None:
        aspects, polarities = np.shape(aspect_ids)[1], len(ASPECT_POLARITIES)
        one_hot = np.concatenate([np.eye(polarities, dtype=np.float32), np.zeros((1, polarities), np.float32)])
        columns.append(one_hot[np.asarray(aspect_ids, dtype=np.int64)])  # id -1 picks the all-zero row
        signature += (tf.TensorSpec([aspects, polarities], tf.float32),)
        padded_shapes, padding_values = (*padded_shapes, [aspects, polarities]), (*padding_values, 0.0)
    weights = None if sample_weights is None else np.asarray(sample_weights, dtype=np.float32)
    if weights is not None:
        columns.append(weights)
        signature += (tf.TensorSpec([], tf.float32),)
        padded_shapes, padding_values = (*padded_shapes, []), (*padding_values, 0.0)

    def examples():
        for index, sequence in enumerate(ids):
            yield (np.asarray(sequence, dtype=np.int32), *(column[index] for column in columns))

    dataset = tf.data.Dataset.from_generator(examples, output_signature=signature).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(ids), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda tokens, *_: tf.shape(tokens)[0],
        bucket_boundaries=[length + 1 for length in lengths],
        bucket_batch_sizes=[batch_size] * (len(lengths) + 1),
        padded_shapes=padded_shapes,
        padding_values=padding_values,
        pad_to_bucket_boundary=pad_to_bucket,
        drop_remainder=drop_remainder,
    )

    # Known batch count: progress bars show the total and Keras does not warn at the end of an epoch.
    buckets = np.searchsorted(lengths, [len(sequence) for sequence in ids])
    per_bucket = np.bincount(buckets, minlength=len(lengths))
    batches = per_bucket // batch_size if drop_remainder else -(-per_bucket // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(int(batches.sum())))

    def to_inputs(tokens, target, *rest):
        mask = tokens >= 0
        inputs = {"token_ids": tf.where(mask, tokens, pad_id), "padding_mask": tf.cast(mask, tf.int32)}
        if aspect_ids is None:
            return (inputs, target, *rest)
        aspect_target, *weight = rest
        outputs = {OVERALL_OUTPUT: target, ASPECT_OUTPUT: aspect_target}
        if not weight:
            return inputs, outputs
        return inputs, outputs, {OVERALL_OUTPUT: weight[0], ASPECT_OUTPUT: tf.ones_like(weight[0])}

    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def join_outputs(probabilities: np.ndarray, aspect_probabilities: np.ndarray) -> np.ndarray:
    """One row per text: the class probabilities, then the aspect probabilities flattened (aspect-major).

    Batch functions return this so the one inference path (``predict_texts``) carries both heads.
    """
    return np.concatenate([probabilities, aspect_probabilities.reshape(len(aspect_probabilities), -1)], axis=1)


def split_outputs(rows: np.ndarray, labels: int, aspects: int) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, aspect probabilities of shape (texts, aspects, polarities)) of joined rows."""
    return rows[:, :labels], rows[:, labels:].reshape(len(rows), aspects, len(ASPECT_POLARITIES))


def predict_in_length_order(
    predict: Callable[[dict[str, np.ndarray]], np.ndarray],
    ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    bucket_lengths: Sequence[int] = (),
) -> np.ndarray:
    """Run `predict` on batches of similar length and return its outputs in the original order.

    Texts are sorted by length and cut into batches of at most `batch_size`; with
    `bucket_lengths` a batch also never spans two buckets, so a few long texts do
    not make a whole batch pad to their length (at 16 typical feedback texts this
    halves the padding).
    """
    lengths = np.array([len(sequence) for sequence in ids])
    order = np.argsort(lengths, kind="stable")
    buckets = np.searchsorted(np.asarray(sorted(bucket_lengths)), lengths[order]) if len(bucket_lengths) else None
    outputs = None
    start = 0
    while start < len(order):
        stop = min(start + batch_size, len(order))
        if buckets is not None:
            stop = start + int(np.searchsorted(buckets[start:stop], buckets[start], side="right"))
        chunk = order[start:stop]
        result = np.asarray(predict(pad_batch([ids[i] for i in chunk], pad_id)))
        if outputs is None:
            outputs = np.zeros((len(ids), *result.shape[1:]), dtype=result.dtype)
        outputs[chunk] = result
        start = stop
    return outputs if outputs is not None else np.zeros((0,))


def predict_texts(
    probabilities: Callable[[dict[str, np.ndarray]], np.ndarray],
    encoder: TextEncoder,
    texts: Sequence[str],
    batch_size: int,
    output_shape: int | tuple[int, ...],
    bucket_lengths: Sequence[int] = (),
) -> np.ndarray:
    """Class probabilities of prepared texts, one row per text, through any batch function.

    The one inference path: the trained Keras model, the exported SavedModel and the server all call it.
    `output_shape` is the shape of one text's output (the number of classes, or (aspects, polarities)).
    """
    if not texts:
        return np.zeros((0, *np.atleast_1d(output_shape)), dtype=np.float32)
    return predict_in_length_order(probabilities, encoder.encode(texts), encoder.pad_id, batch_size, bucket_lengths)
