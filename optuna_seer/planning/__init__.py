"""The planning core: budgets, workloads and profiles, scaling, costs, plans and planners.

Pure: the standard library and numpy only (no Optuna, torch, boto3 or SkyPilot, no I/O); an
import-linter contract in ``pyproject.toml`` keeps it so. Everything here takes numbers and
returns plans, schedules or simulated outcomes.
"""
