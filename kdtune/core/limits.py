"""Numeric limits of distillation that the spec, the command line and the training loop share (no torch here:
the spec's readers stay light)."""

from __future__ import annotations


#: The lowest softmax temperature: logits / T overflows to infinity below it (T = 1e-300 made every loss NaN, even
#: at alpha = 1, where the soft term is multiplied by zero: 0 * NaN is NaN).
MIN_TEMPERATURE = 0.01
TOO_COLD = "logits / T overflow below it and every loss becomes NaN"
