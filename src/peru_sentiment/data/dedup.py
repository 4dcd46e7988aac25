"""Exact and near-duplicate detection of feedback texts.

Exact duplicates share a normalised key (case, accents and spacing ignored).
Near-duplicates are found with MinHash locality-sensitive hashing over
character shingles of that key (datasketch): two texts are near-duplicates when
their estimated Jaccard similarity reaches ``NearDuplicateParams.threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH

from peru_sentiment.config import NearDuplicateParams
from peru_sentiment.text.normalize import comparison_key


def _minhashes(keys: Sequence[str], params: NearDuplicateParams) -> list[MinHash]:
    size = params.shingle_size
    shingles = [{key[i : i + size].encode() for i in range(max(1, len(key) - size + 1))} for key in keys]
    return MinHash.bulk(shingles, num_perm=params.num_perm, seed=params.seed)


def _is_near(first: MinHash, second: MinHash, params: NearDuplicateParams) -> bool:
    return first.jaccard(second) >= params.threshold


def first_occurrences(texts: Sequence[str], params: NearDuplicateParams) -> np.ndarray:
    """For each text, the index of the earlier kept text it duplicates, or -1 if it is kept.

    Texts are visited in order; a text is dropped when it is an exact or near
    duplicate of a text already kept, so every dropped text points to a kept one.
    """
    keys = [comparison_key(text) for text in texts]
    hashes = _minhashes(keys, params)
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    kept_by_key: dict[str, int] = {}
    duplicate_of = np.full(len(texts), -1, dtype=np.int64)
    for index, (key, minhash) in enumerate(zip(keys, hashes, strict=True)):
        if key in kept_by_key:
            duplicate_of[index] = kept_by_key[key]
            continue
        near = sorted(i for i in lsh.query(minhash) if _is_near(hashes[i], minhash, params))
        if near:
            duplicate_of[index] = near[0]
            continue
        kept_by_key[key] = index
        lsh.insert(index, minhash)
    return duplicate_of


def duplicate_groups(texts: Sequence[str], params: NearDuplicateParams) -> np.ndarray:
    """Group id per text: texts linked by any chain of (near-)duplicates share a group.

    Used by the split, which must keep every group inside one split.
    """
    keys = [comparison_key(text) for text in texts]
    parent = np.arange(len(texts))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_by_key: dict[str, int] = {}
    unique: list[int] = []
    for index, key in enumerate(keys):
        if key in first_by_key:
            join(first_by_key[key], index)
        else:
            first_by_key[key] = index
            unique.append(index)
    hashes = _minhashes([keys[i] for i in unique], params)
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    for position, minhash in enumerate(hashes):
        for other in lsh.query(minhash):
            if _is_near(hashes[other], minhash, params):
                join(unique[other], unique[position])
        lsh.insert(position, minhash)
    return np.array([root(i) for i in range(len(texts))])


def cross_duplicates(texts: Sequence[str], others: Sequence[str], params: NearDuplicateParams) -> list[tuple[int, int]]:
    """Pairs (i, j) where ``texts[i]`` is an exact or near duplicate of ``others[j]``."""
    other_keys = [comparison_key(text) for text in others]
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    other_hashes = _minhashes(other_keys, params)
    for j, minhash in enumerate(other_hashes):
        lsh.insert(j, minhash)
    by_key: dict[str, int] = {}
    for j, key in enumerate(other_keys):
        by_key.setdefault(key, j)
    keys = [comparison_key(text) for text in texts]
    pairs = []
    for i, (key, minhash) in enumerate(zip(keys, _minhashes(keys, params), strict=True)):
        if key in by_key:
            pairs.append((i, by_key[key]))
            continue
        near = [j for j in lsh.query(minhash) if _is_near(other_hashes[j], minhash, params)]
        if near:
            pairs.append((i, min(near)))
    return pairs
