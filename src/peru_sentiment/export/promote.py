"""Champion and challenger: promote a freshly exported bundle only when it reads real feedback better.

Both bundles predict a frozen labelled set (e.g. the imported ``external``
rows or reviewed labels); a paired bootstrap over its rows gives a confidence
interval of the macro-F1 difference (challenger - champion). The challenger is
promoted when the whole interval is above zero, or when forced with a reason.

Promotion copies the challenger into the serving root (``models/serving``,
outside DVC's outputs: ``dvc repro`` rewrites ``models/export`` and would
delete the champion) and then replaces ``<serving root>/LATEST`` atomically;
every decision, promoted or not, is appended to ``promotions.jsonl`` there
with both scores. A server started on the serving root loads the new bundle
on reload (SIGHUP to gunicorn's master: new workers start, old ones finish
their requests).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from peru_sentiment.errors import ConfigError
from peru_sentiment.export.bundle import LATEST_FILE, ModelBundle, load_bundle, resolve_bundle
from peru_sentiment.schema import LABELS
from peru_sentiment.store.records import utc_now
from peru_sentiment.tables import read_table
from peru_sentiment.text.prepare import prepare_text

log = logging.getLogger(__name__)
DECISIONS_FILE = "promotions.jsonl"


def predicted_labels(bundle: ModelBundle, texts: list[str]) -> np.ndarray:
    probabilities = bundle.predict_proba([prepare_text(text)[0] for text in texts])
    return np.asarray(bundle.labels, dtype=object)[probabilities.argmax(axis=1)]


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(f1_score(truth, predicted, labels=list(LABELS), average="macro", zero_division=0))


def bootstrap_difference(
    truth: np.ndarray, challenger: np.ndarray, champion: np.ndarray, samples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """The `confidence` interval of macro-F1(challenger) - macro-F1(champion), resampling rows in pairs."""
    rng = np.random.default_rng(seed)
    differences = np.empty(samples)
    for index in range(samples):
        rows = rng.integers(0, len(truth), len(truth))
        differences[index] = macro_f1(truth[rows], challenger[rows]) - macro_f1(truth[rows], champion[rows])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


def read_frozen_set(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise ConfigError(f"frozen evaluation set {path} not found (e.g. data/processed/external.parquet)")
    frame = read_table(path)
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path} needs the columns text and label (missing: {', '.join(sorted(missing))})")
    frame = frame[frame["label"].isin(LABELS) & frame["text"].notna()]
    if len(frame) < 30:
        raise ConfigError(f"{path} has {len(frame)} labelled rows; a comparison needs at least 30")
    return frame["text"].astype(str).tolist(), frame["label"].to_numpy(dtype=object)


def promote(
    challenger_dir: Path,
    serving_root: Path,
    frozen_set: Path,
    *,
    force: bool = False,
    reason: str | None = None,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Compare the challenger with the serving champion, promote when better (or forced); the decision."""
    if force and not (reason and reason.strip()):
        raise ConfigError("--force needs --reason: say why a challenger that is not proven better should serve")
    challenger_path = resolve_bundle(challenger_dir)
    challenger = load_bundle(challenger_path)
    texts, truth = read_frozen_set(frozen_set)
    decision = {
        "at": utc_now().isoformat(timespec="seconds"),
        "frozen_set": str(frozen_set),
        "rows": len(truth),
        "challenger": challenger.version,
        "challenger_macro_f1": round(macro_f1(truth, challenger_predictions := predicted_labels(challenger, texts)), 4),
    }
    if (serving_root / LATEST_FILE).is_file():
        champion = load_bundle(serving_root)
        champion_predictions = predicted_labels(champion, texts)
        low, high = bootstrap_difference(truth, challenger_predictions, champion_predictions, samples, confidence, seed)
        decision |= {
            "champion": champion.version,
            "champion_macro_f1": round(macro_f1(truth, champion_predictions), 4),
            "difference_interval": [round(low, 4), round(high, 4)],
            "confidence": confidence,
        }
        better = low > 0
    else:
        decision |= {"champion": None, "champion_macro_f1": None, "difference_interval": None}
        better = True  # nothing serves yet
    decision["promoted"] = bool(better or force)
    decision["forced"] = bool(force and not better)
    decision["reason"] = reason if force else ("better beyond the interval" if better else "not significantly better")
    if decision["promoted"] and decision.get("champion") != challenger.version:
        _install(challenger_path, serving_root)
    serving_root.mkdir(parents=True, exist_ok=True)
    with (serving_root / DECISIONS_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(decision, ensure_ascii=False) + "\n")
    log.info("promotion decision: %s", decision)
    return decision


def _install(bundle_dir: Path, serving_root: Path) -> None:
    """Copy the bundle under the serving root (verified on load) and point LATEST at it atomically."""
    target = serving_root / bundle_dir.name
    if not target.exists():
        staging = serving_root / f".{bundle_dir.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(bundle_dir, staging)
        staging.rename(target)
    load_bundle(target)  # the copy is complete and intact before anything points at it
    pointer = serving_root / f".{LATEST_FILE}.partial"
    pointer.write_text(target.name + "\n")
    os.replace(pointer, serving_root / LATEST_FILE)
