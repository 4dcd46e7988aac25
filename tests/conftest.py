from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peru_sentiment.config import Params, load_params, load_yaml
from peru_sentiment.data import synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


def small_generate_params(params: Params, **changes):
    return params.generate.model_copy(update={"rows": 600, **changes})


@pytest.fixture(scope="session")
def regions():
    return synthetic.load_regions(ROOT / "configs/regions.yaml")


@pytest.fixture(scope="session")
def phrasebook():
    return synthetic.load_phrasebook(ROOT / "configs/synthetic/phrasebook.yaml")


@pytest.fixture(scope="session")
def vocabulary():
    return load_yaml(ROOT / "configs/synthetic/vocabulary.yaml")


@pytest.fixture(scope="session")
def corpus(params, regions, phrasebook, vocabulary):
    """A 3,000-row synthetic corpus shared by the tests that only read it."""
    generate = params.generate.model_copy(update={"rows": 3000})
    return synthetic.generate_feedback(generate, regions, phrasebook, vocabulary, progress=False)


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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, params):
    from peru_sentiment.model.checkpoints import write_tiny_checkpoint

    texts = toy_feedback(300, seed=0)["text"]
    tiny = params.pretrained.tiny.model_copy(update={"hidden": 32, "intermediate": 64, "vocab_size": 200})
    return write_tiny_checkpoint(texts, tmp_path_factory.mktemp("tiny"), **tiny.model_dump())


@pytest.fixture(scope="session")
def tiny_train_params(params):
    """Training parameters that fit a tiny model in seconds."""
    return params.train.model_copy(
        update={
            "epochs": 4, "batch_size": 16, "learning_rate": 2e-3, "warmup_ratio": 0.1, "trainable_layers": 2,
            "max_length": 32, "bucket_lengths": [8, 16, 32], "jit_compile": False, "freeze_word_embeddings": False,
            "early_stopping_patience": 4,
        }
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_trained(tiny_checkpoint, tiny_train_params):
    """A tiny classifier trained for a few seconds on the toy task, as a SentimentPredictor."""
    from peru_sentiment.model.predictor import SentimentPredictor
    from peru_sentiment.training.trainer import Classifier, encode_split

    classifier = Classifier(str(tiny_checkpoint), tiny_train_params.model_copy(update={"epochs": 2}))
    classifier.fit(
        encode_split(toy_feedback(300, seed=11), classifier.encoder),
        encode_split(toy_feedback(60, seed=12), classifier.encoder),
        verbose=0,
    )
    return SentimentPredictor(classifier.model, classifier.encoder)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_trained, tmp_path_factory, params):
    """The tiny classifier exported as a serving bundle (what `peru-sentiment export` writes)."""
    from peru_sentiment.export.bundle import preprocessing_settings, write_bundle

    return write_bundle(
        tiny_trained.model, tiny_trained.encoder.tokenizer, tmp_path_factory.mktemp("export") / "tiny-0",
        labels=tiny_trained.labels, checkpoint="tiny", explain_steps=16,
        preprocessing=preprocessing_settings(params.preprocess, tiny_trained.encoder, [8, 16, 32]),
        training_distribution={"negative": 0.3, "neutral": 0.2, "positive": 0.5},
    )  # fmt: skip


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


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory) -> Path:
    """The README's main command, `make repro`, as a new user types it: a fresh clone, a shell with
    nothing activated, the smoke profile (`make` then builds the clone's own .venv and runs every stage).

    Shared by the CLI, report and notebook tests. Only test_cli changes it
    afterwards (one evaluate parameter, then `dvc repro` again).
    """
    from peru_sentiment.profiles import apply_profile

    project = clone_checkout(tmp_path_factory.mktemp("clone") / "peru-sentiment")
    apply_profile("smoke", project / "params.yaml", project / "configs/profiles")
    result = subprocess.run(
        ["make", "repro"], cwd=project, env=user_environment(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"make repro failed in a fresh clone:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return project
