"""Errors a user can act on: the command line prints their message, never a traceback."""


class PipelineError(Exception):
    """Base of every error whose message tells the user what to fix."""


class ConfigError(PipelineError):
    """params.yaml, a config file or a declared input is missing or invalid."""


class DataError(PipelineError):
    """The data breaks an invariant a stage checks (row accounting, split leakage)."""
