"""Study names that make a re-runnable command resume its study."""

from __future__ import annotations

import optuna


def resumable_study_name(
    storage: str | optuna.storages.BaseStorage, base: str, *, fresh: bool = False
) -> str:
    """The study a re-runnable command works on, so that running it again resumes it.

    The newest of ``base``, ``base-2``, ``base-3``, ... in ``storage`` (``base`` when none
    exists); with ``fresh``, the next free name of that series. Pass it to
    ``optuna.create_study(..., load_if_exists=True)``: :meth:`ElasticTuner.run` then
    continues that study if its driver was stopped, or returns its stored result if it
    finished.

    Example:
        >>> storage = optuna.storages.InMemoryStorage()
        >>> resumable_study_name(storage, "digits")
        'digits'
        >>> _ = optuna.create_study(storage=storage, study_name="digits")
        >>> resumable_study_name(storage, "digits")
        'digits'
        >>> resumable_study_name(storage, "digits", fresh=True)
        'digits-2'
    """
    if not isinstance(base, str) or not base:
        raise ValueError(f"study name {base!r} must be a non-empty string.")
    names = set(optuna.get_all_study_names(storage))
    count = 1
    while (base if count == 1 else f"{base}-{count}") in names:
        count += 1
    if fresh or count == 1:
        return base if count == 1 else f"{base}-{count}"
    return base if count == 2 else f"{base}-{count - 1}"
