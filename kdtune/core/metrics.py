"""What a classifier's predictions measure: test accuracy, loss, macro-F1 and per-class accuracy against the
clean labels, how the flipped training labels fared (corrected or memorised), and for a teacher's logits how
safe they are to distil from (calibration, soft-target entropy).

One definition for the student's every epoch (:class:`~kdtune.core.train.Trainer`), the teacher's kept epoch
(:func:`kdtune.cache.teacher.train_teacher`) and the diagnostics the cache records with every logits entry
(:func:`teacher_diagnostics`): apart from the training loop, because they measure the same way whoever trained
the model, or whether anyone did (imported logits).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from typing import Any

import torch
import torch.nn.functional as F

from kdtune.core.data import DataBundle
from kdtune.core.data import Split


if TYPE_CHECKING:
    from kdtune.core.train import TeacherLogits


DIAGNOSTIC_TEMPERATURES = (1.0, 4.0, 10.0, 20.0)
ECE_BINS = 15


def held_out_metrics(test_logits: torch.Tensor, flipped_pred: torch.Tensor | None, test: Split, train: Split,
                     num_classes: int) -> dict[str, Any]:
    """The test split's numbers (clean labels) and the flipped training samples' (``flipped_pred``: the predicted
    classes of ``train``'s flipped samples, None without flips), as :class:`~kdtune.core.train.EpochMetrics` fields. A teacher
    measures its kept epoch from the logits it computes for the cache anyway (:func:`kdtune.cache.teacher.train_teacher`).
    """
    test_pred = test_logits.argmax(1)
    per_class, macro_f1 = class_metrics(test_pred, test.clean, num_classes)
    correction = memorisation = None
    if flipped_pred is not None:
        correction = float((flipped_pred == train.clean[train.flipped]).float().mean())
        memorisation = float((flipped_pred == train.y[train.flipped]).float().mean())
    return {"test_loss": float(F.cross_entropy(test_logits, test.clean)),
            "test_accuracy": float((test_pred == test.clean).float().mean()), "test_macro_f1": macro_f1,
            "test_per_class_accuracy": per_class, "correction_rate": correction, "memorisation_rate": memorisation}


def class_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[list[float], float]:
    """Per-class accuracy (recall) and macro-F1 from a confusion matrix; a class absent from ``target`` counts 0."""
    confusion = torch.bincount(target * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    confusion = confusion.double()
    tp = confusion.diag()
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros_like(tp))
    return recall.tolist(), float(f1.mean())


def teacher_diagnostics(
    logits: TeacherLogits, data: DataBundle, *, temperatures: tuple[float, ...] = DIAGNOSTIC_TEMPERATURES
) -> dict[str, Any]:
    """How good and how safe a teacher is to distil from, computed once from its logits.

    * ``test_accuracy`` (clean labels), ``val_accuracy`` (noisy labels, what selection saw);
    * ``correction_rate`` / ``memorisation_rate``: on the training samples whose labels were flipped, the
      share it predicts as the clean / the noisy label (None without flips);
    * ``ece``: expected calibration error on test (15 equal-width confidence bins);
    * ``entropy``: mean entropy of softmax(logits / T) on test, as a share of log K, per temperature
      (near 1 the soft targets are almost uniform and carry little information).
    """
    test_prob = torch.softmax(logits.test, dim=1)
    confidence, test_pred = test_prob.max(1)
    correct = (test_pred == data.test.clean).double()
    ece = 0.0
    edges = torch.linspace(0, 1, ECE_BINS + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += float(in_bin.double().mean() * (confidence[in_bin].double().mean() - correct[in_bin].mean()).abs())
    flipped = data.train.flipped
    correction = memorisation = None
    if bool(flipped.any()):
        flipped_pred = logits.train[flipped].argmax(1)
        correction = float((flipped_pred == data.train.clean[flipped]).double().mean())
        memorisation = float((flipped_pred == data.train.y[flipped]).double().mean())
    log_k = math.log(data.num_classes)
    entropy = {}
    for t in temperatures:
        log_p = torch.log_softmax(logits.test / t, dim=1)
        entropy[str(t)] = float(-(log_p.exp() * log_p).sum(1).mean() / log_k)
    return {
        "test_accuracy": float(correct.mean()),
        "val_accuracy": float((logits.val.argmax(1) == data.val.y).double().mean()),
        "correction_rate": correction,
        "memorisation_rate": memorisation,
        "ece": ece,
        "entropy": entropy,
    }
