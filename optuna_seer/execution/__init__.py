"""Running a plan: the elastic tuner loop and its report.

Drives a :class:`~optuna_seer.backends.base.Backend` through the rungs of a plan, keeps the
study's progress, and reports predicted against measured time and dollars.
"""
