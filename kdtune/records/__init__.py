"""What a study writes and how it is read back: the study folder, the results and trials tables, Optuna storage,
dashboard marks, status.
"""
