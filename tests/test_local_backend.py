"""LocalBackend on real processes: env contract, failures with logs, stop, slots, torchrun DDP.

Nothing here assumes a slot count: backends take what the machine has (its GPUs, else CPU
slots), and the GPU paths are checked here with the machine's GPU list replaced
(``visible_gpus``), so 0, 1 or 8 GPUs behave alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import textwrap

import pytest

from optuna_seer.backends import local
from optuna_seer.backends.base import LaunchSpec, LaunchState
from optuna_seer.backends.local import LocalBackend, cpu_slots, machine_slots


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
    backend = LocalBackend(log_dir=tmp_path / "logs")  # every slot the machine has
    slots = backend.slots
    assert slots == machine_slots()
    handles = [backend.start(_spec(script, trial=n)) for n in range(slots)]
    with pytest.raises(RuntimeError, match="only 0 slots are free"):
        backend.start(_spec(script, trial=slots))
    backend.stop(handles[0])
    assert backend.poll(handles[0]).state is LaunchState.STOPPED
    assert backend.free_slots == 1
    backend.release()
    assert all(backend.poll(h).state is LaunchState.STOPPED for h in handles)
    assert backend.free_slots == slots


def test_bad_requests_fail_early(tmp_path: Path) -> None:
    backend = LocalBackend(log_dir=tmp_path)
    wider = backend.slots + 1
    with pytest.raises(
        ValueError, match=f"wants {wider} workers but LocalBackend has {backend.slots} slots"
    ):
        backend.start(_spec("job.py", workers=wider))
    with pytest.raises(ValueError, match="entrypoint is empty"):
        backend.start(_spec(""))
    with pytest.raises(ValueError, match="slots=0 must be >= 1"):
        LocalBackend(slots=0)
    with pytest.raises(TypeError, match="must be an int"):
        LocalBackend(slots=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence of GPU names"):
        LocalBackend(gpus="0,1")
    with pytest.raises(ValueError, match="names a GPU twice"):
        LocalBackend(gpus=("0", "0"))


@pytest.mark.parametrize("gpus", [(), ("0",), tuple(str(i) for i in range(8))])
def test_slots_default_to_the_machine(
    monkeypatch: pytest.MonkeyPatch, gpus: tuple[str, ...]
) -> None:
    monkeypatch.setattr(local, "visible_gpus", lambda: gpus)
    backend = LocalBackend()
    assert backend.slots == machine_slots() == (len(gpus) or cpu_slots())
    assert backend.gpus == gpus
    assert backend.ddp_backend == ("nccl" if gpus else "gloo")
    if gpus:
        with pytest.raises(ValueError, match=f"has {len(gpus)} GPUs .*use at most {len(gpus)}"):
            LocalBackend(slots=len(gpus) + 1)
    # CPU processes on any machine, as many as asked for.
    cpu = LocalBackend(slots=len(gpus) + 3, gpus=())
    assert (cpu.slots, cpu.gpus, cpu.ddp_backend, cpu.accelerator) == (
        len(gpus) + 3,
        (),
        "gloo",
        "cpu",
    )


def test_cpu_slots_follow_the_affinity_with_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(64)), raising=False)
    assert cpu_slots() == local.MAX_CPU_SLOTS and cpu_slots(cap=32) == 32
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {3}, raising=False)
    assert cpu_slots() == 1


@pytest.mark.parametrize(
    ("listed", "count", "expected"),
    [
        (None, 2, ("0", "1")),
        ("3,5", 2, ("3", "5")),
        ("GPU-aa, GPU-bb", 1, ("GPU-aa",)),  # torch stopped at the first bad entry
        ("", 0, ()),
    ],
)
def test_visible_gpus_name_them_as_cuda_visible_devices_does(
    monkeypatch: pytest.MonkeyPatch, listed: str | None, count: int, expected: tuple[str, ...]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if listed is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert local.visible_gpus() == expected


def test_each_launch_sees_only_its_own_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slots map to the machine's GPUs by name; CPU slots hide every GPU. (The launches only
    print the variable, so fake GPU names work on any machine.)"""
    monkeypatch.setattr(local, "visible_gpus", lambda: ("4", "5", "6"))
    script = _script(
        tmp_path,
        """
        import os, time
        open(os.environ["OUT"], "w").write(os.environ["CUDA_VISIBLE_DEVICES"])
        time.sleep(float(os.environ.get("HOLD", "0")))
        """,
    )
    backend = LocalBackend(log_dir=tmp_path / "logs")
    assert backend.slots == 3
    seen = [tmp_path / f"seen-{n}.txt" for n in range(2)]
    held = backend.start(_spec(script, trial=0, OUT=str(seen[0]), HOLD="60"))
    two = backend.start(_spec(script, workers=2, trial=1, OUT=str(seen[1])))  # torchrun
    assert backend.slots_of(two) == (1, 2)
    assert _wait(backend, two) is LaunchState.SUCCEEDED, backend.poll(two).message
    backend.release()
    assert backend.poll(held).state is LaunchState.STOPPED
    assert [p.read_text() for p in seen[:2]] == ["4", "5,6"]
    cpu = LocalBackend(slots=1, gpus=(), log_dir=tmp_path / "cpu-logs")
    out = tmp_path / "cpu.txt"
    assert _wait(cpu, cpu.start(_spec(script, OUT=str(out)))) is LaunchState.SUCCEEDED
    assert out.read_text() == ""


