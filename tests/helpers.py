"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


TOY_WORDS = {
    "negative": ["pésimo", "frío", "tardísimo", "horrible", "awful", "roche"],
    "neutral": ["pedí", "hoy", "lunes", "casa", "order", "tarde"],
    "positive": ["bacán", "excelente", "rico", "rapidísimo", "great", "chévere"],
}


def toy_feedback(rows: int, seed: int):
    """A learnable toy task: one sentiment word among neutral filler decides the label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    records = []
    for i in range(rows):
        label = ("negative", "neutral", "positive")[i % 3]
        words = [*rng.choice(TOY_WORDS["neutral"], size=rng.integers(1, 6)), rng.choice(TOY_WORDS[label])]
        words += list(rng.choice(TOY_WORDS["neutral"], size=rng.integers(0, 12)))
        records.append({"feedback_id": f"toy-{seed}-{i}", "text": " ".join(words), "label": label})
    return pd.DataFrame(records)


def new_fine_tuner(checkpoint, params, text_prefix: str = ""):
    """A FineTuner on `checkpoint`, after setting the seed and precision policy as the stages do."""
    from peru_sentiment.training.trainer import FineTuner, set_global_training_state

    set_global_training_state(params)
    return FineTuner(str(checkpoint), params, text_prefix)


def run_command(command: list[str], cwd: Path) -> str:
    """Run a command of the virtualenv in `cwd` with a minimal environment; fail the test on a non-zero exit.

    The package is imported from this checkout's src/, whatever the virtualenv's editable install points to.
    """
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(cwd),
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout
