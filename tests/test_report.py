"""The report: analysis helpers on small frames, and the smoke run's report opened in headless Chromium."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from playwright.sync_api import sync_playwright

from peru_sentiment.report import analysis
from peru_sentiment.report.build import SECTIONS
from peru_sentiment.report.render import highlight
from peru_sentiment.schema import aspect_column


def inspect_in_chromium(html, screenshot) -> dict:
    """Open `html` in headless Chromium; the images that failed to load, the section ids missing, the requests
    that left the file (network), a screenshot."""
    executable = shutil.which("chromium")
    assert executable, "Chromium is needed: `apt-get install chromium` (make system-deps)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        network = []
        page.on(
            "request",
            lambda request: None if request.url.startswith(("file:", "data:")) else network.append(request.url),
        )
        page.goto(html.resolve().as_uri(), wait_until="load")
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt)"
        )
        images = page.evaluate("document.images.length")
        missing = [id_ for id_, _ in SECTIONS if not page.evaluate(f"!!document.getElementById('{id_}')")]
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"images": images, "broken": broken, "missing": missing, "network": network}


def test_report_opens_offline_with_every_image_and_section(smoke_project, tmp_path):
    html = smoke_project / "reports/report.html"
    result = inspect_in_chromium(html, tmp_path / "report.png")
    assert result["network"] == [], "nothing loads from the network (feedback texts may show links as text)"
    assert result["broken"] == [] and result["missing"] == []
    assert result["images"] >= 10
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_the_browser_check_catches_a_broken_image_a_missing_section_and_a_network_load(smoke_project, tmp_path):
    text = (smoke_project / "reports/report.html").read_text()
    damaged = text.replace("data:image/png;base64,iVBOR", "data:image/png;base64,broken", 1)
    damaged = damaged.replace('id="incidents"', 'id="something-else"')
    damaged = damaged.replace("</body>", '<link rel="stylesheet" href="http://127.0.0.1:9/style.css"></body>')
    (tmp_path / "damaged.html").write_text(damaged)
    result = inspect_in_chromium(tmp_path / "damaged.html", tmp_path / "damaged.png")
    assert len(result["broken"]) == 1 and result["missing"] == ["incidents"]
    assert result["network"] == ["http://127.0.0.1:9/style.css"]


def test_summary_and_model_card_hold_this_runs_numbers(smoke_project):
    metrics = json.loads((smoke_project / "reports/metrics.json").read_text())["test"]
    summary = (smoke_project / "reports/report.md").read_text()
    card = (smoke_project / "reports/model_card.md").read_text()
    assert f"{metrics['macro_f1']:.3f}" in card and "## Personal data" in card and "## Intended use" in card
    events = json.loads((smoke_project / "data/raw/synthetic_events.json").read_text())
    for event in events:
        assert event["description"] in summary
    record = json.loads((smoke_project / "reports/stages/report.json").read_text())
    assert record["incidents"] == len(events) and record["explained"] >= 1


def _scored(inside_negative: int, outside_negative: int, rows: int = 100) -> pd.DataFrame:
    """One incident: `rows` texts inside and outside the window, the given number predicted negative."""
    frames = []
    for in_window, negatives in ((True, inside_negative), (False, outside_negative)):
        predicted = ["negative"] * negatives + ["positive"] * (rows - negatives)
        frames.append(pd.DataFrame({"incident": 0, "in_window": in_window, "predicted": predicted, "label": predicted}))
    return pd.concat(frames, ignore_index=True)


EVENT = {
    "region": "PE-CUS",
    "region_name": "Cusco",
    "aspect": "delivery_time",
    "start": "2026-02-02",
    "end": "2026-02-22",
    "description": "rain",
}


@pytest.mark.parametrize(("inside", "outside", "visible"), [(60, 30, True), (36, 30, False), (30, 30, False)])
def test_an_incident_is_visible_when_the_predicted_negative_share_rises(params, inside, outside, visible):
    result = analysis.incident_visibility(_scored(inside, outside), [EVENT], params.report)[0]
    assert result["lift"] == pytest.approx((inside - outside) / 100)
    assert result["visible"] is visible
    assert (result["p_value"] < 0.001) is visible


def test_incident_rows_are_the_region_inside_the_window_and_a_capped_baseline(params):
    days = pd.date_range("2026-01-01", "2026-03-31", freq="D")
    feedback = pd.DataFrame(
        {"region": np.where(np.arange(len(days)) % 2, "PE-CUS", "PE-LIM"), "timestamp": days + pd.Timedelta(hours=13)}
    )
    rows = analysis.incident_rows(feedback, [EVENT], params.report)
    inside = rows[rows["in_window"]]
    assert (rows["region"] == "PE-CUS").all()
    assert inside["timestamp"].between("2026-02-02", "2026-02-23").all() and len(inside) in (10, 11)
    assert len(rows) - len(inside) == min(
        params.report.baseline_rows, (feedback["region"] == "PE-CUS").sum() - len(inside)
    )


def test_explanation_sample_covers_each_label_outcome_and_language(params):
    rng = np.random.default_rng(0)
    labels = rng.choice(["negative", "neutral", "positive"], 300)
    predictions = pd.DataFrame(
        {
            "label": labels,
            "predicted": np.where(rng.random(300) < 0.8, labels, "neutral"),
            "language": rng.choice(["es", "en", "other"], 300),
            "confidence": rng.random(300),
        }
    )
    sample = analysis.explanation_sample(predictions, params.report)
    groups = set(zip(sample["label"], sample["correct"], sample["language"], strict=True))
    assert len(sample) == len(groups) == 10  # 3 labels x 2 outcomes x 2 languages, less "neutral predicted wrong"
    assert "other" not in set(sample["language"])
    mistakes = analysis.confident_mistakes(predictions, 5)
    assert (mistakes["label"] != mistakes["predicted"]).all() and mistakes["confidence"].is_monotonic_decreasing


def test_highlighting_escapes_words_and_scales_to_the_largest_score():
    html = highlight(["<b>pésimo</b>", "ok"], [-2.0, 1.0], signed=True)
    assert "&lt;b&gt;pésimo&lt;/b&gt;" in html and "<b>" not in html
    assert "rgba(220, 38, 38, 0.85)" in html and "rgba(22, 163, 74, 0.42)" in html


def test_a_model_card_statement_with_an_unquoted_colon_is_a_config_error(params, tmp_path):
    from peru_sentiment.errors import ConfigError
    from peru_sentiment.report.build import model_card_context

    card = {"title": "t", "owner": "o", "out_of_scope": [], "training_data": [], "limitations": [], "personal_data": []}
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card) + "intended_use:\n  - Aspect-level sentiment: one label per text\n")
    report = params.report.model_copy(update={"model_card": path})
    with pytest.raises(ConfigError, match="intended_use"):
        model_card_context(params.model_copy(update={"report": report}), {}, {}, {})


def _aspect_scored(negative_rows: dict[str, tuple[int, int]], rows: int = 50) -> pd.DataFrame:
    """One incident: `rows` texts inside and outside the window; per aspect (inside, outside) texts read negative."""
    frames = []
    for in_window in (True, False):
        columns = {
            analysis.negative_aspect_column(aspect): np.arange(rows) < counts[0 if in_window else 1]
            for aspect, counts in negative_rows.items()
        }
        frames.append(pd.DataFrame({"incident": 0, "in_window": in_window, **columns}))
    return pd.concat(frames, ignore_index=True)


def test_the_model_blames_the_aspect_whose_negative_share_rises_most_not_the_most_negative_one():
    # food quality is the most criticised aspect in the region all along, but delivery time is what rises
    scored = _aspect_scored({"food_quality": (30, 28), "delivery_time": (25, 5), "courier": (10, 4)})
    # the generator's truth: 40 of the 50 texts inside complain about delivery time, 10 of 50 outside
    complaints = np.where(np.arange(50) < 40, -1, 1).tolist() + np.where(np.arange(50) < 10, -1, pd.NA).tolist()
    scored[aspect_column("delivery_time")] = pd.array(complaints, dtype="Int8")
    result = analysis.incident_attribution(scored, [EVENT], ["food_quality", "delivery_time", "courier"])[0]
    assert result["blamed_aspect"] == "delivery_time" and result["attributed"] is True
    assert result["blamed_rise"] == pytest.approx(0.4) and result["true_rise"] == pytest.approx(0.6)
    assert result["aspect_rises"] == pytest.approx({"food_quality": 0.04, "delivery_time": 0.4, "courier": 0.12})

    wrong = analysis.incident_attribution(scored, [{**EVENT, "aspect": "courier"}], ["food_quality", "delivery_time"])
    assert wrong[0]["blamed_aspect"] == "delivery_time" and wrong[0]["attributed"] is False
    assert np.isnan(wrong[0]["true_rise"])  # no truth column for the courier


def test_no_aspect_is_blamed_when_none_rises_several_rise_alike_or_a_side_has_no_rows():
    falling = _aspect_scored({"delivery_time": (5, 25), "courier": (10, 10)})
    result = analysis.incident_attribution(falling, [EVENT], ["delivery_time", "courier"])[0]
    assert result["blamed_aspect"] is None and result["attributed"] is False
    # one text inside reads negative on every aspect: all rise alike, the true one is not singled out
    alike = _aspect_scored({"delivery_time": (1, 0), "courier": (1, 0)})
    assert analysis.incident_attribution(alike, [EVENT], ["delivery_time", "courier"])[0]["blamed_aspect"] is None
    empty = analysis.incident_attribution(falling[falling["in_window"]], [EVENT], ["delivery_time"])[0]
    assert empty["blamed_aspect"] is None and np.isnan(empty["aspect_rises"]["delivery_time"])


def test_aspect_tables_and_examples_from_the_evaluation():
    from peru_sentiment.schema import predicted_aspect_column, true_aspect_column

    def scores(present, detected, f1, cells):
        return {
            "present": present,
            "detected": detected,
            "precision": f1,
            "recall": f1,
            "f1": f1,
            "polarity": {"cells": cells, "macro_f1": 0.5},
        }

    block = {
        "detection": {"precision": 0.9, "recall": 0.8, "f1": 0.85},
        "polarity": {"cells": 7, "macro_f1": 0.75},
        "per_aspect": {"delivery_time": scores(6, 5, 0.9, 4), "courier": scores(4, 3, 0.7, 3)},
    }
    table = analysis.aspect_scores_table(block)
    assert list(table.index) == ["delivery_time", "courier", "all aspects (micro)"]
    assert table.loc["all aspects (micro)", ["mentions", "detected", "F1", "polarity texts"]].tolist() == [
        10,
        8,
        0.85,
        7,
    ]

    aspects = ["delivery_time", "courier"]
    predictions = pd.DataFrame(
        {
            "text": ["llegó tarde", "el motorizado amable", "hola", "sin verdad"],
            true_aspect_column("delivery_time"): ["negative", "absent", "absent", None],
            true_aspect_column("courier"): ["absent", "positive", "absent", None],
            predicted_aspect_column("delivery_time"): ["negative", "absent", "absent", "negative"],
            predicted_aspect_column("courier"): ["absent", "neutral", "absent", "absent"],
        }
    )
    examples = analysis.aspect_examples(predictions, aspects, count=4, seed=0).set_index("text")
    # "hola" mentions no aspect and "sin verdad" has no truth: neither is an example
    assert sorted(examples.index) == ["el motorizado amable", "llegó tarde"]
    assert examples.loc["llegó tarde"].tolist() == [
        "delivery_time: negative",
        "delivery_time: negative",
        ["delivery_time"],
        True,
    ]
    assert examples.loc["el motorizado amable"].tolist() == [
        "courier: positive",
        "courier: neutral",
        ["courier"],
        False,
    ]


def test_the_smoke_report_has_the_aspects_section_and_blames_an_aspect_per_incident(smoke_project):
    events = json.loads((smoke_project / "data/raw/synthetic_events.json").read_text())
    text = (smoke_project / "reports/incidents.json").read_text()
    incidents = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert incidents["incidents"] == len(events) and 0 <= incidents["attributed"] <= len(events)
    for event, item in zip(events, incidents["by_incident"].values(), strict=True):
        assert item["aspect"] == event["aspect"]
        assert item["attributed"] == (item["blamed_aspect"] == event["aspect"])
    record = json.loads((smoke_project / "reports/stages/report.json").read_text())
    assert record["incidents_attributed"] == incidents["attributed"]
    html = (smoke_project / "reports/report.html").read_text()
    summary = (smoke_project / "reports/report.md").read_text()
    assert 'id="aspects"' in html and "all aspects (micro)" in html and "model blames" in html
    assert '<th class="text">evidence</th>' in html
    assert "## Aspects" in summary and "| model blames | match |" in summary


def test_a_model_without_aspect_heads_gets_the_report_without_aspects(
    smoke_project, tiny_trained, tmp_path, monkeypatch
):
    from peru_sentiment.config import load_params
    from peru_sentiment.evaluation.evaluate import evaluate_model
    from peru_sentiment.metadata import write_json
    from peru_sentiment.report.build import build_report
    from peru_sentiment.report.inputs import Paths

    monkeypatch.chdir(smoke_project)  # the params' relative paths (model card) are the project's
    params = load_params(smoke_project / "params.yaml")
    paths = Paths.under(smoke_project)
    paths = Paths(
        **{**paths.__dict__, "model_dir": tmp_path / "trained", "evaluation_dir": tmp_path / "evaluation"},
    )
    tiny_trained.save(paths.model_dir)
    splits = {
        name: pd.read_parquet(smoke_project / f"data/processed/{name}.parquet")
        for name in ("train", "validation", "test")
    }
    headline, full, predictions = evaluate_model(tiny_trained, splits, params.evaluate)
    assert "aspects" not in full["test"]["model"]
    write_json(paths.evaluation_dir / "details.json", full)
    predictions["test"].to_parquet(paths.evaluation_dir / "test_predictions.parquet")
    paths = Paths(**{**paths.__dict__, "metrics": tmp_path / "metrics.json"})
    write_json(paths.metrics, headline)

    record = build_report(params, paths, tmp_path / "reports", progress=False)
    html = (tmp_path / "reports/report.html").read_text()
    assert 'id="aspects"' not in html and 'href="#aspects"' not in html and "model blames" not in html
    assert 'id="incidents"' in html and "## Aspects" not in (tmp_path / "reports/report.md").read_text()
    incidents = json.loads((tmp_path / "reports/incidents.json").read_text())
    assert "attributed" not in incidents and incidents["incidents"] == record["incidents"]
    assert "incidents_attributed" not in record
