"""Choice of ``tf.distribute`` strategy for training."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def strategy_scope(name: str) -> Iterator[None]:
    """``default``: the default single-device strategy; ``mirrored``: synchronous data parallelism
    over every local GPU (falls back to one device where there is none)."""
    if name == "default":
        yield
        return
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    log.info("MirroredStrategy over %d replica(s)", strategy.num_replicas_in_sync)
    with strategy.scope():
        yield
