"""The export bundle: everything a serving process needs, written once and verified on every load.

``models/export/<version>/`` holds

- ``saved_model/``: a TF SavedModel with the endpoints ``serve`` (token ids and padding
  mask -> class probabilities, and with aspect heads the aspect probabilities and each
  head's attention over the pieces, the evidence words' weights) and
  ``explain`` (one text -> attention per layer and head, integrated gradients of the
  overall label; ``explain.explanation_function``); no Keras, KerasHub
  or training code is needed to run it;
- ``tokenizer.json``: the Rust tokenizer; ``model.json``: the label order, the aspect
  names and polarities, the length the attention is padded to (``evidence_length``), the
  pooling, the backbone checkpoint, the integrated-gradients steps;
- ``preprocessing.json``: what is done to a raw text before tokenization (the
  package's ``prepare_text``), the text prefix, the maximum length, language detection;
- ``training_distribution.json``: the label shares of the training split, the
  reference the monitoring compares live predictions to;
- ``openvino/``: the same ``serve`` graph for the fast CPU runtime, when the export
  makes one and it passes the accuracy gate (``export.fast_runtime``);
- copies of the evaluation metrics and the model card, when given;
- ``manifest.json``: the sha256 and size of every other file, and the fast model's
  precision and accuracy-gate figures (``fast_model``).

Predictions use the fast model when the bundle has one (and OpenVINO is installed),
the SavedModel otherwise; explanations always use the SavedModel.

Loading checks the manifest first and refuses a bundle with a missing, extra
or altered file. Nothing in the bundle is a pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tokenizers import Tokenizer

from peru_sentiment.config import Params, PreprocessParams
from peru_sentiment.errors import ConfigError, DataError
from peru_sentiment.explain.attention import pooling_of
from peru_sentiment.explain.evidence import aspect_attention, evidence_words
from peru_sentiment.explain.explain import explain_encoded, explanation_function, explanation_signature
from peru_sentiment.export.fast_runtime import (
    ASPECT_ATTENTION,
    ASPECT_PROBABILITIES,
    FAST_MODEL_DIR,
    PROBABILITIES,
    RUNTIMES,
    FastModel,
    accuracy_gate,
    convert_saved_model,
    serve_rows,
)
from peru_sentiment.metadata import write_json
from peru_sentiment.model.classifier import ASPECT_OUTPUT, OVERALL_OUTPUT, head_model
from peru_sentiment.model.inputs import TextEncoder, bucket_lengths_for, join_outputs, predict_texts, split_outputs
from peru_sentiment.model.predictor import SentimentPredictor
from peru_sentiment.paths import PRETRAINED
from peru_sentiment.schema import ASPECT_POLARITIES
from peru_sentiment.text.prepare import inference_settings

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SAVED_MODEL_DIR = "saved_model"
TOKENIZER_FILE = "tokenizer.json"
MODEL_FILE = "model.json"
PREPROCESSING_FILE = "preprocessing.json"
DISTRIBUTION_FILE = "training_distribution.json"
LATEST_FILE = "LATEST"
REQUIRED_FILES = (TOKENIZER_FILE, MODEL_FILE, PREPROCESSING_FILE, DISTRIBUTION_FILE)


class BundleError(ConfigError):
    """The export bundle is missing, partial or corrupt."""


def weights_digest(weights: list[np.ndarray]) -> str:
    """sha256 over the model's weights: the same trained model always gets the same version."""
    digest = hashlib.sha256()
    for array in weights:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def preprocessing_settings(params: PreprocessParams, encoder: TextEncoder, bucket_lengths: list[int]) -> dict:
    """The bundle's ``preprocessing.json``: raw text to model input, as the serving side must repeat it."""
    from importlib.metadata import version

    return {
        **inference_settings(params),
        "text_prefix": encoder.prefix,
        "max_length": encoder.max_length,
        "truncation": f"tokens after the first {encoder.max_length} are not read",
        "bucket_lengths": bucket_lengths_for(encoder.max_length, bucket_lengths),
        "package_version": version("peru_sentiment"),
    }


