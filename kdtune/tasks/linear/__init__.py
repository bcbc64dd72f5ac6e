"""The linear regression task with its closed-form optimum (alpha* = B / (B + V))."""
