"""Attention, rollout, integrated gradients and word alignment on a tiny BERT (and e5's tokenizer)."""

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from helpers import new_fine_tuner
from peru_sentiment.explain.attention import attention_model, attention_rollout
from peru_sentiment.explain.attribution import integrated_gradients
from peru_sentiment.explain.explain import explain_text
from peru_sentiment.explain.tokens import align_words
from peru_sentiment.model.inputs import pad_batch

TEXTS = ["pedí hoy bacán!!", "frío horrible, pésimo roche tarde casa", "ok"]


@pytest.fixture(scope="module", params=["mean", "cls"])
def predictor(request, tiny_checkpoint, tiny_train_params):
    """An untrained tiny classifier (random head): explanations need weights, not accuracy."""
    params = tiny_train_params.model_copy(update={"pooling": request.param, "dropout": 0.5})
    return new_fine_tuner(tiny_checkpoint, params).predictor()


@pytest.fixture(scope="module")
def batch(predictor):
    return pad_batch(predictor.encoder.encode(TEXTS), predictor.encoder.pad_id)


def test_attention_model_matches_the_classifier_and_attention_is_normalised(predictor, batch):
    outputs = attention_model(predictor.model)(batch)
    np.testing.assert_allclose(outputs["logits"], predictor.model(batch, training=False), atol=1e-5)
    attention = np.asarray(outputs["attention"])
    mask = batch["padding_mask"].astype(bool)
    assert attention.shape == (3, 2, 2, mask.shape[1], mask.shape[1])  # batch, layers, heads, query, key
    np.testing.assert_allclose(attention.sum(axis=-1), 1, atol=1e-5)
    padded_keys = np.broadcast_to(~mask[:, None, None, None, :], attention.shape)
    assert mask.sum() < mask.size and np.all(attention[padded_keys] == 0), "padding gets no attention"


def test_rollout_rows_sum_to_one_over_real_tokens_and_padding_gets_nothing(predictor, batch):
    attention = np.asarray(attention_model(predictor.model)(batch)["attention"])
    rollout = attention_rollout(attention, batch["padding_mask"])
    for row, mask in enumerate(batch["padding_mask"].astype(bool)):
        np.testing.assert_allclose(rollout[row][mask].sum(axis=-1), 1, atol=1e-6)
        assert not rollout[row][~mask].any() and not rollout[row][:, ~mask].any()
        single = attention_rollout(attention[row], batch["padding_mask"][row])
        np.testing.assert_allclose(single, rollout[row])
    identity = np.broadcast_to(np.eye(4), (3, 2, 4, 4))  # every token attends to itself only
    np.testing.assert_allclose(attention_rollout(identity, np.ones(4)), np.eye(4))
    uniform = np.full((1, 1, 2, 2), 0.5)  # one layer: 0.5 * uniform + 0.5 * identity
    np.testing.assert_allclose(attention_rollout(uniform, np.ones(2)), [[0.75, 0.25], [0.25, 0.75]])


@pytest.mark.parametrize("target", [0, 2])
def test_integrated_gradients_are_complete(predictor, batch, target):
    ids, mask = batch["token_ids"][1], batch["padding_mask"][1]
    keep = np.zeros_like(mask, dtype=bool)
    keep[0] = True  # [CLS] stays in the baseline
    result = integrated_gradients(predictor.model, ids, mask, target, steps=64, keep=keep)
    assert result.scores.shape == ids.shape and result.scores[0] == 0 and not result.scores[~mask.astype(bool)].any()
    logit = float(predictor.model(pad_batch([ids[mask.astype(bool)]], 0), training=False)[0, target])
    assert result.logit == pytest.approx(logit, abs=1e-4)
    assert abs(result.logit_difference) > 1e-3, "a difference to explain"
    assert result.scores.sum() == pytest.approx(result.logit_difference, rel=0.02, abs=1e-3)


def test_words_are_shown_as_written_for_wordpiece(tiny_checkpoint):
    tokenizer = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    text = "Pedí hoy: bacánísimo!! 😡"
    encoding = tokenizer.encode(text)
    alignment = align_words(encoding, text)
    assert alignment.words == ["Pedí", "hoy:", "bacánísimo!!", "😡"] and not alignment.truncated
    assert any(token.startswith("##") for token in encoding.tokens), "the test needs split words"
    assert alignment.piece_word[0] == -1 and alignment.piece_word[-1] == -1  # [CLS], [SEP]
    merged = alignment.merge(np.ones(len(encoding.ids)))
    assert merged.tolist() == [np.sum(alignment.piece_word == i) for i in range(4)]


def test_words_are_shown_as_written_for_sentencepiece_with_the_prefix():
    from peru_sentiment.model.embedded_e5 import default_tokenizer

    tokenizer = Tokenizer.from_file(str(default_tokenizer()))
    text = "La comida llegó fría!! 😡 y [EMAIL] bacán"
    encoding = tokenizer.encode("query: " + text)
    alignment = align_words(encoding, text, prefix="query: ")
    assert alignment.words == text.split()
    prefix_pieces = [t for t, w in zip(encoding.tokens, alignment.piece_word, strict=True) if w == -1]
    assert prefix_pieces == ["<s>", "▁que", "ry", ":", "</s>"]
    assert alignment.merge(np.arange(len(encoding.ids), dtype=float)).sum() == sum(
        i for i, w in enumerate(alignment.piece_word) if w >= 0
    )
    tokenizer.enable_truncation(8)
    truncated = align_words(tokenizer.encode("query: " + text), text, prefix="query: ")
    assert truncated.truncated and truncated.words == text.split()[: len(truncated.words)]


def test_explain_text_is_a_consistent_json_payload(predictor):
    text = "frío horrible, pésimo roche"
    result = json.loads(json.dumps(explain_text(predictor, text, steps=64)))
    assert result["words"] == text.split()
    assert result["label"] == predictor.predict([text])[0]
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert len(result["rollout"]) == len(result["integrated_gradients"]) == 4
    assert all(score > 0 for score in result["rollout"]) and sum(result["rollout"]) < 1
    assert sum(result["integrated_gradients"]) == pytest.approx(result["logit_difference"], rel=0.02, abs=1e-3)
    pieces = len(result["tokens"])
    assert np.shape(result["attention"]) == (2, 2, pieces, pieces) and len(result["token_words"]) == pieces
