"""Training-step throughput of the classifier: length buckets against padding to a fixed length.

Measures, in one run on this machine:
- the float32 matmul peak (2048x2048 ``tf.matmul`` in a ``tf.function``),
- examples/s and real (non-padding) tokens/s of the training step with the
  ``train`` parameters, once with length buckets and once with every batch
  padded to ``max_length`` (the naive way),
- the achieved FLOP/s on real tokens (training ~ 3x forward,
  forward ~ L * 2 * (4H^2 + 2HF) per token) as a fraction of that peak.

Usage (after `dvc repro split pretrained`):
    python benchmarks/train_throughput.py --steps 12 --repeats 3
Writes reports/benchmarks/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from peru_sentiment import paths


def matmul_peak(size: int = 2048, runs: int = 10) -> float:
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    step = tf.function(lambda: tf.matmul(a, b))
    step().numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def time_training(classifier, encoded, *, bucket_lengths, pad_to_bucket, steps, repeats, batch_size):
    """Median examples/s and real tokens/s over `repeats` timings of `steps` training steps."""
    from peru_sentiment.model.inputs import make_dataset
    from peru_sentiment.schema import LABELS
    from peru_sentiment.training.trainer import compile_classifier

    dataset = make_dataset(
        encoded.ids,
        encoded.labels,
        batch_size=batch_size,
        bucket_lengths=bucket_lengths,
        pad_id=classifier.encoder.pad_id,
        num_classes=len(LABELS),
        shuffle_seed=0,
        pad_to_bucket=pad_to_bucket,
        drop_remainder=True,
        aspect_ids=encoded.aspects,
    ).repeat()
    model = classifier.model
    compile_classifier(model, classifier.params, total_steps=10_000)
    iterator = iter(dataset)
    batches = [next(iterator) for _ in range(steps * (repeats + 1))]
    warmup, timed = batches[:steps], batches[steps:]
    for inputs, targets in warmup:  # compiles every shape
        model.train_on_batch(inputs, targets)
    example_rates, token_rates = [], []
    for repeat in range(repeats):
        chunk = timed[repeat * steps : (repeat + 1) * steps]
        tokens = sum(int(np.sum(inputs["padding_mask"])) for inputs, _ in chunk)
        examples = sum(int(inputs["token_ids"].shape[0]) for inputs, _ in chunk)
        start = time.perf_counter()
        for inputs, targets in chunk:
            model.train_on_batch(inputs, targets)
        elapsed = time.perf_counter() - start
        example_rates.append(examples / elapsed)
        token_rates.append(tokens / elapsed)
    return statistics.median(example_rates), statistics.median(token_rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=paths.PARAMS)
    parser.add_argument("--train", type=Path, default=paths.split_file("train"))
    parser.add_argument("--texts", type=int, default=2048, help="training texts to sample from")
    parser.add_argument("--steps", type=int, default=12, help="training steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--mixed-precision", choices=["none", "mixed_bfloat16"], help="override train.mixed_precision")
    parser.add_argument("--out", type=Path, default=paths.BENCHMARKS / "train_throughput.json")
    args = parser.parse_args()

    from peru_sentiment.config import load_params
    from peru_sentiment.model.inputs import bucket_lengths_for
    from peru_sentiment.training.trainer import FineTuner, set_global_training_state

    params = load_params(args.params)
    overrides = {"batch_size": args.batch_size, "mixed_precision": args.mixed_precision}
    train_params = params.train.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    frame = pd.read_parquet(args.train).sample(args.texts, random_state=0)
    peak = matmul_peak()
    results = {
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "batch_size": train_params.batch_size,
        "mixed_precision": train_params.mixed_precision,
        "texts": args.texts,
        "modes": {},
    }
    config = json.loads((Path(params.model.checkpoint) / "config.json").read_text())
    hidden, layers, ff = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    train_flops_per_token = 3 * layers * 2 * (4 * hidden**2 + 2 * hidden * ff)
    max_length = train_params.max_length
    modes = {
        "buckets": (bucket_lengths_for(max_length, train_params.bucket_lengths), train_params.jit_compile),
        f"padded_to_{max_length}": ([max_length], True),
    }
    for name, (lengths, pad_to_bucket) in modes.items():
        set_global_training_state(train_params)
        classifier = FineTuner(params.model.checkpoint, train_params, params.model.text_prefix)
        encoded = classifier.encode(frame)
        examples, tokens = time_training(
            classifier,
            encoded,
            bucket_lengths=lengths,
            pad_to_bucket=pad_to_bucket,
            steps=args.steps,
            repeats=args.repeats,
            batch_size=train_params.batch_size,
        )
        achieved = tokens * train_flops_per_token
        results["modes"][name] = {
            "examples_per_s": round(examples, 2),
            "real_tokens_per_s": round(tokens, 1),
            "achieved_gflops_on_real_tokens": round(achieved / 1e9, 1),
            "fraction_of_peak": round(achieved / peak, 3),
        }
        print(name, results["modes"][name], flush=True)
    padded = results["modes"][f"padded_to_{max_length}"]["examples_per_s"]
    results["bucket_speedup"] = round(results["modes"]["buckets"]["examples_per_s"] / padded, 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
