"""The task-agnostic core: data types, label noise, the training loop and the KD losses. Never Ray, W&B or Optuna."""
