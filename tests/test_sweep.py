"""Keras Tuner sweeps with the tiny model: locally, and distributed over loopback."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pandas as pd

from helpers import ROOT, toy_feedback
from peru_sentiment.training import sweep


def _space(trials=2):
    config = sweep.load_search_space(ROOT / "configs/tuning/smoke.yaml")
    return {**config, "max_trials": trials}


def test_two_trial_sweep_records_trials_and_best(tiny_checkpoint, tiny_train_params, tmp_path):
    params = tiny_train_params.model_copy(update={"epochs": 2})
    tuner = sweep.run_sweep(
        toy_feedback(240, 1),
        toy_feedback(60, 2),
        checkpoint=str(tiny_checkpoint),
        base=params,
        prefix="",
        config=_space(),
        directory=tmp_path / "sweep",
        train_rows=None,
        validation_rows=None,
    )
    table, best = sweep.summarize(tuner, params, tmp_path / "sweep")
    assert len(table) == 2 and (table["status"] == "COMPLETED").all()
    assert table["val_macro_f1"].between(0, 1).all() and (table["duration_s"] > 0).all()
    assert table["val_macro_f1"].is_monotonic_decreasing
    best_trial = table.iloc[0]
    assert best["learning_rate"] == best_trial["learning_rate"] and best["pooling"] == best_trial["pooling"]
    assert best["max_length"] == params.max_length  # not searched: the default stays
    assert not list((tmp_path / "sweep").rglob("*.weights.h5")), "trial weights are not kept"


WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import pandas as pd
    from peru_sentiment.config import TrainParams
    from peru_sentiment.training import sweep

    args = json.loads(sys.argv[1])
    params = TrainParams.model_validate(args["params"])
    directory = Path(args["directory"])
    tuner = sweep.run_sweep(
        pd.read_parquet(args["train"]), pd.read_parquet(args["validation"]), checkpoint=args["checkpoint"],
        base=params, prefix="", config=args["config"], directory=directory, train_rows=None, validation_rows=None,
    )
    if args["chief"]:
        table, _ = sweep.summarize(tuner, params, directory)
        print("SUMMARY" + table.to_json(orient="records"))
    """
)


def test_distributed_sweep_chief_and_two_workers_on_loopback(tiny_checkpoint, tiny_train_params, tmp_path):
    toy_feedback(240, 1).to_parquet(tmp_path / "train.parquet")
    toy_feedback(60, 2).to_parquet(tmp_path / "validation.parquet")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = {
        "train": str(tmp_path / "train.parquet"),
        "validation": str(tmp_path / "validation.parquet"),
        "checkpoint": str(tiny_checkpoint),
        "params": tiny_train_params.model_copy(update={"epochs": 1}).model_dump(),
        "config": _space(trials=4),
        "directory": str(tmp_path / "sweep"),
    }
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {
            **os.environ,
            "KERASTUNER_TUNER_ID": tuner_id,
            "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(port),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        payload = json.dumps({**args, "chief": tuner_id == "chief"})
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, "-c", WORKER, payload], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=300)
            assert process.returncode == 0, outputs[tuner_id][1][-3000:]
    finally:
        for process in processes.values():
            process.kill()
    summary = pd.DataFrame(json.loads(outputs["chief"][0].split("SUMMARY", 1)[1]))
    assert len(summary) == 4 and (summary["status"] == "COMPLETED").all()
    assert set(summary["worker"]) == {"tuner0", "tuner1"}, "both workers ran trials"
