"""Batch scoring on Apache Beam (``peru-sentiment predict-beam``): ``predict``'s output, on any Beam runner.

The pipeline reads the input in chunks and spreads them over the workers; each
chunk's texts get ``prepare_text`` exactly as in ``predict``
(:func:`predict_file.prepare_frame`), and its valid texts go through Beam's
``RunInference`` as one example for :class:`BundleModelHandler` (the bundle
loaded once per worker process, the chunk's texts sorted by length into model
calls); the outputs (probabilities, aspects, evidence words) join their rows (rows with bad text keep their
error) and each chunk's result is written to a shard. A chunk, not a text, is
the element: one element per text costs Beam more than the model on short texts. The command then merges the
shards in input order into one output file with ``predict``'s writer, so the
file, its columns and its summary are ``predict``'s.

Locally it runs on the Python DirectRunner (``--direct_running_mode
multi_processing --direct_num_workers N``): nothing is downloaded at run time.
Beam's default local runner, Prism, is a Go binary fetched from GitHub on first
use, which an offline machine cannot do.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from peru_sentiment.export.bundle import ModelBundle, bundle_heads, load_bundle
from peru_sentiment.serving.predict_file import (
    check_paths,
    check_text_column,
    model_outputs,
    prepare_frame,
    with_predictions,
    write_predictions,
)
from peru_sentiment.tables import read_table_chunks

log = logging.getLogger(__name__)

SHARD_SUFFIX = ".pkl"


class BundleModelHandler(ModelHandler):
    """RunInference's view of an export bundle: a list of prepared texts in, ``predict``'s model outputs out
    (:func:`predict_file.model_outputs`: class probabilities, and the aspects with their evidence words)."""

    def __init__(self, bundle_path: str, batch_size: int, runtime: str, model_threads: int | None):
        super().__init__()
        self.bundle_path, self.batch_size, self.runtime = bundle_path, batch_size, runtime
        self.model_threads = model_threads

    def load_model(self) -> ModelBundle:
        return load_bundle(
            Path(self.bundle_path), batch_size=self.batch_size, runtime=self.runtime, model_threads=self.model_threads
        )

    def run_inference(
        self, batch: Sequence[list[str]], model: ModelBundle, inference_args: dict | None = None
    ) -> Iterable[PredictionResult]:
        # Each example is a chunk's texts: sorted by length into model calls inside predict_rows.
        return [PredictionResult(texts, model_outputs(model, texts)) for texts in batch]

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": 1}  # a chunk is already a batch

    def share_model_across_processes(self) -> bool:
        return False


def _read_chunks(source: str, chunk_rows: int, encoding: str):
    yield from enumerate(read_table_chunks(Path(source), chunk_rows, encoding))


def _prepare_chunk(element, text_column: str):
    """(index, chunk) -> ((index, chunk, errors), the chunk's valid prepared texts): RunInference's keyed example."""
    index, frame = element
    prepared, errors = prepare_frame(frame, text_column)
    return (index, frame, errors), [prepared[row] for row in np.flatnonzero(errors == "")]


def _write_shard(element, labels: tuple[str, ...], aspects: tuple[str, ...], shard_dir: str) -> int:
    """A chunk with its valid rows' model outputs, written as its result frame to the chunk's shard."""
    (index, frame, errors), prediction = element
    result = with_predictions(frame, labels, errors, *prediction.inference, aspects=aspects)
    path = Path(shard_dir) / f"{index:09d}{SHARD_SUFFIX}"
    path.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    return len(result)


def _read_shards(shard_dir: Path) -> Iterable[pd.DataFrame]:
    for path in sorted(shard_dir.glob(f"*{SHARD_SUFFIX}")):
        yield pickle.loads(path.read_bytes())  # written by this run's own pipeline, just above


def predict_with_beam(
    bundle_path: Path,
    source: Path,
    output: Path,
    text_column: str,
    *,
    pipeline_args: Sequence[str] = (),
    chunk_rows: int = 2048,
    batch_size: int = 64,
    runtime: str = "auto",
    model_threads: int | None = None,
    encoding: str = "utf-8",
    escape_formulas: bool = True,
) -> dict:
    """Score `source` into `output` on the Beam runner `pipeline_args` name; ``predict``'s summary.

    `model_threads`: the fast model's threads per worker (None: all cores); with N local workers
    on C cores, C // N keeps them from competing for the same cores.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # Beam logs every worker's start and stop at INFO
    check_paths(source, output, encoding)
    first = next(read_table_chunks(source, 1, encoding), None)
    if first is not None:
        check_text_column(first, text_column)  # the same error as predict, before any worker starts
    labels, aspects = bundle_heads(bundle_path)
    handler = KeyedModelHandler(BundleModelHandler(str(bundle_path), batch_size, runtime, model_threads))
    shard_dir = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".shards", dir=output.parent))
    try:
        with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
            _ = (
                pipeline
                | "Input" >> beam.Create([str(source)])
                | "Read chunks" >> beam.FlatMap(_read_chunks, chunk_rows, encoding)
                | "Spread chunks" >> beam.Reshuffle()
                | "Prepare text" >> beam.Map(_prepare_chunk, text_column)
                | "Predict" >> RunInference(handler)
                | "Write shards" >> beam.Map(_write_shard, labels, aspects, str(shard_dir))
            )
        return write_predictions(_read_shards(shard_dir), source, output, labels, escape_formulas, False, aspects)
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
