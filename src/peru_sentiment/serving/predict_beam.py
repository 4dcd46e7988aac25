"""Batch scoring on Apache Beam (``peru-sentiment predict-beam``): ``predict``'s output, on any Beam runner.

The pipeline reads the input in chunks, applies ``prepare_text`` exactly as
``predict`` does (:func:`predict_file.prepare_frame`), sends the valid texts
through Beam's ``RunInference`` with :class:`BundleModelHandler` (the bundle
loaded once per worker process, each batch sorted by length into model calls),
joins the probabilities back to their rows (rows with bad text keep their
error) and writes each chunk's result to a shard. The command then merges the
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

import numpy as np
import pandas as pd

from peru_sentiment.errors import ConfigError
from peru_sentiment.export.bundle import ModelBundle, bundle_labels, load_bundle
from peru_sentiment.serving.predict_file import (
    check_paths,
    check_text_column,
    prepare_frame,
    with_predictions,
    write_predictions,
)
from peru_sentiment.tables import read_table_chunks

log = logging.getLogger(__name__)

try:
    import apache_beam as beam
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
except ImportError:  # the command says how to install it
    beam = None
    ModelHandler = object

SHARD_SUFFIX = ".pkl"


class BundleModelHandler(ModelHandler):
    """RunInference's view of an export bundle: prepared texts in, class probabilities out."""

    def __init__(self, bundle_path: str, batch_size: int, runtime: str, max_batch_texts: int):
        super().__init__()
        self.bundle_path, self.batch_size, self.runtime = bundle_path, batch_size, runtime
        self.max_batch_texts = max_batch_texts

    def load_model(self) -> ModelBundle:
        return load_bundle(Path(self.bundle_path), batch_size=self.batch_size, runtime=self.runtime)

    def run_inference(
        self, batch: Sequence[str], model: ModelBundle, inference_args: dict | None = None
    ) -> Iterable[PredictionResult]:
        probabilities = model.predict_proba(list(batch))  # sorted by length into model calls inside
        return [PredictionResult(text, row) for text, row in zip(batch, probabilities, strict=True)]

    def batch_elements_kwargs(self) -> dict:
        # Large batches give the length sort room: many model calls of similar lengths each.
        return {"min_batch_size": 1, "max_batch_size": self.max_batch_texts}

    def share_model_across_processes(self) -> bool:
        return False


def _read_chunks(source: str, chunk_rows: int, encoding: str):
    yield from enumerate(read_table_chunks(Path(source), chunk_rows, encoding))


class _PrepareChunk(beam.DoFn if beam else object):
    """A chunk to its valid texts ((chunk, row) -> prepared text) and, tagged ``chunks``, the chunk and its errors."""

    def __init__(self, text_column: str):
        self.text_column = text_column

    def process(self, element):
        index, frame = element
        prepared, errors = prepare_frame(frame, self.text_column)
        yield beam.pvalue.TaggedOutput("chunks", (index, (frame, errors)))
        for row in np.flatnonzero(errors == ""):
            yield (index, int(row)), prepared[row]


def _write_shard(element, labels: tuple[str, ...], shard_dir: str) -> int:
    """Join a chunk with its rows' probabilities and write the result frame to the chunk's shard."""
    index, grouped = element
    [(frame, errors)] = grouped["chunks"]
    predicted = sorted(grouped["probabilities"])
    probabilities = np.array([row for _, row in predicted], dtype=np.float32).reshape(-1, len(labels))
    result = with_predictions(frame, labels, errors, probabilities)
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
    max_batch_texts: int = 1024,
    runtime: str = "auto",
    encoding: str = "utf-8",
    escape_formulas: bool = True,
) -> dict:
    """Score `source` into `output` on the Beam runner `pipeline_args` name; ``predict``'s summary."""
    if beam is None:
        raise ConfigError(
            "predict-beam needs Apache Beam: pip install 'peru-sentiment[beam]' "
            "(Beam 2.77 needs protobuf<7 and pyarrow<26; see README, batch scoring)"
        )
    from apache_beam.options.pipeline_options import PipelineOptions

    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # Beam logs every worker's start and stop at INFO
    check_paths(source, output, encoding)
    first = next(read_table_chunks(source, 1, encoding), None)
    if first is not None:
        check_text_column(first, text_column)  # the same error as predict, before any worker starts
    labels = bundle_labels(bundle_path)
    handler = KeyedModelHandler(BundleModelHandler(str(bundle_path), batch_size, runtime, max_batch_texts))
    shard_dir = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".shards", dir=output.parent))
    try:
        with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
            prepared = (
                pipeline
                | "Input" >> beam.Create([str(source)])
                | "Read chunks" >> beam.FlatMap(_read_chunks, chunk_rows, encoding)
                | "Spread chunks" >> beam.Reshuffle()
                | "Prepare text" >> beam.ParDo(_PrepareChunk(text_column)).with_outputs("chunks", main="texts")
            )
            probabilities = (
                prepared.texts
                | "Predict" >> RunInference(handler)
                | "By chunk" >> beam.Map(lambda keyed: (keyed[0][0], (keyed[0][1], keyed[1].inference)))
            )
            _ = (
                {"chunks": prepared.chunks, "probabilities": probabilities}
                | "Join" >> beam.CoGroupByKey()
                | "Write shards" >> beam.Map(_write_shard, labels, str(shard_dir))
            )
        return write_predictions(_read_shards(shard_dir), source, output, labels, escape_formulas, False)
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
