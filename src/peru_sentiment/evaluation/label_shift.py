"""Label shift: estimate a target set's label prior from the model's probabilities, and adjust for it.

Saerens, Latinne & Decaestecker (2002), "Adjusting the outputs of a classifier
to new a priori probabilities: a simple procedure". Under label shift
(p(x | y) fixed, p(y) changed) the posteriors on the target are the training
posteriors reweighted by p_target(y) / p_train(y) and renormalised; EM
alternates that reweighting with re-estimating p_target(y) as the mean of the
reweighted posteriors, using only unlabelled target texts.

EM needs calibrated probabilities: on text unlike its training data a model's
probabilities are often flat or overconfident, and EM then runs to a corner
(measured on real sets: a TF-IDF model's estimate put 0% on neutral for
tweets that are 48% neutral). :class:`LabelShift` can first calibrate them by
bias-corrected temperature scaling fitted on the validation split
(Alexandari, Kundaje & Shrikumar 2020: softmax(log p / T + b)), after which
they reflect the validation split's label shares. Without calibration the
prior behind the probabilities is the label shares of the training data, or
uniform when the loss was class-balanced (``train.class_weights``), since then
every class weighs the same in the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

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


@dataclass
class Calibration:
    """Bias-corrected temperature scaling: probabilities become softmax(log p / temperature + bias)."""

    temperature: float
    bias: np.ndarray

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        return softmax(_log(probabilities) / self.temperature + self.bias, axis=1)

    def summary(self) -> dict:
        return {"temperature": round(self.temperature, 4), "bias": np.round(self.bias, 4).tolist()}


def fit_calibration(probabilities: np.ndarray, label_ids: np.ndarray) -> Calibration:
    """The temperature and per-class bias minimising the negative log-likelihood of the true labels."""
    logits, rows = _log(probabilities), np.arange(len(label_ids))

    def negative_log_likelihood(theta: np.ndarray) -> float:
        return float(-log_softmax(logits / np.exp(theta[0]) + theta[1:], axis=1)[rows, label_ids].mean())

    theta = minimize(negative_log_likelihood, np.zeros(1 + probabilities.shape[1]), method="L-BFGS-B").x
    return Calibration(float(np.exp(theta[0])), theta[1:])


@dataclass
class LabelShift:
    """What adjusting a model's probabilities to a new label prior needs: the prior they reflect, a calibration."""

    source_prior: np.ndarray
    calibration: Calibration | None = None

    @classmethod
    def for_model(
        cls,
        training_labels: Sequence[str],
        class_balanced: bool,
        validation_probabilities: np.ndarray | None = None,
        validation_labels: Sequence[str] | None = None,
    ) -> LabelShift:
        """Calibrated on the validation split when its probabilities are given, else the raw probabilities."""
        if validation_probabilities is None:
            return cls(training_prior(training_labels, class_balanced))
        label_ids = np.array([LABELS.index(label) for label in validation_labels])
        calibration = fit_calibration(validation_probabilities, label_ids)
        return cls(np.bincount(label_ids, minlength=len(LABELS)) / len(label_ids), calibration)

    def prepare(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities if self.calibration is None else self.calibration.apply(probabilities)

    def estimate(self, probabilities: np.ndarray, max_iterations: int = 100, tolerance: float = 1e-6) -> PriorEstimate:
        return estimate_prior(self.prepare(probabilities), self.source_prior, max_iterations, tolerance)

    def adjust(self, probabilities: np.ndarray, target_prior: np.ndarray) -> np.ndarray:
        return adjust_to_prior(self.prepare(probabilities), self.source_prior, target_prior)


def _log(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probabilities, 1e-12, None))
