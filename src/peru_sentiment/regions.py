"""The regions of Peru (``configs/regions.yaml``): read by the generator, the import and the server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from peru_sentiment.config import load_yaml
from peru_sentiment.errors import ConfigError
from peru_sentiment.schema import UNKNOWN_REGION
from peru_sentiment.text.normalize import comparison_key


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    population: int
    places: tuple[str, ...]


def load_regions(path: str | Path) -> list[Region]:
    """Read ``configs/regions.yaml``."""
    raw = load_yaml(path).get("regions") or []
    try:
        regions = [Region(r["code"], r["name"], int(r["population"]), tuple(r["places"])) for r in raw]
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: every region needs code, name, population and places ({error})") from None
    if not regions:
        raise ConfigError(f"{path} lists no regions")
    return regions


def region_names(regions: list[Region]) -> dict[str, str]:
    """Region code to name."""
    return {region.code: region.name for region in regions}


def region_lookup(names: Mapping[str, str]) -> dict[str, str]:
    """Map region codes and names (any case or accents) to region codes, for :func:`region_code`."""
    lookup = {}
    for code, name in names.items():
        lookup[comparison_key(code)] = code
        lookup[comparison_key(name)] = code
    return lookup


def region_code(value: str | None, lookup: Mapping[str, str]) -> str:
    """The ISO 3166-2:PE code of a region given by code or name, any case, accents or not; else ``unknown``."""
    return lookup.get(comparison_key(value), UNKNOWN_REGION) if value else UNKNOWN_REGION
