"""Server configuration: ``configs/serve.yaml`` (or ``SENTIMENT_CONFIG``), overridden by ``SENTIMENT_*`` variables."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from peru_sentiment.errors import ConfigError
from peru_sentiment.store.database import parse_store_url

# The key under which the app keeps its state in Flask's `app.extensions` (read by the routes and
# gunicorn's hooks; defined here, away from the model code, so the gunicorn master need not import TensorFlow).
EXTENSION = "peru_sentiment"

DEFAULT_CONFIG = Path("configs/serve.yaml")
MIN_API_KEY_CHARS = 16


def config_file() -> Path:
    """``SENTIMENT_CONFIG``, or ``configs/serve.yaml`` under the working directory."""
    return Path(os.environ.get("SENTIMENT_CONFIG", DEFAULT_CONFIG))


class ServeSettings(BaseSettings):
    """The values and their comments live in ``configs/serve.yaml``; only machine-dependent defaults are here."""

    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", extra="forbid", frozen=True)

    model_dir: Path
    regions_file: Path
    max_body_bytes: int = Field(gt=0)
    max_items: int = Field(gt=0)
    max_text_chars: int = Field(gt=0)
    micro_batch_size: int = Field(gt=0)
    max_wait_ms: float = Field(ge=0)
    model_batch_size: int = Field(gt=0)
    model_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    model_call_threads: int = Field(default=1, gt=0)
    model_runtime: Literal["auto", "tensorflow", "fast"] = "auto"
    fast_static_rows: list[Annotated[int, Field(gt=0)]]
    fast_static_pieces: list[Annotated[int, Field(gt=0)]]
    request_timeout_s: float = Field(gt=0)
    warmup: bool
    max_concurrent_explains: int = Field(gt=0)
    max_explain_chars: int = Field(gt=0)
    max_attention_chars: int = Field(ge=0)
    # When set, /v1/* requires it; set it with SENTIMENT_API_KEY rather than in a file.
    api_key: SecretStr | None = None
    # The scored-feedback store (peru_sentiment.store): a database URL, or empty for no store.
    store_url: str | None
    store_text: bool
    store_queue_size: int = Field(gt=0)
    store_batch_rows: int = Field(gt=0)
    store_retention_days: int = Field(gt=0)

    @property
    def static_shapes(self) -> list[tuple[int, int]]:
        """The fixed (rows, pieces) shapes the fast model is compiled for: every rows x pieces pair."""
        return list(itertools.product(self.fast_static_rows, self.fast_static_pieces))

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        """A malformed URL stops the server at start, not at its first write."""
        if value is None or not value.strip():
            return None
        try:
            parse_store_url(value)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("api_key")
    @classmethod
    def _key_strong_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty or short key would look like protection without being any: refuse to start."""
        if value is not None:
            key = value.get_secret_value()
            if len(key.strip()) < MIN_API_KEY_CHARS or key != key.strip():
                raise ValueError(
                    f"the API key must be at least {MIN_API_KEY_CHARS} characters without surrounding spaces "
                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`); unset "
                    "SENTIMENT_API_KEY to run without authentication"
                )
        return value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, env_settings, *_, **__
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=config_file())


def load_settings(**overrides) -> ServeSettings:
    """Settings from the file and the environment; `overrides` win (tests, the benchmark)."""
    path = config_file()
    if not path.is_file():
        raise ConfigError(
            f"server settings {path} not found; run from the repository root or set SENTIMENT_CONFIG to the file"
        )
    try:
        return ServeSettings(**overrides)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors(include_input=False))
        raise ConfigError(f"invalid server settings ({problems}); check {path} and the SENTIMENT_* variables") from None
