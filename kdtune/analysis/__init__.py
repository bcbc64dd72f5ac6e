"""Statistics of a finished or running study: run scoring, verdicts, sequential intervals, the alpha fit, the
recommendation, the exported student.
"""
