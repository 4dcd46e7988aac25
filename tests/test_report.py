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
