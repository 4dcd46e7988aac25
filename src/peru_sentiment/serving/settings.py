"""Server configuration: ``configs/serve.yaml`` (or ``SENTIMENT_CONFIG``), overridden by ``SENTIMENT_*`` variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from peru_sentiment.errors import ConfigError

DEFAULT_CONFIG = Path("configs/serve.yaml")


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", extra="forbid", frozen=True)

    model_dir: Path = Path("models/export")
    regions_file: Path = Path("configs/regions.yaml")
    max_body_bytes: int = Field(1 << 20, gt=0)
    max_items: int = Field(64, gt=0)
    max_text_chars: int = Field(5000, gt=0)
    micro_batch_size: int = Field(4, gt=0)
    max_wait_ms: float = Field(0, ge=0)
    model_batch_size: int = Field(32, gt=0)
    model_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    request_timeout_s: float = Field(20, gt=0)
    warmup: bool = True
    max_concurrent_explains: int = Field(1, gt=0)
    # Only from the environment (SENTIMENT_API_KEY): when set, /v1/* requires it.
    api_key: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, env_settings, *_, **__
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("SENTIMENT_CONFIG", DEFAULT_CONFIG))
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=config_file)


def load_settings(**overrides) -> ServeSettings:
    """Settings from the file and the environment; `overrides` win (tests, the benchmark)."""
    config_file = Path(os.environ.get("SENTIMENT_CONFIG", DEFAULT_CONFIG))
    if "SENTIMENT_CONFIG" in os.environ and not config_file.is_file():
        raise ConfigError(f"SENTIMENT_CONFIG points to {config_file}, which does not exist")
    try:
        return ServeSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False))
        raise ConfigError(
            f"invalid server settings ({problems}); check {config_file} and the SENTIMENT_* variables"
        ) from None
