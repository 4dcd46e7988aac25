"""`predict-beam` gives `predict`'s output row for row, and the same errors for bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers import assert_same_rows, toy_feedback
from peru_sentiment.errors import PipelineError
from peru_sentiment.export.bundle import load_bundle
from peru_sentiment.serving.predict_beam import predict_with_beam
from peru_sentiment.serving.predict_file import predict_file
from peru_sentiment.tables import read_table

LOCAL_TWO_WORKERS = ("--direct_running_mode", "multi_processing", "--direct_num_workers", "2")


def feedback_with_bad_rows(rows: int) -> pd.DataFrame:
    frame = toy_feedback(rows, seed=21)
    frame.loc[3, "text"] = "   "  # empty text
    frame.loc[10, "text"] = None  # missing text
    frame.loc[11, "text"] = "\u200b\u200b"  # invisible marks only: empty after cleaning
    return frame


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


def both_outputs(bundle, source, tmp_path, pipeline_args=(), **options):
    expected = predict_file(bundle, source, tmp_path / f"predict{source.suffix}", "text", progress=False, **options)
    beam = predict_with_beam(
        bundle.directory, source, tmp_path / f"beam{source.suffix}", "text", pipeline_args=pipeline_args, **options
    )
    outputs = [read_table(tmp_path / f"{name}{source.suffix}") for name in ("predict", "beam")]
    return (expected, outputs[0]), (beam, outputs[1])


@pytest.mark.parametrize(("suffix", "pipeline_args"), [(".csv", LOCAL_TWO_WORKERS), (".parquet", ())])
def test_beam_output_equals_predict_row_for_row(bundle, tmp_path, suffix, pipeline_args):
    frame = feedback_with_bad_rows(700)
    source = tmp_path / f"input{suffix}"
    frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source, index=False)
    (expected_summary, expected), (beam_summary, actual) = both_outputs(
        bundle, source, tmp_path, pipeline_args, chunk_rows=128
    )
    assert beam_summary == expected_summary
    assert expected_summary["errors"] == {"empty text": 2, "missing text": 1}
    assert actual["feedback_id"].tolist() == frame["feedback_id"].tolist()  # input order, every row
    assert_same_rows(expected, actual)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("missing.csv", None),  # no such file
        ("no_text.csv", "id,comment\n1,hola\n"),  # no text column
        ("broken.parquet", "not parquet at all"),  # unreadable
        ("odd.txt", "text\nhola\n"),  # unsupported type
    ],
)
def test_bad_input_gives_predicts_error(bundle, tmp_path, name, content):
    source = tmp_path / name
    if content is not None:
        source.write_text(content)
    errors = []
    for run in (
        lambda: predict_file(bundle, source, tmp_path / "p.csv", "text", progress=False),
        lambda: predict_with_beam(bundle.directory, source, tmp_path / "b.csv", "text"),
    ):
        with pytest.raises(PipelineError) as error:
            run()
        errors.append(str(error.value))
    assert errors[0] == errors[1]
    assert not (tmp_path / "b.csv").exists() and not list(tmp_path.glob(".b.csv.*"))
