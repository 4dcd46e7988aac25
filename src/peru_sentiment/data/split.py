"""The ``split`` stage: stratified train / validation / test without duplicate leakage.

Exact and near-duplicate texts are grouped first (``dedup.duplicate_groups``)
and every group goes whole into one split, stratified by label and language
(scikit-learn's StratifiedGroupKFold). A separate check then compares the
finished splits text by text and fails the stage if any duplicate crosses them.
Rows imported with role ``external`` are held out as their own evaluation set,
less any that duplicate a text of the training pool. Rows imported with role
``unlabelled`` go to their own table, never into a labelled split, less any
that duplicate a validation, test or external text.
Topics (NMF) are fitted on the training split only and assigned to every split.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from peru_sentiment.config import NearDuplicateParams, SplitParams
from peru_sentiment.data.dedup import cross_duplicates, duplicate_groups
from peru_sentiment.errors import DataError
from peru_sentiment.text.features import TopicModel

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def _hold_out(frame: pd.DataFrame, fraction: float, groups: np.ndarray, seed: int) -> np.ndarray:
    """Boolean mask of about `fraction` of the rows, whole groups only, stratified by label x language."""
    folds = max(2, round(1 / fraction))
    strata = frame["label"].astype(str) + "|" + frame["language"].astype(str)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    _, held = next(splitter.split(frame, strata, groups))
    mask = np.zeros(len(frame), dtype=bool)
    mask[held] = True
    return mask


def assign_splits(frame: pd.DataFrame, params: SplitParams, near: NearDuplicateParams) -> pd.Series:
    """Split name per row of the training pool."""
    groups = duplicate_groups(frame["text"].tolist(), near)
    log.info("%d rows form %d duplicate groups", len(frame), len(np.unique(groups)))
    test = _hold_out(frame, params.test, groups, params.seed)
    rest = np.flatnonzero(~test)
    validation_share = params.validation / (1 - params.test)
    validation = np.zeros(len(frame), dtype=bool)
    validation[rest[_hold_out(frame.iloc[rest], validation_share, groups[rest], params.seed)]] = True
    return pd.Series(np.select([test, validation], ["test", "validation"], "train"), index=frame.index)


def find_leakage(splits: dict[str, pd.DataFrame], near: NearDuplicateParams) -> list[dict]:
    """Every pair of rows in different splits whose texts are exact or near duplicates."""
    leaks = []
    for first, second in itertools.combinations([name for name in splits if len(splits[name])], 2):
        pairs = cross_duplicates(splits[second]["text"].tolist(), splits[first]["text"].tolist(), near)
        for i, j in pairs:
            leaks.append(
                {
                    "splits": [first, second],
                    "ids": [splits[first]["feedback_id"].iloc[j], splits[second]["feedback_id"].iloc[i]],
                }
            )
    return leaks


def check_leakage(splits: dict[str, pd.DataFrame], near: NearDuplicateParams) -> None:
    """Raise DataError if any exact or near duplicate crosses two splits."""
    leaks = find_leakage(splits, near)
    if leaks:
        examples = "; ".join(
            f"{leak['ids'][0]} ({leak['splits'][0]}) ~ {leak['ids'][1]} ({leak['splits'][1]})" for leak in leaks[:5]
        )
        raise DataError(f"{len(leaks)} duplicate texts cross splits, e.g. {examples}")


def split_feedback(
    frame: pd.DataFrame, params: SplitParams, near: NearDuplicateParams
) -> tuple[dict[str, pd.DataFrame], dict[int, list[str]], dict]:
    """Split the training pool, hold out external rows, check leakage and add ``topic_id``."""
    pool = frame[frame["role"] == "train"].reset_index(drop=True)
    if pool.empty:
        raise DataError("no rows to split: every row is external; add synthetic data or a train source")
    assignment = assign_splits(pool, params, near)
    splits = {name: pool[assignment == name].reset_index(drop=True) for name in SPLITS}
    external, overlap = separate_seen_texts(frame[frame["role"] == "external"].reset_index(drop=True), pool, near)
    splits["external"] = external
    log.info("checking the splits for leakage")
    check_leakage(splits, near)
    splits["unlabelled"], unlabelled_seen = unlabelled_rows(frame, splits, near)

    topics = TopicModel(params.topics).fit(splits["train"]["text_classical"])
    for _name, split in splits.items():
        split["topic_id"] = topics.assign(split["text_classical"]) if len(split) else pd.Series(dtype="int64")

    summary = {
        "rows_in": len(frame),
        "rows_out": sum(len(split) for split in splits.values()),
        "external_rows_seen_in_training_pool": len(overlap),
        "unlabelled_rows_seen_in_evaluation_sets": unlabelled_seen,
        "sizes": {name: len(split) for name, split in splits.items()},
        "label_shares": {
            name: {k: round(float(v), 4) for k, v in split["label"].value_counts(normalize=True).sort_index().items()}
            for name, split in splits.items()
            if len(split) and name != "unlabelled"
        },
    }
    return splits, overlap, topics.top_words(), summary


def separate_seen_texts(
    external: pd.DataFrame, pool: pd.DataFrame, near: NearDuplicateParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split external rows into (unseen, seen): seen ones duplicate a text of the training pool.

    An evaluation set must not hold texts the model may have trained on (short
    reviews such as "great app" occur in both); the seen rows are kept aside
    with the id of the pool text they duplicate.
    """
    if external.empty:
        return external, external.assign(duplicate_of=pd.Series(dtype="str"))
    pairs = cross_duplicates(external["text"].tolist(), pool["text"].tolist(), near)
    seen = np.zeros(len(external), dtype=bool)
    duplicate_of = np.full(len(external), None, dtype=object)
    for i, j in pairs:
        seen[i] = True
        duplicate_of[i] = pool["feedback_id"].iloc[j]
    if seen.any():
        role = external["role"].iloc[0]
        log.warning("%d %s rows duplicate texts they must not share; they are left out", seen.sum(), role)
    overlap = external[seen].assign(duplicate_of=duplicate_of[seen]).reset_index(drop=True)
    return external[~seen].reset_index(drop=True), overlap


def unlabelled_rows(
    frame: pd.DataFrame, splits: dict[str, pd.DataFrame], near: NearDuplicateParams
) -> tuple[pd.DataFrame, int]:
    """The imported unlabelled rows, less those duplicating an evaluation text; (rows, how many were dropped).

    Self-training must not see (and pseudo-label) a text the model is later scored on.
    """
    unlabelled = frame[frame["role"] == "unlabelled"].reset_index(drop=True)
    evaluation = pd.concat([splits[name] for name in ("validation", "test", "external")], ignore_index=True)
    kept, seen = separate_seen_texts(unlabelled, evaluation, near)
    return kept, len(seen)
