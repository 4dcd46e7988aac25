from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import ROOT, new_fine_tuner, run_command, toy_feedback
from peru_sentiment import paths
from peru_sentiment.config import Params, load_params, load_yaml
from peru_sentiment.data import synthetic
from peru_sentiment.regions import load_regions


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
    from peru_sentiment.export.bundle import preprocessing_settings, write_bundle

    return write_bundle(
        tiny_trained.model,
        tiny_trained.encoder.tokenizer,
        tmp_path_factory.mktemp("export") / "tiny-0",
        labels=tiny_trained.labels,
        checkpoint="tiny",
        explain_steps=16,
        preprocessing=preprocessing_settings(params.preprocess, tiny_trained.encoder, tiny_trained.bucket_lengths),
        training_distribution={"negative": 0.3, "neutral": 0.2, "positive": 0.5},
    )


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory) -> Path:
    """The whole pipeline on the smoke profile, run once with `dvc repro` in its own git + DVC repository.

    Shared by the CLI, report and notebook tests. Only test_cli changes it
    afterwards (one evaluate parameter, then `dvc repro` again).
    """
    project = tmp_path_factory.mktemp("smoke")
    for name in ("dvc.yaml", "params.yaml", "configs", "src", "data/external"):
        source, target = ROOT / name, project / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    run_command(["peru-sentiment", "profile", "smoke"], project)
    run_command(["git", "init", "-q"], project)
    run_command(["dvc", "init", "-q"], project)
    run_command(["git", "add", "-A"], project)
    run_command(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "smoke"], project)
    run_command(["dvc", "repro"], project)
    return project
