"""Measuring a user's training on a backend, to fit a
:class:`~optuna_seer.planning.profile.Profile`, and reading and writing profile files.
"""
