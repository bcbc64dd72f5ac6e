"""The language-model task's building blocks: corpus, tokenizers, token blocks, models, KD losses, the token cache
codec and the training loop. Core code: torch, numpy and pyarrow only (``transformers`` and ``tokenizers`` are the
optional ``lm`` extra); no Ray, W&B or Optuna. ``docs/language_models.md`` describes the choices and measurements.
"""
