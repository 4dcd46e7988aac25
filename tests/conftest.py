from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT, clone_checkout, new_fine_tuner, toy_feedback, user_environment, write_tiny_bundle
from peru_sentiment import paths
from peru_sentiment.config import Params, load_params, load_yaml
from peru_sentiment.data import synthetic
from peru_sentiment.regions import load_regions


@pytest.fixture(scope="session", autouse=True)
def _store_in_a_temporary_folder(tmp_path_factory):
    """Servers and the predict command started by the tests store predictions here, not under data/store."""
    os.environ["SENTIMENT_STORE_URL"] = f"sqlite:///{tmp_path_factory.mktemp('store') / 'predictions.sqlite'}"


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a Unix socket (the Debian `postgresql` binaries: make system-deps)."""
    from peru_sentiment.store.local_postgres import LocalPostgres, postgres_binary

    if postgres_binary("initdb") is None:
        pytest.skip("PostgreSQL server binaries not found: `apt-get install postgresql` (make system-deps)")
    with LocalPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def regions():
    return load_regions(ROOT / paths.REGIONS)


@pytest.fixture(scope="session")
def phrasebook():
    return synthetic.load_phrasebook(ROOT / paths.PHRASEBOOK)


@pytest.fixture(scope="session")
def vocabulary():
    return load_yaml(ROOT / paths.VOCABULARY)


@pytest.fixture(scope="session")
def corpus(params, regions, phrasebook, vocabulary):
    """A 3,000-row synthetic corpus shared by the tests that only read it."""
    generate = params.generate.model_copy(update={"rows": 3000})
    return synthetic.generate_feedback(generate, regions, phrasebook, vocabulary, progress=False)


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
            "epochs": 4,
            "batch_size": 16,
            "learning_rate": 2e-3,
            "warmup_ratio": 0.1,
            "trainable_layers": 2,
            "max_length": 32,
            "bucket_lengths": [8, 16, 32],
            "jit_compile": False,
            "freeze_word_embeddings": False,
            "early_stopping_patience": 4,
            # the single-head classifier; tests/test_aspects.py switches the aspect heads on
            "aspects": params.train.aspects.model_copy(update={"enabled": False}),
        }
    )


@pytest.fixture(scope="session")
def tiny_trained(tiny_checkpoint, tiny_train_params):
    """A tiny classifier trained for a few seconds on the toy task, as a SentimentPredictor."""
    from peru_sentiment.training.trainer import encode_split

    fine_tuner = new_fine_tuner(tiny_checkpoint, tiny_train_params.model_copy(update={"epochs": 2}))
    fine_tuner.fit(
        encode_split(toy_feedback(300, seed=11), fine_tuner.encoder),
        encode_split(toy_feedback(60, seed=12), fine_tuner.encoder),
        verbose=0,
    )
    return fine_tuner.predictor()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_trained, tmp_path_factory, params):
    """The tiny classifier exported as a serving bundle (what `peru-sentiment export` writes)."""
    return write_tiny_bundle(tiny_trained, tmp_path_factory.mktemp("export") / "tiny-0", params.preprocess)


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
