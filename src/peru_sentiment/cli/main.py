"""The ``peru-sentiment`` console script: the app with every command registered."""

from __future__ import annotations

import os

import typer

from peru_sentiment.cli import stages, tools  # noqa: F401  (registers the commands on the app)
from peru_sentiment.cli.app import app
from peru_sentiment.errors import PipelineError

__all__ = ["app", "run"]


def run() -> None:
    """Console-script entry: user-fixable errors become one line on stderr and exit code 2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        app()
    except PipelineError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise SystemExit(2) from None
