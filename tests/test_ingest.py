import json

import pandas as pd
import pytest

from peru_sentiment.config import SourceParams
from peru_sentiment.data.ingest import import_feedback, label_from_stars
from peru_sentiment.errors import ConfigError

REGIONS = {"PE-CUS": "Cusco", "PE-LIM": "Lima", "PE-AYA": "Ayacucho"}


def _ingest_params(params, sources, **changes):
    return params.ingest.model_copy(update={"sources": [SourceParams.model_validate(s) for s in sources], **changes})


def _write_broken_csv(path):
    lines = [
        "id,review,sentiment,date,department",
        "1,La comida llegó fría,negative,2026-01-05,Cusco",
        "2,   ,positive,2026-01-05,Cusco",  # empty text
        "3,Todo bien,contentísimo,2026-01-05,Lima",  # unknown label
        "4,Llegó al toque,positive,ayer por la tarde,Lima",  # unparseable date
        "5,too,many,fields,here,really",  # malformed record
        "6,Excelente servicio y el ceviche buenazo,POSITIVE,,ayacucho",  # label case-insensitive, empty date ok
        "7,La comida llegó fría,negative,2026-01-06,Cusco",  # exact duplicate of 1
        "8,El motorizado fue muy amable y llegó rapidísimo a mi casa,positive,2026-01-07,Lima",
        "9,El motorizado fue muy amable y llegó rapidísimo a mi casa!,positive,2026-01-07,Lima",  # near duplicate of 8
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    data += "10,Qu\xe9 roche el pedido,negative,2026-01-08,Lima\n".encode("latin-1")  # undecodable in utf-8
    path.write_bytes(data)


def test_import_accounts_for_every_row(tmp_path, params):
    csv_path = tmp_path / "reviews.csv"
    _write_broken_csv(csv_path)
    jsonl_path = tmp_path / "stars.jsonl"
    jsonl_path.write_text(
        "\n".join(
            [
                json.dumps({"body": "Great food, fast delivery", "rating": 5, "ts": "2026-02-01T12:00:00Z"}),
                json.dumps({"body": "Meh, it was ok", "rating": 3, "ts": "2026-02-01"}),
                json.dumps({"body": "Never again", "rating": 9, "ts": "2026-02-01"}),  # invalid stars
                "{not json",
                json.dumps({"body": "Cold fries", "rating": 1.0, "ts": ""}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    parquet_path = tmp_path / "extra.parquet"
    pd.DataFrame({"texto": ["Pésimo, nunca más", "Normal"], "clase": [0, 1]}).to_parquet(parquet_path)
    missing_path = tmp_path / "missing.csv"
    missing_path.write_text("text,label\nhola,positive\nchau,negative\n", encoding="utf-8")

    sources = [
        {
            "name": "reviews",
            "path": str(csv_path),
            "columns": {
                "text": "review",
                "label": "sentiment",
                "timestamp": "date",
                "region": "department",
                "source_id": "id",
            },
        },
        {
            "name": "stars",
            "path": str(jsonl_path),
            "role": "external",
            "columns": {"text": "body", "stars": "rating", "timestamp": "ts"},
        },
        {
            "name": "extra",
            "path": str(parquet_path),
            "columns": {"text": "texto", "label": "clase"},
            "labels": {"0": "negative", "1": "neutral", "2": "positive"},
        },
        {"name": "missing", "path": str(missing_path), "columns": {"text": "text", "label": "label", "region": "zone"}},
    ]
    result = import_feedback(_ingest_params(params, sources), params.near_duplicates, REGIONS)
    summary = result.summary

    assert summary["rows_in"] == 10 + 5 + 2 + 2
    assert summary["accepted"] + summary["quarantined"] + summary["duplicates_removed"] == summary["rows_in"]
    assert summary["by_source"]["reviews"] == {
        "rows_in": 10,
        "accepted": 3,
        "quarantined": 5,
        "duplicates_removed": 2,
        "role": "train",
    }
    reasons = result.quarantined.groupby("source")["reason"].apply(list).to_dict()
    assert sorted(r.split(" ")[0] for r in reasons["reviews"]) == [
        "empty",
        "malformed",
        "undecodable",
        "unknown",
        "unparseable",
    ]
    assert sorted(r.split(":")[0] for r in reasons["stars"]) == [
        "invalid stars '9' (expected 1 to 5)",
        "malformed record",
    ]
    assert reasons["missing"] == ["missing column 'zone'"] * 2

    accepted = result.accepted.set_index("feedback_id")
    assert accepted.loc["reviews-0000001", "region"] == "PE-CUS"
    assert accepted.loc["reviews-0000006", ["label", "region"]].tolist() == ["positive", "PE-AYA"]
    assert pd.isna(accepted.loc["reviews-0000006", "timestamp"])
    assert accepted.loc["stars-0000001", ["label", "role", "stars"]].tolist() == ["positive", "external", 5]
    assert accepted.loc["stars-0000002", "label"] == "neutral"
    assert accepted.loc["stars-0000005", "label"] == "negative"
    assert accepted.loc["extra-0000001", "label"] == "negative"
    assert accepted.loc["reviews-0000001", "source_sha256"] and accepted.loc["reviews-0000001", "source_row"] == 1
    assert dict(zip(result.duplicates["feedback_id"], result.duplicates["duplicate_of"], strict=True)) == {
        "reviews-0000007": "reviews-0000001",
        "reviews-0000009": "reviews-0000008",
    }


def test_stars_to_labels(params):
    assert [label_from_stars(s, params.ingest.stars) for s in range(1, 6)] == [
        "negative",
        "negative",
        "neutral",
        "positive",
        "positive",
    ]


@pytest.mark.parametrize(("file_name", "message"), [("nope.csv", "not found"), ("data.xlsx", "unsupported file type")])
def test_bad_source_files_get_clear_errors(tmp_path, params, file_name, message):
    (tmp_path / "data.xlsx").write_text("")
    source = {"name": "x", "path": str(tmp_path / file_name), "columns": {"text": "t", "label": "l"}}
    with pytest.raises(ConfigError, match=message):
        import_feedback(_ingest_params(params, [source]), params.near_duplicates, REGIONS)


def test_a_source_needs_exactly_one_of_label_or_stars(params):
    with pytest.raises(ValueError, match="exactly one of `label` or `stars`"):
        _ingest_params(params, [{"name": "x", "path": "a.csv", "columns": {"text": "t"}}])


def test_no_sources_gives_empty_tables(params):
    result = import_feedback(params.ingest, params.near_duplicates, REGIONS)
    assert result.summary["rows_in"] == 0 and result.accepted.empty and result.quarantined.empty
