"""Label shift: estimate a target set's label prior from the model's probabilities, and adjust for it.

Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier
to new a priori probabilities: a simple procedure". Under label shift
(p(x | y) fixed, p(y) changed) the posteriors on the target are the training
posteriors reweighted by p_target(y) / p_train(y) and renormalised; EM
alternates that reweighting with re-estimating p_target(y) as the mean of the
reweighted posteriors, using only unlabelled target texts.

The training prior is the one the model's probabilities reflect: the label
shares of its training data, or uniform when the loss was class-balanced
(``train.class_weights``), since then every class weighs the same in the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from peru_sentiment.schema import LABELS


@dataclass
class PriorEstimate:
    prior: np.ndarray  # estimated target label prior, in LABELS order
    iterations: int
    converged: bool


def training_prior(labels: Sequence[str], class_balanced: bool) -> np.ndarray:
    """The label prior behind the model's probabilities (uniform under class-balanced weights)."""
    if class_balanced:
        return np.full(len(LABELS), 1 / len(LABELS))
    counts = np.array([sum(1 for label in labels if label == name) for name in LABELS], dtype=float)
    if counts.sum() == 0:
        raise ValueError("no training labels to take the prior from")
    return counts / counts.sum()


def adjust_to_prior(probabilities: np.ndarray, source_prior: np.ndarray, target_prior: np.ndarray) -> np.ndarray:
    """Posteriors reweighted from `source_prior` to `target_prior` (Bayes' rule), rows summing to 1."""
    weighted = probabilities * (np.asarray(target_prior) / np.asarray(source_prior))
    return weighted / np.clip(weighted.sum(axis=1, keepdims=True), 1e-12, None)


def estimate_prior(
    probabilities: np.ndarray, source_prior: np.ndarray, max_iterations: int = 100, tolerance: float = 1e-6
) -> PriorEstimate:
    """EM estimate of the label prior of the texts behind `probabilities` (no labels needed)."""
    if len(probabilities) == 0:
        raise ValueError("no texts to estimate a label prior from")
    prior = np.asarray(source_prior, dtype=float)
    for iteration in range(1, max_iterations + 1):
        updated = adjust_to_prior(probabilities, source_prior, prior).mean(axis=0)
        change = float(np.abs(updated - prior).max())
        prior = updated
        if change < tolerance:
            return PriorEstimate(prior, iteration, True)
    return PriorEstimate(prior, max_iterations, False)
