"""A training script without a model for the node entry point's tests: each "epoch" sleeps,
reports, and saves a small state through the epoch checkpoints (stored every 100 epochs, so
only a SIGTERM stores one), then exits on SIGTERM after storing the newest epoch."""

from __future__ import annotations

import json
from pathlib import Path
import sys
import tempfile
import time

from optuna_seer.worker.context import trial_context
from optuna_seer.worker.epoch_checkpoints import (
    CheckpointSchedule,
    EpochCheckpoints,
    catch_sigterm,
)


def main() -> None:
    ctx = trial_context()
    epoch = 0
    if ctx.resume_checkpoint is not None:
        epoch = json.loads(Path(ctx.resume_checkpoint).read_text())["epoch"]
    checkpoints = EpochCheckpoints(ctx, CheckpointSchedule(every_epochs=100))
    checkpoints.start(epoch)
    state = Path(tempfile.mkdtemp()) / "state.json"
    with catch_sigterm() as sigterm:
        while epoch < ctx.target_epochs:
            for _ in range(10):  # one epoch: 10 "batches"
                if sigterm:
                    checkpoints.flush()
                    print(f"SIGTERM after epoch {epoch}", flush=True)
                    sys.exit(143)
                time.sleep(0.05)
            epoch += 1
            ctx.report(epoch, epoch / 100)
            state.write_text(json.dumps({"epoch": epoch}))
            checkpoints.epoch_ended(epoch, state, store=checkpoints.due(epoch))
    state.write_text(json.dumps({"epoch": epoch}))
    ctx.save_checkpoint(state)
    checkpoints.rung_stored()
    print(f"resumed done at epoch {epoch}", flush=True)


if __name__ == "__main__":
    main()
