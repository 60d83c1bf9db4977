"""A light training script that follows the SEER_* contract, for backend tests.

Runs under ``torchrun`` but imports no torch: each epoch is arithmetic. It resumes from the
JSON checkpoint in ``SEER_RESUME_FROM``, "trains" to ``SEER_TARGET_EPOCHS``, reports
``score = x * epochs`` to the study (rank 0) and writes ``rung-<r>.ckpt`` (rank 0) recording
every launch's world size, so a test can check lineage and placement. ``fail`` in the params
makes it exit 3; ``sleep`` makes every epoch take that many seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys
import time

import optuna

from optuna_seer.storage.urls import open_storage
from optuna_seer.worker.context import trial_context


def main() -> int:
    context = trial_context()
    if context.params.get("fail"):
        return 3
    history: list[dict[str, int]] = []
    done = 0
    if context.resume_checkpoint:
        saved = json.loads(Path(context.resume_checkpoint).read_text())
        history, done = saved["history"], saved["epochs"]
    for _ in range(done, context.target_epochs):
        time.sleep(float(context.params.get("sleep", 0.0)))
    history.append({"rung": context.rung, "world_size": context.world_size})
    if context.rank == 0:
        checkpoint = {"epochs": context.target_epochs, "history": history}
        target = Path(context.checkpoint_uri) / f"rung-{context.rung}.ckpt"
        target.write_text(json.dumps(checkpoint))
        storage = open_storage(context.storage)
        study_id = storage.get_study_id_from_name(context.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, context.trial_number)
        study = optuna.load_study(study_name=context.study_name, storage=storage)
        score = float(context.params["x"]) * context.target_epochs
        optuna.trial.Trial(study, trial_id).report(score, context.target_epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
