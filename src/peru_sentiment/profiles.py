"""Profiles: named sets of parameter values (``configs/profiles/<name>.yaml``) written into params.yaml.

``peru-sentiment profile smoke`` sets every value the smoke profile names and
leaves the rest of params.yaml — comments included — as it was, so DVC sees an
ordinary parameter change and reruns what it affects.
"""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from peru_sentiment import paths
from peru_sentiment.config import load_params
from peru_sentiment.errors import ConfigError

PROFILES_DIR = paths.CONFIGS / "profiles"


def available(directory: Path = PROFILES_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.yaml"))


def apply_profile(name: str, params_path: Path = paths.PARAMS, directory: Path = PROFILES_DIR) -> list[str]:
    """Write the profile's values into `params_path`; return the dotted keys that changed."""
    profile_path = directory / f"{name}.yaml"
    if not profile_path.is_file():
        raise ConfigError(f"no profile {name!r}; choose one of {', '.join(available(directory))}")
    if not params_path.is_file():
        raise ConfigError(f"no parameters file {params_path}; run from the project root or pass --params PATH")
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # keep long flow-style lines as written
    yaml.indent(mapping=2, sequence=4, offset=2)
    params = yaml.load(params_path.read_text(encoding="utf-8"))
    changed: list[str] = []
    _merge(params, YAML(typ="safe").load(profile_path.read_text(encoding="utf-8")) or {}, "", changed)
    with params_path.open("w", encoding="utf-8") as stream:
        yaml.dump(params, stream)
    load_params(params_path)  # the result must still be valid
    return changed


def _merge(target, overrides: dict, prefix: str, changed: list[str]) -> None:
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in target:
            raise ConfigError(f"profile sets {path}, which params.yaml does not have")
        if isinstance(value, dict):
            _merge(target[key], value, f"{path}.", changed)
        elif target[key] != value:
            target[key] = value
            changed.append(path)
