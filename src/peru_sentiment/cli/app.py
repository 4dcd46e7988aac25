"""The command-line application: the Typer app, logging and the options several commands share.

Commands live beside it, by concern: ``stages`` (one command per DVC stage) and
``tools`` (prediction, serving, store, review, monitoring, experiments);
``main`` puts them together. A DVC stage depends on this module, ``main`` and
``stages`` only, so a new tool command does not make the pipeline stale.
"""

from __future__ import annotations

import logging

import typer

from peru_sentiment import paths

app = typer.Typer(
    help="Customer-feedback sentiment for Peru: the DVC pipeline stages and tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("peru_sentiment")

ParamsOption = typer.Option(paths.PARAMS, "--params", help="Parameters file.")
ProgressOption = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")


def record_option(stage: str):
    """The ``--record`` option of a stage: where its metadata (rows, duration) goes."""
    return typer.Option(paths.stage_record(stage), "--record", help="Stage metadata (DVC metrics).")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # per-plugin INFO lines; the store logs what it migrated
