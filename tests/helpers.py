"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
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


def user_environment() -> dict[str, str]:
    """The environment of a new shell with nothing activated: no virtualenv on PATH, no PYTHONPATH."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }
    env["PATH"] = os.pathsep.join(
        entry
        for entry in env.get("PATH", "").split(os.pathsep)
        if entry and not (Path(entry).parent / "pyvenv.cfg").exists()
    )
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def write_tiny_bundle(trained, directory: Path, preprocess_params, model=None) -> Path:
    """Export the tiny trained classifier (or `model`, a variant of it) as a serving bundle in `directory`."""
    from peru_sentiment.export.bundle import preprocessing_settings, write_bundle

    return write_bundle(
        model or trained.network,
        trained.encoder.tokenizer,
        directory,
        labels=trained.labels,
        aspects=trained.aspects,
        checkpoint="tiny",
        explain_steps=16,
        preprocessing=preprocessing_settings(preprocess_params, trained.encoder, trained.bucket_lengths),
        training_distribution={"negative": 0.3, "neutral": 0.2, "positive": 0.5},
    )


def run_command(command: list[str], cwd: Path) -> str:
    """Run a command as a user who activated the project's virtualenv; fail the test on a non-zero exit.

    A project with its own `.venv` (the fresh clone) uses it; any other folder uses the
    virtualenv running the tests, importing the package from this checkout's src/.
    """
    env = user_environment()
    own_bin = cwd / ".venv" / "bin"
    if own_bin.is_dir():
        env["PATH"] = f"{own_bin}{os.pathsep}{env['PATH']}"
    else:
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        env["PYTHONPATH"] = str(ROOT / "src")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def clone_checkout(target: Path) -> Path:
    """`git clone` this checkout into `target`, then lay its uncommitted changes over the clone.

    In CI the checkout is clean and the clone is exactly what was committed.
    """
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    changed = subprocess.run(
        ["git", "ls-files", "-z", "--modified", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, changed.split("\0")):
        source, destination = ROOT / name, target / name
        if source.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        else:
            destination.unlink(missing_ok=True)
    return target


def run_predict(bundle: Path, source: Path, output: Path, *options: str):
    """`peru-sentiment predict` on a file through the CLI, without a progress bar; the typer result."""
    from typer.testing import CliRunner

    from peru_sentiment.cli.main import app

    command = ["predict", "--model", str(bundle), "--input", str(source), "--output", str(output), "--no-progress"]
    return CliRunner().invoke(app, [*command, *options])


def assert_same_rows(expected, actual) -> None:
    """Two prediction outputs (data frames) agree: the same columns and rows, probabilities within 1e-6."""
    import numpy as np
    import pandas as pd

    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    probability_columns = [column for column in expected.columns if column.startswith("probability_")]
    other = [column for column in expected.columns if column not in probability_columns]
    pd.testing.assert_frame_equal(actual[other], expected[other])
    np.testing.assert_allclose(
        actual[probability_columns].to_numpy(float), expected[probability_columns].to_numpy(float), atol=1e-6
    )