def write_saved_model(
    model, directory: Path, explain_steps: int, aspects: bool = False, evidence_length: int = 0
) -> None:
    """Write the classifier as a SavedModel with the endpoints ``serve`` and ``explain``.

    With `aspects` the model has aspect heads and ``serve`` also returns ``aspect_probabilities``
    (batch, aspects, polarities) and, with `evidence_length` (the longest input, in pieces),
    ``aspect_attention``: each head's attention over the pieces, (batch, aspects, evidence_length),
    zero past a text's pieces. ``explain`` explains the overall label.

    A plain ``tf.Module`` rather than ``keras.export.ExportArchive``: with Keras 3.15 the
    archive stores every variable twice (a 0.9 GB bundle for e5-small instead of 0.45 GB).
    """
    import keras
    import tensorflow as tf

    inputs = {
        "token_ids": tf.TensorSpec([None, None], tf.int32, name="token_ids"),
        "padding_mask": tf.TensorSpec([None, None], tf.int32, name="padding_mask"),
    }

    if aspects and evidence_length:
        head = model.get_layer(ASPECT_OUTPUT)
        # one pass through the encoder: both heads' logits and the aspect head's inputs, to read its attention
        with_head_inputs = keras.Model(model.inputs, [model.get_layer(OVERALL_OUTPUT).output, head.output, *head.input])

    def serve(batch):
        if not aspects:
            return {PROBABILITIES: tf.nn.softmax(model(batch, training=False))}
        if not evidence_length:
            outputs = model(batch, training=False)
            return {
                PROBABILITIES: tf.nn.softmax(outputs[OVERALL_OUTPUT]),
                ASPECT_PROBABILITIES: tf.nn.softmax(outputs[ASPECT_OUTPUT]),
            }
        logits, aspect_logits, sequence, padding_mask = with_head_inputs(batch, training=False)
        attention = head.attention(sequence, padding_mask)
        return {
            PROBABILITIES: tf.nn.softmax(logits),
            ASPECT_PROBABILITIES: tf.nn.softmax(aspect_logits),
            ASPECT_ATTENTION: tf.pad(attention, [[0, 0], [0, 0], [0, evidence_length - tf.shape(attention)[2]]]),
        }

    module = tf.Module()
    module.model = model
    module.serve = tf.function(serve, input_signature=[inputs])
    overall = head_model(model, OVERALL_OUTPUT)
    module.explain = tf.function(explanation_function(overall, explain_steps), input_signature=explanation_signature())
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


def write_bundle(
    model,
    tokenizer: Tokenizer,
    directory: Path,
    *,
    labels: tuple[str, ...],
    checkpoint: str,
    explain_steps: int,
    preprocessing: Mapping,
    training_distribution: Mapping[str, float],
    aspects: Sequence[str] = (),
    extra_files: Mapping[str, Path] | None = None,
    fast_model_check: Callable[[Path, Path], dict] | None = None,
) -> Path:
    """Write a bundle into `directory` (replaced if present) and return it.

    `model` is the classifier as built: with `aspects` (the names of its aspect heads) both outputs;
    its heads' attention is then padded to ``preprocessing["max_length"]`` pieces.

    The files go to a temporary sibling first, and the manifest is written last,
    so an interrupted export never leaves a bundle that verifies. With
    `fast_model_check` the SavedModel is also converted for the fast runtime and the
    check (SavedModel dir, fast model dir -> manifest figures) must accept it; a refusal
    leaves no bundle.
    """
    staging = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    evidence_length = int(preprocessing["max_length"]) if aspects else 0
    try:
        fast_model = _write_models(model, staging, explain_steps, bool(aspects), evidence_length, fast_model_check)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    tokenizer.save(str(staging / TOKENIZER_FILE))
    write_json(
        staging / MODEL_FILE,
        {
            "labels": list(labels),
            "aspects": list(aspects),
            "aspect_polarities": list(ASPECT_POLARITIES) if aspects else [],
            "evidence_length": evidence_length,
            "pooling": pooling_of(head_model(model, OVERALL_OUTPUT)),
            "checkpoint": checkpoint,
            "explain_steps": explain_steps,
        },
    )
    write_json(staging / PREPROCESSING_FILE, dict(preprocessing))
    write_json(staging / DISTRIBUTION_FILE, {label: float(training_distribution.get(label, 0.0)) for label in labels})
    for name, source in (extra_files or {}).items():
        shutil.copyfile(source, staging / name)
    files = manifest_files(staging)
    manifest = {"format": FORMAT_VERSION, "version": directory.name, "files": files}
    if fast_model is not None:
        manifest["fast_model"] = fast_model
    write_json(staging / MANIFEST_FILE, manifest)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    (directory.parent / LATEST_FILE).write_text(directory.name + "\n")
    log.info("exported %d files (%.1f MB) to %s", len(files), sum(f["bytes"] for f in files.values()) / 1e6, directory)
    return directory


def manifest_files(directory: Path) -> dict[str, dict]:
    """The manifest's record of the files in a bundle `directory` (all but the manifest): sha256 and size."""
    return {
        path.relative_to(directory).as_posix(): {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }


def _write_models(
    model, staging: Path, explain_steps: int, aspects: bool, evidence_length: int, fast_model_check
) -> dict | None:
    write_saved_model(model, staging / SAVED_MODEL_DIR, explain_steps, aspects, evidence_length)
    if fast_model_check is None:
        return None
    convert_saved_model(staging / SAVED_MODEL_DIR, staging / FAST_MODEL_DIR)
    return fast_model_check(staging / SAVED_MODEL_DIR, staging / FAST_MODEL_DIR)


def resolve_bundle(path: Path) -> Path:
    """A bundle directory, or the one named in ``LATEST`` when `path` is the export root."""
    if (path / LATEST_FILE).is_file() and not (path / MANIFEST_FILE).exists():
        return path / (path / LATEST_FILE).read_text().strip()
    return path


def verify_bundle(directory: Path) -> dict:
    """The manifest, after checking every file against it; raises BundleError on any difference."""
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(
            f"{directory} is not an export bundle (no {MANIFEST_FILE}); it may be partial. "
            "Run `dvc repro export` and point to models/export/<version>"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{manifest_path} is not a valid manifest; export the model again") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise BundleError(
            f"{directory} has bundle format {manifest.get('format')}; this version reads {FORMAT_VERSION}, export again"
        )
    present = {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()} - {
        MANIFEST_FILE
    }
    problems = [f"missing {name}" for name in sorted(set(listed) - present)]
    problems += [f"unexpected {name}" for name in sorted(present - set(listed))]
    for name in sorted(set(listed) & present):
        path = directory / name
        if path.stat().st_size != listed[name]["bytes"] or file_sha256(path) != listed[name]["sha256"]:
            problems.append(f"altered {name}")
    problems += [f"missing {name}" for name in REQUIRED_FILES if name not in listed]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BundleError(f"{directory} does not match its manifest ({shown}); export the model again")
    return manifest


@dataclass
class ModelBundle:
    """A verified bundle, loaded: prepared texts in, class (and aspect) probabilities or an explanation out."""

    directory: Path
    version: str
    labels: tuple[str, ...]
    pooling: str
    checkpoint: str
    preprocessing: dict
    training_distribution: dict[str, float]
    encoder: TextEncoder
    batch_size: int = 64
    fast_model: FastModel | None = None  # predictions go through it when present
    aspects: tuple[str, ...] = ()  # the aspect heads' names; () for a model without them
    evidence_length: int = 0  # pieces of the heads' attention in a row; 0: the bundle predates evidence words
    _saved_model: object = None
    _saved_model_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def runtime(self) -> str:
        return f"openvino-{self.fast_model.precision}" if self.fast_model is not None else "tensorflow-fp32"

    @property
    def endpoints(self):
        """The loaded SavedModel (``serve``, ``explain``); with a fast model it loads on first use."""
        with self._saved_model_lock:
            if self._saved_model is None:
                import tensorflow as tf

                self._saved_model = tf.saved_model.load(str(self.directory / SAVED_MODEL_DIR))
            return self._saved_model

    def _probabilities(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities, then any aspect probabilities and attention (``fast_runtime.serve_rows``)."""
        if self.fast_model is not None:
            return self.fast_model(batch)
        return serve_rows(self.endpoints.serve(batch))

    @property
    def row_width(self) -> int:
        """Columns of a :meth:`predict_rows` row: the labels, the aspects' polarities, then their attention."""
        return len(self.labels) + len(self.aspects) * (len(ASPECT_POLARITIES) + self.evidence_length)

    def predict_rows(self, texts: list[str]) -> np.ndarray:
        """Everything the model predicts for prepared texts (``prepare_text``), one row per text, in one pass:
        the class probabilities in ``labels`` order, then (with aspect heads) the aspect probabilities and
        the heads' attention (``split_rows`` and ``split_attention`` take them apart)."""
        return predict_texts(
            self._probabilities,
            self.encoder,
            texts,
            self.batch_size,
            self.row_width,
            self.preprocessing["bucket_lengths"],
        )

    def split_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(class probabilities, aspect probabilities (texts, aspects, polarities) or None without aspect heads)."""
        if not self.aspects:
            return rows, None
        probabilities_width = len(self.labels) + len(self.aspects) * len(ASPECT_POLARITIES)
        return split_outputs(rows[:, :probabilities_width], len(self.labels), len(self.aspects))

    def split_attention(self, rows: np.ndarray) -> np.ndarray | None:
        """The aspect heads' attention in :meth:`predict_rows` rows, (texts, aspects, ``evidence_length``);
        None for a bundle without it."""
        if not self.evidence_length:
            return None
        width = len(self.aspects) * self.evidence_length
        return rows[:, -width:].reshape(len(rows), len(self.aspects), self.evidence_length)

    def evidence(self, text: str, attention: np.ndarray, aspects: Collection[str]) -> dict[str, list[str]]:
        """For each of `aspects` (callers name those found in the text), the words of a prepared text its head
        weighs most (``explain.evidence``); `attention` is the text's :meth:`split_attention`."""
        heads = [index for index, name in enumerate(self.aspects) if name in aspects]
        return evidence_words(self.encoder, text, attention[heads], [self.aspects[index] for index in heads])

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities of prepared texts (``prepare_text``), columns in ``labels`` order."""
        return self.split_rows(self.predict_rows(texts))[0]

    def predict_with_aspects(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities and aspect probabilities (None without aspect heads) of prepared texts."""
        return self.split_rows(self.predict_rows(texts))

    def explain(self, text: str) -> dict:
        """Attention, rollout and integrated gradients of one prepared text (``explain.explain_encoded``)."""
        return explain_encoded(self.endpoints.explain, self.encoder, self.labels, self.pooling, text)

    def file_text(self, name: str) -> str | None:
        path = self.directory / name
        return path.read_text(encoding="utf-8") if path.is_file() else None


def load_bundle(
    path: Path,
    batch_size: int = 64,
    runtime: str = "auto",
    model_threads: int | None = None,
    static_shapes: Sequence[tuple[int, int]] = (),
    call_threads: int = 1,
) -> ModelBundle:
    """Verify and load a bundle (or the latest one under an export root).

    `runtime`: ``auto`` predicts with the fast model when the bundle has one and OpenVINO
    is installed, ``tensorflow`` always with the SavedModel, ``fast`` requires the fast model.
    `model_threads`: threads that predict at once (the server's), each on `call_threads` cores with the
    fast model and on one with TensorFlow; None: one, on all cores.
    `static_shapes`: (rows, pieces) the fast model is also compiled for (``FastModel``; the server's).
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    directory = resolve_bundle(Path(path))
    if not directory.is_dir():
        raise BundleError(f"model bundle {directory} not found; run `dvc repro export` or set the model path")
    manifest = verify_bundle(directory)
    preprocessing = json.loads((directory / PREPROCESSING_FILE).read_text())
    encoder = TextEncoder(
        Tokenizer.from_file(str(directory / TOKENIZER_FILE)), preprocessing["max_length"], preprocessing["text_prefix"]
    )
    about = json.loads((directory / MODEL_FILE).read_text())
    longest = int(preprocessing["max_length"])  # the encoder cuts every text there: no longer shape is needed
    static_shapes = [(rows, min(pieces, longest)) for rows, pieces in static_shapes]
    fast_model = _load_fast_model(directory, manifest, runtime, model_threads, static_shapes, call_threads)
    log.info(
        "loaded model bundle %s from %s (predictions: %s)",
        manifest["version"],
        directory,
        "tensorflow-fp32" if fast_model is None else f"openvino-{fast_model.precision}",
    )
    bundle = ModelBundle(
        directory=directory,
        version=manifest["version"],
        labels=tuple(about["labels"]),
        pooling=about["pooling"],
        checkpoint=about["checkpoint"],
        preprocessing=preprocessing,
        training_distribution=json.loads((directory / DISTRIBUTION_FILE).read_text()),
        encoder=encoder,
        batch_size=batch_size,
        fast_model=fast_model,
        aspects=tuple(about.get("aspects", ())),  # bundles exported before the aspect heads have none
        evidence_length=int(about.get("evidence_length", 0)),
    )
    if fast_model is None:
        bundle.endpoints  # noqa: B018  (the SavedModel predicts: load it now, not on the first request)
    return bundle


def _load_fast_model(
    directory: Path,
    manifest: dict,
    runtime: str,
    model_threads: int | None,
    static_shapes: Sequence[tuple[int, int]],
    call_threads: int,
) -> FastModel | None:
    if runtime == "tensorflow":
        return None
    if "fast_model" not in manifest:
        if runtime == "fast":
            raise BundleError(f"{directory} has no fast model; export it with export.fast_runtime: openvino")
        return None
    try:
        precision = manifest["fast_model"]["precision"]
        return FastModel(directory / FAST_MODEL_DIR, precision, model_threads, static_shapes, call_threads)
    except ImportError:
        if runtime == "fast":
            raise ConfigError("the fast model needs OpenVINO; pip install openvino") from None
        log.warning("OpenVINO is not installed: predicting with the TensorFlow SavedModel")
        return None


def bundle_heads(path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The label order and the aspect heads (none for bundles exported before them) of a verified
    bundle, without loading its model."""
    directory = resolve_bundle(Path(path))
    if not directory.is_dir():
        raise BundleError(f"model bundle {directory} not found; run `dvc repro export` or set the model path")
    verify_bundle(directory)
    about = json.loads((directory / MODEL_FILE).read_text())
    return tuple(about["labels"]), tuple(about.get("aspects", ()))


def checkpoint_name(params: Params) -> str:
    """The backbone a model was fine-tuned from: the pretrained stage's kind, or the checkpoint given."""
    checkpoint = params.model.checkpoint
    return params.pretrained.kind if Path(checkpoint) == PRETRAINED else checkpoint


def export_trained_model(
    predictor: SentimentPredictor,
    params: Params,
    out_root: Path,
    *,
    training_labels: pd.Series,
    validation: pd.DataFrame,
    checkpoint: str,
    extra_files: Mapping[str, Path],
) -> dict:
    """The ``export`` stage: write the bundle of a trained ``SentimentPredictor``, then prove it.

    With ``export.fast_runtime`` the fast model must pass the accuracy gate on the whole
    `validation` split (``text``, ``label``). The bundle is loaded back and must reproduce
    the trained model's probabilities (class and aspect) on the first ``export.verify_rows``
    validation texts within ``export.tolerance`` through the SavedModel.
    """
    settings = params.export
    bucket_lengths = bucket_lengths_for(predictor.encoder.max_length, predictor.bucket_lengths)

    def check_fast_model(saved_model_dir: Path, fast_model_dir: Path) -> dict:
        import tensorflow as tf

        saved_model = tf.saved_model.load(str(saved_model_dir))
        log.info("fast-model accuracy gate on %d validation texts", len(validation))
        figures = accuracy_gate(
            lambda batch: serve_rows(saved_model.serve(batch)),
            FastModel(fast_model_dir, settings.fast_precision),
            predictor.encoder,
            texts=validation["text"].tolist(),
            true_labels=validation["label"].tolist(),
            labels=predictor.labels,
            bucket_lengths=bucket_lengths,
            max_f1_change=settings.fast_max_f1_change,
            max_flip_rate=settings.fast_max_flip_rate,
            aspects=len(predictor.aspects),
            max_aspect_flip_rate=settings.fast_max_aspect_flip_rate,
        )
        return {"runtime": settings.fast_runtime, "precision": settings.fast_precision, **figures}

    version = f"{settings.name}-{weights_digest(predictor.network.get_weights())[:12]}"
    bundle_dir = write_bundle(
        predictor.network,
        predictor.encoder.tokenizer,
        out_root / version,
        labels=predictor.labels,
        aspects=predictor.aspects,
        checkpoint=checkpoint,
        explain_steps=params.export.explain_steps,
        preprocessing=preprocessing_settings(params.preprocess, predictor.encoder, predictor.bucket_lengths),
        training_distribution=training_labels.value_counts(normalize=True).to_dict(),
        extra_files=extra_files,
        fast_model_check=check_fast_model if settings.fast_runtime != "none" else None,
    )
    texts = validation["text"].tolist()[: settings.verify_rows]
    exported = load_bundle(bundle_dir, runtime="tensorflow")
    rows = exported.predict_rows(texts)
    trained = (
        join_outputs(*predictor.predict_with_aspects(texts)) if predictor.aspects else predictor.predict_proba(texts)
    )
    difference = float(np.abs(rows[:, : trained.shape[1]] - trained).max())
    if exported.evidence_length:  # the evidence words' weights too
        for served, weights in zip(exported.split_attention(rows), aspect_attention(predictor, texts), strict=True):
            difference = max(difference, float(np.abs(served[:, : weights.shape[1]] - weights).max()))
    if difference > params.export.tolerance:
        raise DataError(
            f"the exported model differs from the trained one by {difference:.2e} "
            f"(> export.tolerance {params.export.tolerance}); do not serve {bundle_dir}"
        )
    log.info("exported %s; it reproduces the trained model within %.1e on %d texts", version, difference, len(texts))
    summary = {"version": version, "path": str(bundle_dir), "verified_texts": len(texts), "max_difference": difference}
    fast_model = verify_bundle(bundle_dir).get("fast_model")
    return summary | ({"fast_model": fast_model} if fast_model else {})
