"""The model zoo: builders, seeded datasets, input specs and task metrics.

Importing this package is cheap; `models.zoo` loads the builders (and torch).
"""
