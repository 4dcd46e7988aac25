"""The bundle's fast CPU model: the ``serve`` graph in OpenVINO, run in bfloat16, gated on accuracy.

Chosen by measurement on the e5-small bundle (2 cores, AMX/AVX512-BF16 CPU, 512
validation texts, batches of 64 in length order): TensorFlow fp32 34.9 rows/s,
OpenVINO bf16 62.3 rows/s (no label flipped), OpenVINO fp32 ~23 rows/s, ONNX
Runtime on the tf2onnx graph 17.6 rows/s fp32 and 26.3 rows/s with dynamic int8
(5% of labels flipped). The model is stored in float32 (OpenVINO IR); the
precision is a compile-time hint, so a CPU without bf16 runs it in float32.

The export stage refuses a fast model whose validation macro-F1 differs from the
float32 SavedModel's by more than ``export.fast_max_f1_change`` or that changes
more than ``export.fast_max_flip_rate`` of the predicted labels (or, with aspect
heads, ``export.fast_max_aspect_flip_rate`` of the predicted aspect polarities:
the graph carries both heads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import f1_score

from peru_sentiment.errors import DataError
from peru_sentiment.model.inputs import TextEncoder, predict_texts, split_outputs
from peru_sentiment.schema import ASPECT_POLARITIES

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

FAST_MODEL_DIR = "openvino"
FAST_MODEL_FILE = "model.xml"
RUNTIMES = ("auto", "tensorflow", "fast")  # what a loader may ask for: fast when present, or one of them
# The outputs of the bundle's ``serve`` signature, in row order; the others only with aspect heads.
PROBABILITIES = "probabilities"
ASPECT_PROBABILITIES = "aspect_probabilities"
ASPECT_ATTENTION = "aspect_attention"
SERVE_OUTPUTS = (PROBABILITIES, ASPECT_PROBABILITIES, ASPECT_ATTENTION)
MODEL_INPUTS = ("token_ids", "padding_mask")


def serve_rows(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ``serve`` outputs as one row per text: class probabilities, then any aspect probabilities,
    then any aspect attention, each flattened (``inputs.join_outputs`` for the first two)."""
    arrays = [np.asarray(outputs[name], dtype=np.float32) for name in SERVE_OUTPUTS if name in outputs]
    return np.concatenate([array.reshape(len(array), -1) for array in arrays], axis=1)


def convert_saved_model(saved_model_dir: Path, out_dir: Path) -> Path:
    """Convert the SavedModel's ``serving_default`` signature to OpenVINO IR (float32 weights) in `out_dir`."""
    import openvino as ov
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))  # kept alive: the signature refers to its variables
    out_dir.mkdir(parents=True, exist_ok=True)
    converted = ov.convert_model(loaded.signatures["serving_default"])
    log.info("fast model: %d layer norms rewritten as MVN", fuse_layer_norms(converted))
    ov.save_model(converted, str(out_dir / FAST_MODEL_FILE), compress_to_fp16=False)
    return out_dir / FAST_MODEL_FILE


def fuse_layer_norms(model: ov.Model) -> int:
    """Rewrite each Keras layer norm in the converted `model` as OpenVINO's MVN op times gamma plus beta.

    Keras computes ``x * inv + (beta - mean * inv)`` with ``inv = gamma / sqrt(variance + eps)``, a form
    OpenVINO's own fusions do not recognise, so its CPU plugin ran about ten small operations per norm,
    with layout reorders between them. As one MVN kernel the e5-small call is ~1.2x faster (bf16, one
    thread, batches of 1 and 4 texts); in float32 the outputs agree within 2e-6. Returns the count.
    """
    import openvino.opset13 as ops

    def users(node) -> list:
        return [target.get_node() for target in node.output(0).get_target_inputs()]

    def only_user(node, kind: str):
        found = users(node)
        return found[0] if len(found) == 1 and found[0].get_type_name() == kind else None

    def other_input(node, known):
        """The input of a two-input `node` that is not the output `known`."""
        return next(value for value in node.input_values() if value != known)

    rewritten = 0
    for squared in [node for node in model.get_ordered_ops() if node.get_type_name() == "SquaredDifference"]:
        x, mean = squared.input_value(0), squared.input_value(1)
        if mean.get_node().get_type_name() != "ReduceMean" or mean.get_node().input_value(0) != x:
            continue
        variance = only_user(squared, "ReduceMean")
        plus_eps = variance and only_user(variance, "Add")
        rsqrt = plus_eps and only_user(plus_eps, "Power")
        inv = rsqrt and only_user(rsqrt, "Multiply")  # gamma / sqrt(variance + eps)
        if inv is None:
            continue
        gamma = other_input(inv, rsqrt.output(0))
        scaled = [user for user in users(inv) if x in user.input_values()]
        total = len(scaled) == 1 and only_user(scaled[0], "Add")  # x * inv + (beta - mean * inv)
        if not total:
            continue
        shift = other_input(total, scaled[0].output(0)).get_node()  # beta + (mean * -1) * inv
        eps, exponent = plus_eps.input_value(1).get_node(), rsqrt.input_value(1).get_node()
        if (
            shift.get_type_name() != "Add"
            or not _is_constant(eps)
            or not _is_constant(exponent, -0.5)
            or not _is_negated_mean_times(shift, mean, inv.output(0))
        ):
            continue
        beta = next(value for value in shift.input_values() if value.get_node().get_type_name() == "Constant")
        axes = mean.get_node().input_value(1)  # the axes the norm's mean is taken over
        normalized = ops.mvn(x, axes, True, float(eps.get_data().reshape(-1)[0]), "inside_sqrt")
        result = ops.add(ops.multiply(normalized, gamma), beta)
        result.set_friendly_name(total.get_friendly_name())
        total.output(0).replace(result.output(0))
        rewritten += 1
    model.validate_nodes_and_infer_types()
    return rewritten


