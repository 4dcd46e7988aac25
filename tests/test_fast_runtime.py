"""The fast CPU model (OpenVINO) beside the SavedModel: its export, its accuracy gate, its use for predictions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from helpers import toy_feedback
from peru_sentiment.errors import ConfigError, DataError
from peru_sentiment.export import bundle as bundle_module
from peru_sentiment.export.bundle import BundleError, export_trained_model, load_bundle, verify_bundle
from peru_sentiment.export.fast_runtime import FAST_MODEL_DIR, FAST_MODEL_FILE, FastModel
from peru_sentiment.serving.settings import load_settings

openvino = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def fast_export(tiny_trained, params, tmp_path_factory):
    """The tiny model through the export stage with the fast model in bf16.

    The gate is looser than the shipped one: the barely trained tiny model sits near its decision
    boundaries, and bf16 moves one of these 90 labels (the e5 model: none of 512).
    """
    root = tmp_path_factory.mktemp("fast-export")
    loose = params.export.model_copy(update={"fast_max_f1_change": 0.05, "fast_max_flip_rate": 0.05})
    summary = export_trained_model(
        tiny_trained,
        params.model_copy(update={"export": loose}),
        root,
        training_labels=toy_feedback(30, seed=1)["label"],
        validation=toy_feedback(90, seed=12),
        checkpoint="tiny",
        extra_files={},
    )
    return summary, root


def test_export_ships_a_gated_fast_model_and_predictions_use_it(fast_export, tiny_trained):
    summary, _ = fast_export
    manifest = verify_bundle(load_bundle(summary["path"]).directory)
    figures = manifest["fast_model"]
    assert figures["runtime"] == "openvino" and figures["precision"] == "bf16"
    assert figures["validation_texts"] == 90
    assert abs(figures["macro_f1_change"]) <= 0.05 and figures["label_flip_rate"] <= 0.05
    assert any(name.startswith("openvino/") for name in manifest["files"])

    fast, tensorflow = load_bundle(summary["path"]), load_bundle(summary["path"], runtime="tensorflow")
    assert fast.fast_model is not None and fast.runtime == "openvino-bf16"
    assert tensorflow.fast_model is None and tensorflow.runtime == "tensorflow-fp32"
    texts = toy_feedback(40, seed=5)["text"].tolist()
    fast_probabilities, reference = fast.predict_proba(texts), tensorflow.predict_proba(texts)
    assert not np.array_equal(fast_probabilities, reference)  # really another runtime ...
    assert np.abs(fast_probabilities - reference).max() < 0.05  # ... computing the same model
    agreement = fast_probabilities.argmax(axis=1) == tiny_trained.predict_proba(texts).argmax(axis=1)
    assert agreement.mean() >= 0.95
    assert fast.explain(texts[0])["label"] == tensorflow.explain(texts[0])["label"]  # explain keeps the SavedModel


def test_the_fast_model_in_float32_reproduces_the_saved_model(fast_export):
    """Also after its layer norms were rewritten as OpenVINO's MVN op (``fuse_layer_norms``)."""
    summary, _ = fast_export
    bundle = load_bundle(summary["path"], runtime="tensorflow")
    graph = openvino.Core().read_model(str(bundle.directory / FAST_MODEL_DIR / FAST_MODEL_FILE))
    operations = Counter(node.get_type_name() for node in graph.get_ordered_ops())
    assert operations["MVN"] > 0 and operations["SquaredDifference"] == 0  # every norm rewritten
    float32 = FastModel(bundle.directory / FAST_MODEL_DIR, "f32")
    batch = {"token_ids": np.array([[2, 40, 41, 3], [2, 50, 3, 0]], np.int32)}
    batch["padding_mask"] = (np.arange(4) < np.array([[4], [3]])).astype(np.int32)
    np.testing.assert_allclose(float32(batch), bundle._probabilities(batch), atol=1e-5)


def test_server_workers_compile_the_fast_model_unpinned(fast_export):
    """Two one-thread workers pinned by OpenVINO shared the first core (55 instead of ~120 predictions/s)."""
    summary, _ = fast_export
    directory = load_bundle(summary["path"], runtime="tensorflow").directory / "openvino"
    server, batch_job = FastModel(directory, "f32", model_threads=1), FastModel(directory, "f32")
    assert server.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert server.compiled.get_property("ENABLE_CPU_PINNING") is False
    assert batch_job.compiled.get_property("NUM_STREAMS") == 1
    # gunicorn's default on 2 cores: one batch at a time per worker, on both cores when alone
    spread = FastModel(directory, "f32", model_threads=1, static_shapes=[(1, 8)], call_threads=2)
    for compiled in (spread.compiled, spread.static[(1, 8)]):
        assert compiled.get_property("NUM_STREAMS") == 1 and compiled.get_property("INFERENCE_NUM_THREADS") == 2


