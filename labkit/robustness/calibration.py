"""Are the predicted probabilities trustworthy? Expected calibration error (torchmetrics, 15
equal-width confidence bins), negative log-likelihood and Brier score, before and after
temperature scaling (Guo et al., 2017): one scalar T divides the logits, fitted by minimising
the NLL on the validation split, so the test split is not used to calibrate.

Our models train with label smoothing, which pulls confidences down; T below 1 then sharpens.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import multiclass_calibration_error

BINS = 15


def log_probabilities(probabilities: Tensor) -> Tensor:
    """Logits up to a per-row constant, which softmax ignores, so they scale like logits."""
    return probabilities.double().clamp(min=1e-12).log()


TEMPERATURE_RANGE = (0.01, 100.0)


def fit_temperature(logits: Tensor, labels: Tensor, iterations: int = 80) -> float:
    """The T in [0.01, 100] minimising the NLL of softmax(logits / T): a golden-section search on
    log T (the NLL is convex in 1/T, so it has one minimum there). A model no better than chance
    ends at the upper end: spreading its probabilities evenly is then the best it can do."""
    logits = logits.double()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), labels))

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    nll_a, nll_b = nll(a), nll(b)
    for _ in range(iterations):
        if nll_a <= nll_b:
            high, b, nll_b = b, a, nll_a
            a = high - ratio * (high - low)
            nll_a = nll(a)
        else:
            low, a, nll_a = a, b, nll_b
            b = low + ratio * (high - low)
            nll_b = nll(b)
    return math.exp((low + high) / 2)


def scores(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> dict:
    """ECE (15 bins, as a fraction), NLL, Brier score (sum over classes, mean over images) and
    accuracy of softmax(logits / T)."""
    probabilities = (logits.double() / temperature).softmax(1)
    one_hot = F.one_hot(labels, probabilities.shape[1]).double()
    return {"ece": float(multiclass_calibration_error(probabilities.float(), labels, num_classes=probabilities.shape[1],
                                                      n_bins=BINS, norm="l1")),
            "nll": float(F.nll_loss(probabilities.clamp(min=1e-12).log(), labels)),
            "brier": float(((probabilities - one_hot) ** 2).sum(1).mean()),
            "accuracy": float((probabilities.argmax(1) == labels).double().mean())}


def reliability_bins(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> list[dict]:
    """Per confidence bin (15 equal widths over [0, 1]): image count, mean confidence, accuracy.
    The count-weighted mean |accuracy − confidence| is the ECE."""
    probabilities = (logits.double() / temperature).softmax(1)
    confidence, predicted = probabilities.max(1)
    correct = (predicted == labels).double()
    index = (confidence * BINS).floor().long().clamp(max=BINS - 1)   # bins [a, b), the last [a, 1]
    rows = []
    for b in range(BINS):
        members = index == b
        count = int(members.sum())
        rows.append({"low": b / BINS, "high": (b + 1) / BINS, "count": count,
                     "confidence": float(confidence[members].mean()) if count else None,
                     "accuracy": float(correct[members].mean()) if count else None})
    return rows




def calibrate(val_probabilities: Tensor | None, val_labels: Tensor | None, test_probabilities: Tensor,
              test_labels: Tensor) -> dict:
    """Fit T on val, then score test before and after; with the reliability bins of both. Without a
    val split (a final fit on all training images) no temperature can be fitted without looking at
    the test split: test is scored as it is, and the temperature and the 'after' entries are None."""
    test_logits = log_probabilities(test_probabilities)
    if val_probabilities is None:
        return {"temperature": None, "before": scores(test_logits, test_labels), "after": None,
                "val_before": None, "val_after": None, "bins_before": reliability_bins(test_logits, test_labels),
                "bins_after": None}
    val_logits = log_probabilities(val_probabilities)
    temperature = fit_temperature(val_logits, val_labels)
    return {"temperature": temperature,
            "before": scores(test_logits, test_labels), "after": scores(test_logits, test_labels, temperature),
            "val_before": scores(val_logits, val_labels), "val_after": scores(val_logits, val_labels, temperature),
            "bins_before": reliability_bins(test_logits, test_labels),
            "bins_after": reliability_bins(test_logits, test_labels, temperature)}
