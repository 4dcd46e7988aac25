from __future__ import annotations

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
