"""Where the pipeline reads and writes: the DVC layout, relative to the project root, in one place.

The stages run from the project root (``dvc repro``), so the paths are relative;
``under(root)`` anchors one elsewhere (tests, notebooks, benchmarks).
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")

CONFIGS = Path("configs")
REGIONS = CONFIGS / "regions.yaml"
PHRASEBOOK = CONFIGS / "synthetic" / "phrasebook.yaml"
VOCABULARY = CONFIGS / "synthetic" / "vocabulary.yaml"
STYLES = CONFIGS / "synthetic" / "styles.yaml"
MONITORING_CONFIG = CONFIGS / "monitoring.yaml"

RAW = Path("data/raw")
SYNTHETIC = RAW / "synthetic.parquet"
SYNTHETIC_EVENTS = RAW / "synthetic_events.json"
SYNTHETIC_CARD = RAW / "synthetic_card.md"
IMPORTED = RAW / "imported.parquet"
QUARANTINE = RAW / "quarantine.parquet"
IMPORT_DUPLICATES = RAW / "import_duplicates.parquet"
FEEDBACK = Path("data/interim/feedback.parquet")
PROCESSED = Path("data/processed")

PRETRAINED = Path("models/pretrained")
TRAINED = Path("models/trained")
EXPORT = Path("models/export")
SERVING = Path("models/serving")  # the promoted bundles (peru-sentiment promote); not a DVC output

SWEEP = Path("experiments/sweep")
BEST_HPARAMS = Path("experiments/best_hparams.json")
TENSORBOARD = Path("experiments/tensorboard")
TRAIN_LIVE = Path("dvclive/train")

REPORTS = Path("reports")
METRICS = REPORTS / "metrics.json"
EVALUATION = REPORTS / "evaluation"
TRANSFER = REPORTS / "transfer"
REALISM = REPORTS / "realism"
REALISM_METRICS = REPORTS / "realism.json"
MODEL_CARD = REPORTS / "model_card.md"
STAGE_RECORDS = REPORTS / "stages"
BENCHMARKS = REPORTS / "benchmarks"
LOCAL_PROMETHEUS = Path("monitoring/local")


def split_file(name: str, data_dir: Path = PROCESSED) -> Path:
    """One split (train, validation, test, external, unlabelled) written by the ``split`` stage."""
    return data_dir / f"{name}.parquet"


def stage_record(stage: str) -> Path:
    """The metadata a stage writes (rows in/out, duration), tracked by DVC as metrics."""
    return STAGE_RECORDS / f"{stage}.json"


def under(root: Path, path: Path) -> Path:
    """`path` of the layout inside the project directory `root`."""
    return Path(root) / path
