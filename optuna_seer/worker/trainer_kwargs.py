"""Lightning ``Trainer`` arguments: SEER's (the launch's world) merged with the user's own.

``Trainer(**ctx.lightning_trainer_kwargs(), logger=WandbLogger())`` would pass ``logger``
twice; ``Trainer(**ctx.lightning_trainer_kwargs(logger=WandbLogger()))`` merges instead
(:func:`merge_trainer_kwargs`). No Lightning import here: the merge works for
``lightning.pytorch`` and ``pytorch_lightning`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A Trainer flag of ours, and the callback class-name suffix that the user's callbacks turn on.
_FLAG_CALLBACKS = {
    "enable_checkpointing": "Checkpoint",
    "enable_progress_bar": "ProgressBar",
    "enable_model_summary": "ModelSummary",
}
_WORLD = ("devices", "num_nodes")


def _as_list(value: Any) -> list[Any]:
    if value is None or value is False:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def merge_trainer_kwargs(seer: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    """SEER's ``Trainer`` arguments ``seer`` with the user's ``user``: no keyword twice.

    ``callbacks`` and ``logger`` lists are joined (SEER's first); a user's checkpoint,
    progress-bar or model-summary callback turns SEER's ``enable_…=False`` for it back on
    (Lightning refuses the pair); any other user value replaces SEER's, except the world
    (``devices``, ``num_nodes``), which a launch cannot change.

    Example:
        >>> merged = merge_trainer_kwargs({"logger": False, "devices": 2, "callbacks": ["seer"]},
        ...                               {"logger": "csv", "callbacks": ["mine"]})
        >>> merged["logger"], merged["callbacks"], merged["devices"]
        ('csv', ['seer', 'mine'], 2)
        >>> merge_trainer_kwargs({"devices": 2}, {"devices": 4})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: devices=4: this launch has devices=2 (its workers are started by the ...
    """
    merged = dict(seer)
    for name, value in user.items():
        if name in _WORLD and name in seer and value != seer[name]:
            raise ValueError(
                f"{name}={value!r}: this launch has {name}={seer[name]!r} (its workers are "
                f"started by the backend); leave {name} out of the Trainer arguments."
            )
        if name in ("callbacks", "logger"):
            joined = _as_list(seer.get(name)) + _as_list(value)
            if name == "logger" and not joined:
                merged[name] = value
            elif name == "logger" and len(joined) == 1:
                merged[name] = joined[0]
            else:
                merged[name] = joined
        else:
            merged[name] = value
    for flag, suffix in _FLAG_CALLBACKS.items():
        if (
            merged.get(flag) is False
            and flag not in user
            and any(
                klass.__name__.endswith(suffix)
                for callback in _as_list(merged.get("callbacks"))
                for klass in type(callback).__mro__
            )
        ):
            del merged[flag]
    return merged
