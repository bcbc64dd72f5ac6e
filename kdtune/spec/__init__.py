"""What to run: the study spec's schema, its search space, its conditions and the rules (phases, budgets, seeds) it
implies. No torch, no Ray.
"""
