"""Orchestration: a study run on Ray Tune with one Optuna search per condition (driver, searcher, trial, callbacks,
checks, estimate, Ray, W&B tracking).
"""
