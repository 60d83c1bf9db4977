"""A light training program for :func:`optuna_seer.rungs` tests: real processes, real DDP.

Follows the SEER_* contract through :func:`optuna_seer.worker.context.trial_context`: resumes
from the rung-end checkpoint, "trains" one epoch per ``sleep`` seconds to the rung's end,
reports ``x * epochs`` after every epoch (rank 0; with a ``loss`` parameter also the
tie-break ``val_loss`` = ``loss / epochs``), stops when the pruner says so, and saves
its checkpoint and training time. With several workers (torchrun) it joins a real
``torch.distributed`` gloo group and all-reduces once, so a world of ``k`` is ``k`` live
processes. Every launch appends ``{"trial", "rung", "world", "start", "end"}`` to the JSON
lines file named by ``SEER_TEST_LOG``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import tempfile
import time

from optuna_seer.integration.tie_break import TieBreak
from optuna_seer.worker.context import trial_context


def train() -> None:
    ctx = trial_context()
    start = time.time()
    if ctx.world_size > 1:
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")
        total = torch.ones(1)
        dist.all_reduce(total)
        assert int(total.item()) == ctx.world_size
    done = 0
    if ctx.resume_checkpoint:
        done = int(json.loads(Path(ctx.resume_checkpoint).read_text())["epochs"])
    x = float(ctx.params["x"])
    epoch = done
    for epoch in range(done + 1, ctx.target_epochs + 1):
        time.sleep(float(ctx.params.get("sleep", 0.05)))
        loss = ctx.params.get("loss")
        tie = None if loss is None else TieBreak("val_loss", float(loss) / epoch)
        ctx.report(epoch, x * epoch, tie_break=tie)
        if ctx.should_stop():
            break
    if ctx.is_global_zero:
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / "ckpt.json"
            local.write_text(json.dumps({"epochs": epoch}))
            ctx.save_checkpoint(local)
        ctx.record_training(time.time() - start, epoch - done)
        log = os.environ.get("SEER_TEST_LOG")
        if log:
            line = {
                "trial": ctx.trial_number,
                "rung": ctx.rung,
                "world": ctx.world_size,
                "start": start,
                "end": time.time(),
            }
            with open(log, "a") as out:
                out.write(json.dumps(line) + "\n")
    if ctx.world_size > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
