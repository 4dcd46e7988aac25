"""The command-line interface (``peru-sentiment``)."""
