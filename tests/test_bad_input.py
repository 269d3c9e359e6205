"""The bad inputs of the reliability review (issue 14), one test per row: each is one ``raytrain: error:`` line and a
non-zero exit, nothing half-written, nothing run from a pickle. No Ray is started here (the checks run before it)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from raytrain import files
from raytrain.cli import main
from raytrain.config import load_config
from raytrain.errors import RaytrainError
from raytrain.methods import build_method
from raytrain.train import checkpoint as ckpt

MARKER = "raytrain-pwned-marker"


class Evil:
    """A pickle that would create a marker file when loaded without ``weights_only``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    lines = [ln for ln in err if ln.startswith("raytrain: error:")]
    assert len(lines) == 1 and "Traceback" not in "\n".join(err), err
    return lines[0]


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    iio.imwrite(d / "a.png", (np.random.default_rng(0).random((24, 24)) * 255).astype(np.uint8))
    return d


def dncnn_model(tmp_path: Path, width: int, stored_width: int | None = None) -> Path:
    """A DnCNN ``model.pt`` with nets of ``width`` and a stored config that says ``stored_width``."""
    cfg = load_config(None, ["method.depth=3", f"method.width={width}"])
    said = load_config(None, ["method.depth=3", f"method.width={stored_width or width}"])
    path = tmp_path / f"w{width}_says{stored_width}.pt"
    ckpt.export_inference(path, build_method(cfg, torch.device("cpu")), said.model_dump_json())
    return path


# ----------------------------------------------------------------------------------------------- resources
def test_train_with_more_workers_than_cores_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    rc = main(["train", "--set", f"workdir={tmp_path}", "--set", "tracking.enabled=false", "--num-workers", "1024"])
    line = one_error_line(capsys)
    assert rc == 1 and "1024 workers x 1 CPUs = 1024 CPUs, this machine has 2" in line and "num_workers" in line
    assert not (tmp_path / "ray").exists()


# ------------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", ["../../escaped", "..", "a/b", ".hidden"])
def test_sweep_and_ablation_names_cannot_leave_the_workdir(tmp_path, capsys, name):
    root = Path(__file__).resolve().parents[1]
    base = [str(root / "configs/dncnn_awgn25.yaml"), "--set", f"workdir={tmp_path / 'w'}", "--name", name]
    assert main(["tune", *base, "--space", str(root / "search_spaces/denoiser.yaml")]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"raytrain: error: --name {name!r}:") and "names a folder under the workdir" in line
    assert main(["ablate", *base, "--grid", "seed=0,1"]) == 1
    assert one_error_line(capsys).startswith(f"raytrain: error: --name {name!r}:")
    assert not (tmp_path / "w").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_sweep_whose_trials_all_fail_exits_non_zero_and_its_parent_run_is_failed(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    import raytrain.train.launch as launch
    from raytrain.tune import driver
    from raytrain.tune.space import Space, parse_param

    class Result:  # what a Tune ResultGrid yields for an errored trial
        error = RaytrainError("data: bad pair x.png")

    class Tuner:
        def fit(self):
            return [Result(), Result()]

    monkeypatch.setattr(launch, "connect", lambda *a, **k: None)
    monkeypatch.setattr(launch, "check_resources", lambda *a, **k: None)
    monkeypatch.setattr(driver, "trial_resources", lambda cfg: {"cpu": 0.01})
    monkeypatch.setattr(driver, "make_tuner", lambda *a, **k: Tuner())
    cfg = load_config(None, [f"workdir={tmp_path}"])
    space = Space(params={"train.lr": parse_param("train.lr", {"loguniform": [1e-4, 1e-2]}, "test")}, origin="test")
    with pytest.raises(RaytrainError, match=r"all 2 trial\(s\) failed; the first: data: bad pair x.png"):
        driver.run_sweep(cfg, space, "s", 2, 1, ["val_psnr"], ["max"])
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]


# ---------------------------------------------------------------------------------------- checkpoints/pickles
def test_a_model_whose_weights_do_not_fit_its_config_is_one_line(tmp_path, image_dir, capsys):
    model = dncnn_model(tmp_path, width=8, stored_width=16)
    assert main(["denoise", str(model), str(image_dir), str(tmp_path / "out")]) == 1
    line = one_error_line(capsys)
    assert str(model) in line and "do not fit the net its config builds" in line and "size mismatch" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_malicious_pickle_is_refused_in_one_line_by_every_loader(tmp_path, image_dir, capsys):
    marker = tmp_path / MARKER
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "method": "dncnn", "payload": Evil(marker)}, evil)
    assert main(["denoise", str(evil), str(image_dir), str(tmp_path / "out")]) == 1
    assert "refused" in one_error_line(capsys)
    from raytrain.nn.inception import load_inception

    with pytest.raises(RaytrainError, match="evil.pt: cannot load Inception-v3 weights .*refused"):
        load_inception(evil)
    (tmp_path / "ck").mkdir()
    torch.save(Evil(marker), tmp_path / "ck" / "rng_rank1.pt")
    with pytest.raises(RaytrainError, match="rng_rank1.pt: cannot load .*refused"):
        ckpt.load_rank_rng(tmp_path / "ck", 1)
    assert not marker.exists()


