"""LocalBackend on real processes: env contract, failures with logs, stop, slots, torchrun DDP."""

from __future__ import annotations

import json
from pathlib import Path
import textwrap

import pytest

from optuna_seer.backends.base import LaunchSpec, LaunchState
from optuna_seer.backends.local import LocalBackend


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def _spec(entrypoint: str, workers: int = 1, trial: int = 0, **env: str) -> LaunchSpec:
    return LaunchSpec(
        study_name="s",
        storage="sqlite:///unused.db",
        trial_number=trial,
        params={"lr": 0.1},
        rung=0,
        target_epochs=1,
        workers=workers,
        checkpoint_uri="/tmp/unused",
        env=env,
        entrypoint=entrypoint,
    )


def _wait(backend: LocalBackend, handle: str) -> LaunchState:
    while not backend.wait([handle], 30.0):
        pass
    return backend.poll(handle).state


def test_launch_sees_the_contract_and_imports_this_checkout(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    script = _script(
        tmp_path,
        """
        import json, os, optuna_seer
        from optuna_seer.worker.context import trial_context
        ctx = trial_context()
        json.dump({"trial": ctx.trial_number, "params": dict(ctx.params),
                   "package": optuna_seer.__file__, "extra": os.environ["EXTRA"]},
                  open(os.environ["OUT"], "w"))
        """,
    )
    backend = LocalBackend(slots=1, log_dir=tmp_path / "logs")
    handle = backend.start(_spec(script, trial=7, OUT=str(out), EXTRA="yes"))
    assert backend.free_slots == 0 or backend.poll(handle).done
    assert _wait(backend, handle) is LaunchState.SUCCEEDED
    seen = json.loads(out.read_text())
    assert seen["trial"] == 7 and seen["params"] == {"lr": 0.1} and seen["extra"] == "yes"
    import optuna_seer

    assert Path(seen["package"]).resolve() == Path(optuna_seer.__file__).resolve()
    assert backend.free_slots == 1


def test_failure_carries_the_log_tail(tmp_path: Path) -> None:
    script = _script(tmp_path, "raise SystemExit('the data went missing')\n")
    backend = LocalBackend(slots=1, log_dir=tmp_path / "logs")
    handle = backend.start(_spec(script))
    assert _wait(backend, handle) is LaunchState.FAILED
    assert "the data went missing" in backend.poll(handle).message


def test_stop_ends_the_launch_and_frees_its_slots(tmp_path: Path) -> None:
    script = _script(tmp_path, "import time\ntime.sleep(120)\n")
    backend = LocalBackend(slots=2, log_dir=tmp_path / "logs")
    first = backend.start(_spec(script, trial=0))
    second = backend.start(_spec(script, trial=1))
    with pytest.raises(RuntimeError, match="only 0 slots are free"):
        backend.start(_spec(script, trial=2))
    backend.stop(first)
    assert backend.poll(first).state is LaunchState.STOPPED
    assert backend.free_slots == 1
    backend.release()
    assert backend.poll(second).state is LaunchState.STOPPED
    assert backend.free_slots == 2


def test_bad_requests_fail_early(tmp_path: Path) -> None:
    backend = LocalBackend(slots=2, log_dir=tmp_path)
    with pytest.raises(ValueError, match="wants 3 workers but LocalBackend has 2 slots"):
        backend.start(_spec("job.py", workers=3))
    with pytest.raises(ValueError, match="entrypoint is empty"):
        backend.start(_spec(""))
    with pytest.raises(ValueError, match="slots=0 must be >= 1"):
        LocalBackend(slots=0)
    with pytest.raises(TypeError, match="must be an int"):
        LocalBackend(slots=1.5)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_workers_form_a_real_gloo_world(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import os, torch, torch.distributed as dist
        dist.init_process_group("gloo")
        value = torch.tensor([float(dist.get_rank() + 1)])
        dist.all_reduce(value)
        if dist.get_rank() == 0:
            open(os.environ["OUT"], "w").write(f"{dist.get_world_size()} {value.item()}")
        dist.destroy_process_group()
        """,
    )
    out = tmp_path / "world.txt"
    backend = LocalBackend(slots=2, log_dir=tmp_path / "logs")
    handle = backend.start(_spec(script, workers=2, OUT=str(out)))
    assert backend.slots_of(handle) == (0, 1)
    assert _wait(backend, handle) is LaunchState.SUCCEEDED, backend.poll(handle).message
    assert out.read_text() == "2 3.0"
