"""kdtune: hyperparameter studies for response-based knowledge distillation.

alpha is the weight on the true labels everywhere in kdtune: alpha = 1 means no distillation.
"""

from __future__ import annotations


__version__ = "0.1.0"
