"""``optuna-seer profile``: measure epoch and start-up times and fit a :class:`Profile`.

Two sources: the built-in probe (a torch data-parallel MLP on 127.0.0.1: NCCL across GPUs,
gloo across CPU processes), or the user's
own trial (``--backend local --script file.py:function``) launched for real on
:class:`~optuna_seer.backends.local.LocalBackend`, reporting to a scratch SQLite study.

The profile can also carry the measured provisioning delays of past cloud launches (queue,
boot and setup of every launch that brought up a new cluster): from a file
``optuna-seer provisioning --out`` wrote (``--provisioning FILE``), or read from the studies
themselves (``--from-study STORAGE --study-name NAME``). ``plan``, ``simulate`` and ``tune``
given the profile then draw a new cluster's delay from them instead of the
``--queue``/``--boot`` constants. ``--update PROFILE`` adds them to an existing profile
without measuring anything again.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
import dataclasses
from pathlib import Path
import statistics
import tempfile
from typing import Any, TextIO

from optuna_seer.cli.extras import require_module
from optuna_seer.planning.profile import Profile, fit_profile
from optuna_seer.planning.provisioning import ProvisioningModel
from optuna_seer.profiling.harness import (
    ScratchTrials,
    load_profile,
    measure_contention,
    measure_on_backend,
    parse_json,
    read_json_file,
    save_profile,
)


def add_provisioning_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that put measured provisioning delays into the profile."""
    group = parser.add_argument_group("measured provisioning (kept in the profile)")
    group.add_argument(
        "--provisioning",
        type=Path,
        help="measured delays written by 'optuna-seer provisioning --out'",
    )
    group.add_argument(
        "--from-study",
        metavar="STORAGE",
        help="read the delays from the launches of --study-name studies in this storage",
    )
    group.add_argument(
        "--study-name",
        action="append",
        default=[],
        help="--from-study: a study whose launches count (repeatable)",
    )
    group.add_argument(
        "--update",
        type=Path,
        metavar="PROFILE",
        help="add the measured delays to this profile instead of measuring one",
    )


def measured_provisioning_of(args: argparse.Namespace) -> ProvisioningModel | None:
    """The measured provisioning ``--provisioning`` or ``--from-study`` name (``None`` if
    neither)."""
    if args.study_name and not args.from_study:
        raise ValueError(
            f"--study-name {args.study_name[0]!r} reads launches from a storage: add "
            "--from-study STORAGE_URL (e.g. sqlite:///runs.db)."
        )
    if args.from_study and args.provisioning:
        raise ValueError("--provisioning and --from-study both give the measured delays: pass one.")
    if args.provisioning:
        data = read_json_file(
            args.provisioning,
            "provisioning",
            "the JSON 'optuna-seer provisioning --out' writes",
        )
        try:
            model = ProvisioningModel.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--provisioning {args.provisioning}: {exc}") from None
        if not model.is_measured:
            raise ValueError(
                f"--provisioning {args.provisioning} holds no measured launches (its samples "
                "are empty); write it with 'optuna-seer provisioning --out'."
            )
        return model
    if args.from_study:
        if not args.study_name:
            raise ValueError(
                f"--from-study {args.from_study} needs --study-name NAME (repeatable): the "
                "studies whose launches measured provisioning."
            )
        from optuna_seer.execution.provisioning_samples import measured_provisioning
        from optuna_seer.storage.urls import open_existing_storage

        storage = open_existing_storage(args.from_study, "--from-study")
        return measured_provisioning(storage, args.study_name)
    return None


def cmd_profile(args: argparse.Namespace, out: TextIO) -> int:
    """``optuna-seer profile``: measure (or ``--update`` a profile), print the profile and
    write it to ``--out``."""
    provisioning = measured_provisioning_of(args)
    if args.update is not None:
        if provisioning is None:
            raise ValueError(
                f"--update {args.update} adds measured provisioning: give --provisioning FILE "
                "or --from-study STORAGE --study-name NAME."
            )
        profile = load_profile(args.update)
    else:
        profile = _measure(args, out)
    if provisioning is not None:
        profile = dataclasses.replace(profile, provisioning=provisioning)
    return _print_and_save_profile(profile, args.out, out)


def _measure(args: argparse.Namespace, out: TextIO) -> Profile:
    """The profile measured by the probe or, with ``--backend local``, the user's trial."""
    require_module("torch", "optuna-seer profile")  # the probe and the local workers run torch
    workers = tuple(sorted({c for group in args.workers for c in group}))
    if 1 not in workers:
        raise ValueError(f"--workers {workers} must include 1: speedups are relative to it.")
    if args.backend == "local":
        return _profile_local(args, workers, out)
    if args.script is not None or args.contention:
        raise ValueError("--script and --contention profile the user's trial: add --backend local.")
    from optuna_seer.profiling.probe import measure_local_ddp, probe_device

    args.epochs = args.epochs or [3]
    if len(args.epochs) != 1:
        raise ValueError(f"--epochs {args.epochs}: the probe takes one count (e.g. 3).")
    accelerator, ddp = probe_device()
    measurements = measure_local_ddp(
        workers, epochs=args.epochs[0], data_repeats=args.repeats, launches=args.launches
    )
    return fit_profile(
        measurements,
        scaling_model=args.scaling_model,
        checkpoint_gb=args.checkpoint_gb,
        accelerator=accelerator,
        source=f"optuna-seer profile: torch {ddp} data-parallel MLP on digits, 127.0.0.1",
    )


