import pytest
import yaml

from helpers import ROOT
from peru_sentiment.config import load_params
from peru_sentiment.errors import ConfigError


def _write(tmp_path, change):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_repository_params_are_valid(params):
    assert params.generate.rows >= 20000
    assert params.ingest.sources == []  # the default run imports nothing and stays offline


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["generate"].update(rows=0), "generate.rows"),
        (lambda p: p["generate"].update(typo_rate=0.1), "generate.typo_rate: Extra inputs"),
        (lambda p: p["generate"]["incidents"][0].update(aspect="weather"), "unknown aspect 'weather'"),
        (lambda p: p["generate"]["channels"].update(fax={}), "generate.channels.fax"),
        (lambda p: p["generate"]["no_opinion"]["survey"].update(rant=0.1), "generate.no_opinion.survey"),
        (lambda p: p["generate"]["words"].pop("survey"), "generate.words needs a length"),
        (lambda p: p["generate"]["styles"].update(implicit=0.9), "statement style probabilities"),
        (lambda p: p["split"].update(test=1.5), "split.test"),
        (
            lambda p: p["train"]["aspects"]["names"].append("weather"),
            "train.aspects.names: Value error, unknown aspects",
        ),
    ],
)
def test_invalid_params_name_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_params(_write(tmp_path, change))


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("generate: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "broken.yaml")


def test_params_mark_every_key_the_sweep_may_override():
    """A reader of params.yaml sees which train keys configs/tuning can replace."""
    from peru_sentiment.config import Hyperparameters

    train = (ROOT / "params.yaml").read_text().split("\ntrain:\n")[1].split("\n\n")[0].splitlines()
    marked = {line.split(":")[0].strip() for line in train if "# [tuned]" in line}
    assert marked == set(Hyperparameters.model_fields)
    for space in (ROOT / "configs/tuning").glob("*.yaml"):
        assert set(yaml.safe_load(space.read_text())["space"]) <= marked, space.name