def test_resume_from_a_bad_state_fails_on_the_driver_before_any_worker(tmp_path, monkeypatch):
    """A refused pickle, a foreign method and weights of another width: one line each, before Ray starts (a worker
    failure would be retried and print every worker's traceback)."""
    import raytrain.train.launch as launch

    started = []
    monkeypatch.setattr(launch, "connect", lambda *a, **k: started.append(1))
    base = [f"workdir={tmp_path}", "tracking.enabled=false", "method.depth=3", "method.width=16"]
    marker = tmp_path / MARKER
    bad = tmp_path / "evil"
    bad.mkdir()
    torch.save(Evil(marker), bad / ckpt.STATE)
    with pytest.raises(RaytrainError, match=r"state.pt: cannot load a raytrain checkpoint \(refused"):
        launch.run_training(load_config(None, [*base, f"train.resume_from={bad}"]))
    narrow = load_config(None, [*base, "method.width=8"])
    method = build_method(narrow, torch.device("cpu"))
    (tmp_path / "narrow").mkdir()
    ckpt.save_checkpoint(tmp_path / "narrow", method, 5, narrow.model_dump_json(), {})
    with pytest.raises(RaytrainError, match=r"narrow: net denoiser: the stored weights do not fit .*size mismatch"):
        launch.run_training(load_config(None, [*base, f"train.resume_from={tmp_path / 'narrow'}"]))
    assert not started and not marker.exists()


# ------------------------------------------------------------------------------------------------- writes
def test_denoise_onto_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path, image_dir, capsys, monkeypatch):
    model = dncnn_model(tmp_path, width=8)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    out = tmp_path / "out"
    assert main(["denoise", str(model), str(image_dir), str(out)]) == 1
    assert one_error_line(capsys).endswith(f"{out / 'a.png'}: cannot write (no space left on the device)")
    assert list(out.iterdir()) == []  # no hidden .a.png.tmpPID


def test_denoise_into_a_read_only_folder_is_one_line(tmp_path, image_dir, capsys, monkeypatch):
    model = dncnn_model(tmp_path, width=8)
    real_open = open

    def read_only(path, *a, **k):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, *a, **k)

    monkeypatch.setattr(files, "open", read_only, raising=False)
    (tmp_path / "ro").mkdir()
    assert main(["denoise", str(model), str(image_dir), str(tmp_path / "ro")]) == 1
    assert one_error_line(capsys).endswith("cannot write (read-only file system)")
    (tmp_path / "file").write_text("x")  # a folder whose parent is a file
    assert main(["denoise", str(model), str(image_dir), str(tmp_path / "file" / "out")]) == 1
    assert "cannot write (a parent is not a folder)" in one_error_line(capsys)


def test_atomic_save_keeps_the_good_file_when_a_write_fails(tmp_path, monkeypatch):
    good = tmp_path / "state.pt"
    files.atomic_save({"step": 1}, good)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(RaytrainError, match="state.pt: cannot write"):
        files.atomic_save({"step": 2}, good)
    assert files.load_torch(good) == {"step": 1} and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


# ------------------------------------------------------------------------------------------------ network
def test_the_cli_asks_for_a_loopback_ray_only_when_it_starts_one(monkeypatch, tmp_path):
    from raytrain import localray
    from raytrain.cli import _local_ray, _parser

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    remote = tmp_path / "remote.yaml"
    remote.write_text("address: ray://head:10001\n")
    assert _local_ray(_parser().parse_args(["train"]))
    assert not _local_ray(_parser().parse_args(["train", "--address", "auto"]))
    assert not _local_ray(_parser().parse_args(["train", str(remote)]))
    assert not _local_ray(_parser().parse_args(["jobs", "list"]))
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert not _local_ray(_parser().parse_args(["train"]))
    assert os.environ.get(localray.LOOPBACK_ENV) == "0"  # conftest asked before importing ray