def test_fixed_shapes_compute_what_the_dynamic_model_computes(fast_export):
    """The server's fixed shapes: a batch runs padded on the smallest that fits, the others dynamically."""
    summary, _ = fast_export
    directory = load_bundle(summary["path"], runtime="tensorflow").directory / "openvino"
    fixed = FastModel(directory, "f32", model_threads=1, static_shapes=[(4, 16), (1, 8), (2, 8)])
    dynamic = FastModel(directory, "f32", model_threads=1)
    assert list(fixed.static) == [(1, 8), (2, 8), (4, 16)]  # smallest first
    assert fixed.fixed_shape_for(1, 5) == (1, 8) and fixed.fixed_shape_for(2, 9) == (4, 16)
    assert fixed.fixed_shape_for(5, 4) is None and fixed.fixed_shape_for(1, 17) is None
    rng = np.random.default_rng(0)
    for rows, pieces in [(1, 5), (2, 8), (3, 11), (5, 6), (1, 20)]:  # padded rows and pieces; two dynamic
        lengths = rng.integers(2, pieces + 1, rows)
        lengths[0] = pieces
        mask = (np.arange(pieces) < lengths[:, None]).astype(np.int32)
        batch = {"token_ids": rng.integers(4, 60, (rows, pieces)).astype(np.int32) * mask, "padding_mask": mask}
        outputs = fixed(batch)
        assert outputs.shape == (rows, 3)
        np.testing.assert_allclose(outputs, dynamic(batch), atol=1e-5)
    assert set(fixed._local.requests) == {(1, 8), (2, 8), (4, 16), None}  # each shape ran where it fits


def test_the_server_compiles_its_fixed_shapes_up_to_the_longest_input(fast_export):
    summary, _ = fast_export
    settings = load_settings(model_dir=summary["path"], fast_static_rows=[1, 4], fast_static_pieces=[16, 500])
    assert settings.static_shapes == [(1, 16), (1, 500), (4, 16), (4, 500)]
    bundle = load_bundle(summary["path"], model_threads=1, static_shapes=settings.static_shapes)
    longest = bundle.preprocessing["max_length"]
    assert list(bundle.fast_model.static) == [(1, 16), (1, longest), (4, 16), (4, longest)]
    texts = toy_feedback(12, seed=3)["text"].tolist()
    reference = load_bundle(summary["path"], model_threads=1).predict_proba(texts)
    np.testing.assert_allclose(bundle.predict_proba(texts), reference, atol=0.02)  # bf16 both; other shapes
    with pytest.raises(ConfigError, match="fast_static_rows"):
        load_settings(model_dir=summary["path"], fast_static_rows=[0])


class _LabelSwappingModel(FastModel):
    """A deliberately degraded fast model: the negative and positive probabilities swapped."""

    def __call__(self, batch):
        return super().__call__(batch)[:, ::-1]


def test_a_degraded_fast_model_is_refused_and_leaves_no_bundle(tiny_trained, params, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_module, "FastModel", _LabelSwappingModel)
    with pytest.raises(DataError, match=r"the fast model is refused: validation macro-F1 .* labels changed on"):
        export_trained_model(
            tiny_trained,
            params,
            tmp_path,
            training_labels=toy_feedback(30, seed=1)["label"],
            validation=toy_feedback(90, seed=12),
            checkpoint="tiny",
            extra_files={},
        )
    assert list(tmp_path.iterdir()) == []  # neither a bundle nor a staging folder nor LATEST


def test_runtime_choice_is_checked(tiny_bundle):
    assert load_bundle(tiny_bundle).fast_model is None  # a bundle without a fast model: the SavedModel
    with pytest.raises(BundleError, match="has no fast model"):
        load_bundle(tiny_bundle, runtime="fast")
    with pytest.raises(ConfigError, match="unknown runtime 'gpu'"):
        load_bundle(tiny_bundle, runtime="gpu")