_WORLD = """
import os, socket, torch, torch.distributed as dist
if "RANK" not in os.environ:  # one worker runs without torchrun: a world of one
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
gpu = torch.cuda.is_available()
if gpu:
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl" if gpu else "gloo")
value = torch.tensor([float(dist.get_rank() + 1)], device="cuda" if gpu else "cpu")
dist.all_reduce(value)
if dist.get_rank() == 0:
    seen = f"{dist.get_world_size()} {value.item()} {dist.get_backend()}"
    open(os.environ["OUT"], "w").write(seen)
dist.destroy_process_group()
"""


def _world(backend: LocalBackend, tmp_path: Path, workers: int) -> str:
    out = tmp_path / "world.txt"
    handle = backend.start(_spec(_script(tmp_path, _WORLD), workers=workers, OUT=str(out)))
    assert backend.slots_of(handle) == tuple(range(workers))
    assert _wait(backend, handle) is LaunchState.SUCCEEDED, backend.poll(handle).message
    return out.read_text()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_workers_form_a_real_gloo_world(tmp_path: Path) -> None:
    backend = LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs")  # CPU on any machine
    assert _world(backend, tmp_path, 2) == "2 3.0 gloo"
    assert _world(backend, tmp_path, 1) == "1 1.0 gloo"  # no torchrun: a world of one


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_gpu_joins_one_nccl_world(tmp_path: Path) -> None:
    """k-GPU DDP on one node: one launch over every visible GPU, NCCL (k = 1: a world of
    one, no torchrun)."""
    backend = LocalBackend(log_dir=tmp_path / "logs")
    if not backend.gpus:
        pytest.skip("no GPU visible: the CPU world is test_two_workers_form_a_real_gloo_world")
    k = backend.slots
    assert backend.ddp_backend == "nccl" and backend.accelerator != "cpu"
    assert _world(backend, tmp_path, k) == f"{k} {k * (k + 1) / 2} nccl"


def test_the_launch_log_on_disk_holds_no_credential(tmp_path: Path) -> None:
    script = tmp_path / "leaky.py"
    script.write_text(
        "import os\n"
        "print('connecting with', os.environ['DB_PASSWORD'])\n"
        "print('token ghp_' + 'a' * 36)\n"
        "raise SystemExit(4)\n"
    )
    backend = LocalBackend(slots=1, gpus=(), log_dir=tmp_path / "logs")
    handle = backend.start(_spec(str(script), DB_PASSWORD="hunter2-but-longer"))
    assert _wait(backend, handle) is LaunchState.FAILED
    log = backend.log_path(handle).read_text()
    assert "connecting with ***" in log and "token ***" in log
    assert "hunter2-but-longer" not in log and "ghp_" + "a" * 36 not in log
    assert "hunter2-but-longer" not in backend.poll(handle).message