@pytest.mark.slow  # the shared 2-worker run
def test_the_local_ray_listens_on_loopback_only_during_a_run(ray_local, trained_run):
    """While the shared 2-worker run trains on the embedded Ray (conftest.py ``trained_run``, its process tree
    sampled every 0.5 s) nothing listens beyond loopback. The control shows what raytrain.train.backend removes:
    Ray's own TorchConfig meets through ``env://`` (MASTER_ADDR / MASTER_PORT of rank 0), and torch serves that
    rendezvous (a TCPStore) on every interface even for MASTER_ADDR 127.0.0.1 (run here in a process of its own, as
    Ray's rank 0 runs it; the same listener a control TorchTrainer run showed)."""
    import subprocess
    import sys

    from ray.train.torch import TorchConfig

    from raytrain.train.backend import LoopbackTorchConfig, torch_config

    assert isinstance(torch_config(), LoopbackTorchConfig)  # this Ray is on loopback only: the backend is chosen
    samples = trained_run[2].samples
    both = [socks for workers, socks in samples if workers == 2]  # both ranks alive: their process group is up
    socks = {s for sample in samples for s in sample[1]}
    outside = sorted(s for s in socks if s[1] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"))
    print(f"{len(samples)} samples ({len(both)} with both workers), {len(socks)} listening sockets, "
          f"{len(outside)} not on loopback")  # fmt: skip
    assert len(both) >= 3 and min(len(s) for s in both) >= 6, samples
    assert not outside, outside
    assert ray_local.util.get_node_ip_address() == "127.0.0.1"
    ray_default = TorchConfig()
    assert ray_default.init_method == "env" and not isinstance(ray_default, LoopbackTorchConfig)
    control = (
        "import json, os, socket, psutil, torch.distributed as dist\n"
        "with socket.socket() as s:\n    s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
        "os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))\n"
        "dist.init_process_group('gloo', init_method='env://', rank=0, world_size=1)\n"
        "print(json.dumps([c.laddr.ip for c in psutil.Process().net_connections(kind='inet')"
        " if c.status == psutil.CONN_LISTEN]))\n"
        "dist.destroy_process_group()\n"
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", control], capture_output=True, text=True, timeout=120, check=True)
    ips = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(ips) - {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, (
        f"torch's env:// rendezvous no longer listens beyond loopback ({ips}): raytrain/train/backend.py can go"
    )


def test_plain_http_to_another_host_is_flagged():
    from raytrain.jobs import plain_http_host

    assert plain_http_host("http://head.example:8265") == "head.example"
    assert plain_http_host("10.0.0.5:8265") == "10.0.0.5"
    assert plain_http_host("https://head.example:8265") is None
    assert plain_http_host("http://127.0.0.1:8265") is None and plain_http_host("http://localhost:8265") is None


def test_the_auth_token_file_is_made_private(tmp_path):
    from raytrain import localray

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)
    localray.protect_token(token)
    assert token.stat().st_mode & 0o777 == 0o600


def test_the_next_start_ends_the_processes_a_killed_drivers_ray_left(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    import psutil

    from raytrain import localray

    monkeypatch.setattr(localray.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_ident = localray._ident(psutil.Process(dead.pid))
    dead.wait()
    stubborn = "import time, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    orphan = subprocess.Popen([sys.executable, "-c", stubborn])  # like Ray's agents: ignores SIGTERM
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = localray._registry()
        folder.mkdir()
        record = {"driver": dead_ident, "procs": [localray._ident(psutil.Process(orphan.pid))]}
        (folder / f"{dead_ident[0]}.json").write_text(json.dumps(record))
        mine = {"driver": localray._ident(psutil.Process()), "procs": [localray._ident(psutil.Process(live.pid))]}
        (folder / "mine.json").write_text(json.dumps(mine))  # a running driver's Ray is never touched
        assert localray.reap_stale() == 1
        assert orphan.wait(timeout=10) == -9 and live.poll() is None
        assert sorted(p.name for p in folder.iterdir()) == ["mine.json"]
    finally:
        orphan.kill()
        live.kill()


def test_a_file_that_is_not_a_torch_file_is_named_as_such(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_text('{"not": "a torch file"}')
    with pytest.raises(RaytrainError, match=r"model.pt: cannot load a model \(not a PyTorch file, or a damaged one\)"):
        files.load_torch(bad, "a model")


def test_first_line_is_one_line_and_never_empty():
    """The one helper every one-line message uses: the first line, cut; the class name for an empty message (where
    ``str(exc).splitlines()[0]`` raised IndexError inside the error path)."""
    from raytrain.errors import first_line

    assert first_line(OSError("disk full\nmore detail"), typed=True) == "OSError: disk full"
    assert first_line(ValueError("x" * 500), limit=10) == "x" * 10
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RaytrainError("  \nsecond")) == "second"