def _print_and_save_profile(profile: Profile, path: Path, out: TextIO) -> int:
    print(f"accelerator: {profile.accelerator}", file=out)
    for m in profile.measurements:
        print(
            f"{m.workers} worker(s): epoch {m.mean_epoch_seconds:.3f} s (cv {m.epoch_cv:.3f}), "
            f"start-up {statistics.fmean(m.startup_seconds):.2f} s",
            file=out,
        )
    print(f"scaling: {profile.curve.to_spec()}", file=out)
    contention = profile.contention_by_launches
    if len(contention) > 1:
        print(
            f"contention (slowdown when launches share the host): {_slowdowns(contention)}",
            file=out,
        )
    if profile.provisioning is not None:
        print(profile.provisioning.describe(), file=out)
    save_profile(profile, path)
    print(f"wrote {path}", file=out)
    return 0


def _slowdowns(contention: Mapping[int, float]) -> str:
    """``{1: 1.0, 2: 1.199}`` → ``"1 launch 1.00x, 2 launches 1.20x"``."""
    return ", ".join(
        f"{n} launch{'' if n == 1 else 'es'} {factor:.2f}x"
        for n, factor in sorted(contention.items())
    )


def _first_draw(script: str) -> dict[str, Any]:
    """One draw (seeded) of the search space defined next to ``script``."""
    import optuna

    from optuna_seer.execution.entry import search_space_of

    try:
        space = search_space_of(script)
    except ValueError:
        raise ValueError(
            f"{script} defines no search_space(trial); pass --params '{{\"lr\": 0.01, ...}}'."
        ) from None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space(trial)
    return dict(trial.params)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    """The hyperparameters every profiling launch trains with: ``--params`` or one draw."""
    if args.params is None:
        return _first_draw(args.script)
    try:
        params = parse_json(args.params, f"--params {args.params[:60]!r}")
    except ValueError as exc:
        raise ValueError(f"{exc}; write e.g. '{{\"lr\": 0.01}}'.") from None
    if not isinstance(params, dict):
        raise ValueError(f"--params {args.params!r} must be a JSON object.")
    return params


def _profile_local(args: argparse.Namespace, workers: tuple[int, ...], out: TextIO) -> Profile:
    """Profile the user's trial on :class:`LocalBackend`: real launches of ``--script``
    (``torchrun`` DDP for several workers) reporting to a scratch SQLite study."""
    import optuna

    from optuna_seer.backends.local import LocalBackend
    from optuna_seer.execution.entry import entrypoint_of

    if args.script is None:
        raise ValueError("--backend local needs --script file.py:function (the training).")
    if args.timeout <= 0:
        raise ValueError(f"--timeout {args.timeout} must be a duration > 0, e.g. 30m.")
    args.epochs = args.epochs or [1, 3]
    if len(args.epochs) != 2 or not 1 <= args.epochs[0] < args.epochs[1]:
        raise ValueError(f"--epochs {args.epochs}: give two counts a < b, e.g. --epochs 1 3.")
    epochs = (args.epochs[0], args.epochs[1])
    entrypoint = entrypoint_of(args.script)
    params = _params(args)
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {item!r} must be KEY=VALUE.")
        env[key] = value
    slots = args.slots or max(*workers, args.contention, 1)
    print(f"profiling {args.script} with params {params} on {slots} local slot(s)", file=out)
    with tempfile.TemporaryDirectory(prefix="seer-profile-") as scratch:
        storage = f"sqlite:///{Path(scratch) / 'profile.db'}"
        study = optuna.create_study(storage=storage, study_name="seer-profile")
        backend = LocalBackend(slots=slots, log_dir=args.log_dir or Path(scratch) / "logs", env=env)

        trials = ScratchTrials(
            study, storage, params, entrypoint, epochs[1], Path(scratch) / "ckpt"
        )
        measurements = measure_on_backend(
            backend, trials.spec, workers=workers, epochs=epochs, repeats=args.launches,
            timeout_s=args.timeout,
        )  # fmt: skip
        accelerator = backend.accelerator
        contention: dict[int, float] = {1: 1.0}
        if args.contention:
            # Alone and together in alternation (alone=None): on a shared host, launches
            # alone timed minutes before would measure the load's drift, not contention.
            contention[args.contention] = measure_contention(
                backend, trials.spec, None, launches=args.contention, epochs=epochs,
                repeats=args.launches, timeout_s=args.timeout,
            )  # fmt: skip
    return fit_profile(
        measurements,
        scaling_model=args.scaling_model,
        checkpoint_gb=args.checkpoint_gb,
        accelerator=accelerator,
        source=f"optuna-seer profile --backend local --script {args.script} (params {params})",
        contention=contention,
    )