def _is_negated_mean_times(shift: ov.Node, mean: ov.Output, inv: ov.Output) -> bool:
    """`shift` is ``constant + (mean * -1) * inv``, the beta term of a Keras layer norm."""
    values = shift.input_values()
    constants = [value for value in values if value.get_node().get_type_name() == "Constant"]
    products = [value.get_node() for value in values if value.get_node().get_type_name() == "Multiply"]
    if len(constants) != 1 or len(products) != 1 or inv not in products[0].input_values():
        return False
    negated = next(value for value in products[0].input_values() if value != inv).get_node()
    factors = negated.input_values()
    return (
        negated.get_type_name() == "Multiply"
        and mean in factors
        and any(_is_constant(value.get_node(), -1.0) for value in factors)
    )


def _is_constant(node: ov.Node, value: float | None = None) -> bool:
    """`node` is a one-element constant (equal to `value`, when given)."""
    if node.get_type_name() != "Constant" or node.get_data().size != 1:
        return False
    return value is None or float(node.get_data().reshape(-1)[0]) == value


class FastModel:
    """The OpenVINO model compiled for this CPU: a batch of token ids and masks in, probabilities out
    (``serve_rows``: the class probabilities, then the aspect probabilities of a model with aspect heads).

    Thread-safe: each calling thread gets its own inference requests. By default one batch at a
    time runs on all cores (``predict``); with `model_threads` that many batches run at once, each
    on `call_threads` threads (the server's, ``serve/gunicorn.conf.py``).

    `static_shapes` ((rows, pieces) pairs): each is also compiled for that fixed shape, and a batch
    that fits one is padded to the smallest that fits (extra rows repeat the first row, extra pieces
    are masked) and run there; other batches run on the model with dynamic shapes. Whenever the
    shape changes, the dynamic model re-plans its ~1,000 operations: on 2 cores (e5-small, bf16,
    one thread) that is ~8 ms per call, more than half the cost of a single short text, and a server
    sees a new shape on nearly every call. A fixed shape costs ~65 MB more memory each.
    """

    def __init__(
        self,
        model_dir: Path,
        precision: str,
        model_threads: int | None = None,
        static_shapes: Sequence[tuple[int, int]] = (),
        call_threads: int = 1,
    ):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": str(model_threads or 1)}
        if model_threads:
            # Several server workers each run their own model: OpenVINO's default pins a process's
            # inference threads to the first cores, so two one-thread workers shared one core
            # (16 clients, 2 cores: 55 predictions/s, 1.1 cores busy; unpinned: 101-118/s, 1.9 cores).
            # Each of the `model_threads` batches running at once may use `call_threads` threads.
            config["INFERENCE_NUM_THREADS"] = str(model_threads * call_threads)
            config["ENABLE_CPU_PINNING"] = "NO"
        self.precision = precision
        core = ov.Core()
        model = core.read_model(str(model_dir / FAST_MODEL_FILE))
        self.compiled = core.compile_model(model, "CPU", config)
        self.static = {}
        started = time.perf_counter()
        for rows, pieces in sorted(set(static_shapes), key=lambda shape: (shape[0] * shape[1], shape)):
            fixed = model.clone()
            fixed.reshape({name: [rows, pieces] for name in MODEL_INPUTS})
            self.static[(rows, pieces)] = core.compile_model(fixed, "CPU", config)
        if self.static:
            seconds = time.perf_counter() - started
            log.info("fast model compiled for %d fixed shapes in %.1f s", len(self.static), seconds)
        self._local = threading.local()

    def _request(self, shape: tuple[int, int] | None):
        """This thread's inference request for a fixed shape, or for the dynamic model (None)."""
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        if shape not in requests:
            compiled = self.compiled if shape is None else self.static[shape]
            requests[shape] = compiled.create_infer_request()
        return requests[shape]

    def fixed_shape_for(self, rows: int, pieces: int) -> tuple[int, int] | None:
        """The smallest fixed shape (least padding: the shapes are sorted by size) a batch fits in."""
        return next((shape for shape in self.static if shape[0] >= rows and shape[1] >= pieces), None)

    def outputs(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The ``serve`` signature's outputs by name (``probabilities``, and ``aspect_probabilities`` if any)."""
        inputs = {name: batch[name] for name in MODEL_INPUTS}
        rows, pieces = inputs["token_ids"].shape
        shape = self.fixed_shape_for(rows, pieces)
        if shape is not None:
            inputs = {
                name: np.pad(
                    np.concatenate([values, np.repeat(values[:1], shape[0] - rows, axis=0)]),
                    [(0, 0), (0, shape[1] - pieces)],
                )
                for name, values in inputs.items()
            }
        results = self._request(shape).infer(inputs)
        return {port.get_any_name(): np.array(value[:rows], dtype=np.float32) for port, value in results.items()}

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return serve_rows(self.outputs(batch))


def accuracy_gate(
    reference: Callable[[dict[str, np.ndarray]], np.ndarray],
    fast: Callable[[dict[str, np.ndarray]], np.ndarray],
    encoder: TextEncoder,
    *,
    texts: Sequence[str],
    true_labels: Sequence[str],
    labels: Sequence[str],
    bucket_lengths: Sequence[int],
    max_f1_change: float,
    max_flip_rate: float,
    batch_size: int = 64,
    aspects: int = 0,
    max_aspect_flip_rate: float = 0.0,
) -> dict:
    """Validation macro-F1 of both models and the share of changed labels; raises DataError past the limits.

    With `aspects` (the number of aspect heads) both batch functions return joined rows
    (``inputs.join_outputs``; columns past the aspect probabilities, the attention, are not gated)
    and the share of changed (text, aspect) polarities must stay within `max_aspect_flip_rate`.
    """
    if not texts:
        raise DataError("the fast-model accuracy gate needs validation texts; the validation split is empty")
    label_names = np.asarray(labels, dtype=object)
    width = len(labels) + aspects * len(ASPECT_POLARITIES)

    def predicted(batch_function) -> tuple[np.ndarray, np.ndarray | None]:
        rows = predict_texts(batch_function, encoder, list(texts), batch_size, width, bucket_lengths)[:, :width]
        if not aspects:
            return label_names[rows.argmax(axis=1)], None
        probabilities, aspect_probabilities = split_outputs(rows, len(labels), aspects)
        return label_names[probabilities.argmax(axis=1)], aspect_probabilities.argmax(axis=2)

    (reference_labels, reference_aspects), (fast_labels, fast_aspects) = predicted(reference), predicted(fast)
    scores = [
        float(f1_score(true_labels, predictions, labels=list(labels), average="macro", zero_division=0))
        for predictions in (reference_labels, fast_labels)
    ]
    result = {
        "validation_texts": len(texts),
        "macro_f1_float32": round(scores[0], 6),
        "macro_f1_fast": round(scores[1], 6),
        "macro_f1_change": round(scores[1] - scores[0], 6),
        "label_flip_rate": round(float((reference_labels != fast_labels).mean()), 6),
    }
    if aspects:
        result["aspect_flip_rate"] = round(float((reference_aspects != fast_aspects).mean()), 6)
    aspect_flips = result.get("aspect_flip_rate", 0.0)
    if (
        abs(result["macro_f1_change"]) > max_f1_change
        or result["label_flip_rate"] > max_flip_rate
        or aspect_flips > max_aspect_flip_rate
    ):
        raise DataError(
            f"the fast model is refused: validation macro-F1 {result['macro_f1_fast']:.4f} vs "
            f"{result['macro_f1_float32']:.4f} in float32 (limit ±{max_f1_change}), labels changed on "
            f"{result['label_flip_rate']:.2%} of {len(texts)} texts (limit {max_flip_rate:.0%}) and aspect "
            f"polarities on {aspect_flips:.2%} (limit {max_aspect_flip_rate:.0%}); "
            "set export.fast_runtime: none to ship the float32 SavedModel only"
        )
    log.info("fast model accepted: %s", result)
    return result
