"""raytrain on a two-node Ray cluster whose worker node cannot see the driver's disk (tests/twonode.py: a head with 0
CPUs, a worker node in its own mount namespace with a tmpfs over the work and data folders, an S3 API server and an
MLflow server, all in a network namespace of their own whose only interface is loopback). Every command goes through
the CLI as a user types it, as the driver on the head's machine:

- the defaults (MLflow on SQLite, storage on the driver's disk), a streamed data folder the worker node cannot read,
  a missing bucket and a worker group that leaves Ray Data no CPU are refused in one line before any worker starts
  (and before any MLflow run opens);
- ``train`` with S3 storage and an MLflow server, its Train worker SIGKILLed mid-run: the run resumes from its last
  checkpoint in the bucket and finishes; checkpoint in the bucket, weights artifact in MLflow, ``eval`` of the
  stored run from the driver;
- ``tune`` with 2 trials on data in the bucket (streamed: Ray Data's tasks on the worker node read it): every
  trial's run FINISHED on the server;
- ``pipeline`` end to end: the noise model's checkpoint, the synthetic pairs and the downstream checkpoints all pass
  through the bucket;
- afterwards nothing of any run is on the worker node's disk, and nothing is left running.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import twonode
import yaml
from test_synthesis import TINY_SENM

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TINY = {"name": "tiny", "method": {"name": "dncnn", "depth": 3, "width": 8},
        "data": {"max_size": 96, "val_images": 1, "val_crop": 32, "patches": {"size": 32}, "resample_noise": True},
        "train": {"steps": 10, "batch_size": 4, "val_every": 5, "checkpoint_every": 10, "log_every": 5},
        "scaling": {"num_workers": 1}}  # fmt: skip
SENM = [*TINY_SENM, "data.tiles=32", "data.paired.count=4", "data.val_images=2", "train.steps=4", "train.val_every=4",
        "train.checkpoint_every=4", "train.batch_size=4", "scaling.cpus_per_worker=1",
        "pipeline.arms=[senm,real_pairs]", "pipeline.downstream.method.depth=3", "pipeline.downstream.method.width=8",
        "pipeline.downstream.train.steps=4", "pipeline.downstream.train.val_every=4",
        "pipeline.downstream.train.checkpoint_every=4", "pipeline.downstream.train.batch_size=4",
        "pipeline.downstream.scaling.num_workers=1", "pipeline.downstream.scaling.cpus_per_worker=1",
        "pipeline.downstream.patches.size=32", "name=pipe"]  # fmt: skip
PIPELINE = str(Path(__file__).resolve().parents[1] / "configs" / "senm_pipeline.yaml")
IMAGES = ["camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel"]


@pytest.fixture(scope="module")
def cluster():
    why = twonode.unavailable()
    if why:
        pytest.skip(f"two-node cluster: {why}")
    c = twonode.TwoNodeCluster(worker_cpus=4).start()
    write_images(c.data)
    (c.root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    c.python(
        f"import pyarrow.fs as f; f.copy_files({str(c.data)!r}, 'data/clean', "
        "destination_filesystem=f.S3FileSystem(endpoint_override='127.0.0.1:9000', scheme='http'))"
    )
    yield c
    hidden = c.on_worker(["find", str(c.work), str(c.data), "-mindepth", "1"]).stdout.split()
    left = c.stop()
    assert not hidden, f"the worker node wrote into the driver's folders on its own disk: {hidden[:5]}"
    assert not left, f"processes of the cluster still running after it stopped: {left}"


def write_images(folder) -> None:
    import imageio.v3 as iio
    import skimage.data
    from skimage.transform import resize

    for name in IMAGES:
        img = resize(getattr(skimage.data, name)(), (96, 96), anti_aliasing=True)
        iio.imwrite(folder / f"{name}.png", (img * 255).astype(np.uint8))


def raytrain(c, *args: str, timeout: float = 600):
    t0 = time.time()
    r = c.run(["raytrain", *args], timeout=timeout)
    err = [line for line in r.stderr.splitlines() if "network_util" not in line]  # Ray's notice: no route out
    print(f"raytrain {args[0]}: exit {r.returncode} in {time.time() - t0:.0f} s")
    return r.returncode, r.stdout, "\n".join(err)


def raytrain_many(c, *commands: list[str]) -> list[tuple[int, str, str]]:
    """Several CLI commands (``raytrain ARGS``) in one Python process inside the cluster, one after the other, each
    through the CLI's ``main`` as the console script calls it: (exit code, stdout, stderr) each. One interpreter
    start-up instead of one per command."""
    code = (
        "import contextlib, io, json, sys\nfrom raytrain.cli import main\nout = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    o, e = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):\n"
        "        try:\n            code = main(args)\n"
        "        except SystemExit as exc:\n            code = exc.code\n"
        "    out.append([code, o.getvalue(), e.getvalue()])\n"
        "print('\\n' + json.dumps(out))\n"
    )  # fmt: skip
    t0 = time.time()
    r = c.run([sys.executable, "-c", code, json.dumps(commands)], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{len(commands)} raytrain commands in one process: {time.time() - t0:.0f} s")
    return [(code, out, "\n".join(ln for ln in err.splitlines() if "network_util" not in ln)) for code, out, err in got]


def on_server(c, code: str):
    """``code`` (with ``client``: an MlflowClient of the cluster's server) run inside the cluster; its JSON print."""
    head = f"import json; from mlflow.tracking import MlflowClient; client = MlflowClient({c.tracking!r})\n"
    return json.loads(c.python(head + code))


def in_bucket(c, prefix: str) -> list[str]:
    """The files under ``prefix`` of the cluster's S3 server."""
    return json.loads(c.python(
        "import json, pyarrow.fs as f; fs = f.S3FileSystem(endpoint_override='127.0.0.1:9000', scheme='http')\n"
        f"infos = fs.get_file_info(f.FileSelector({prefix!r}, recursive=True, allow_not_found=True))\n"
        "print(json.dumps(sorted(i.path for i in infos if i.type == f.FileType.File)))"))  # fmt: skip


def registered(c, run: str, wait_s: float = 0.0) -> list[int]:
    """The steps of the checkpoints Ray Train has registered for a run stored in the bucket; with ``wait_s``, polled
    (every 0.3 s, in the one process) until there is one or the time is up."""
    return json.loads(c.python(
        "import json, time, pyarrow.fs as f; fs = f.S3FileSystem(endpoint_override='127.0.0.1:9000', scheme='http')\n"
        f"end = time.time() + {wait_s}\n"
        "while True:\n"
        "    try:\n"
        f"        snap = json.loads(fs.open_input_stream({run + '/checkpoint_manager_snapshot.json'!r}).read())\n"
        "        got = [int(r['metrics']['step']) for r in snap['checkpoint_results']]\n"
        "    except (OSError, ValueError, KeyError):\n"
        "        got = []\n"
        "    if got or time.time() > end:\n"
        "        break\n"
        "    time.sleep(0.3)\n"
        "print(json.dumps(got))", timeout=wait_s + 60))  # fmt: skip


def base(c) -> list[str]:
    return [str(c.root / "tiny.yaml"), "--address", c.address, "--set", f"workdir={c.work}"]


def test_the_defaults_and_unreadable_data_are_refused_before_any_worker_starts(cluster):
    c = cluster
    code, _, err = raytrain(c, "train", *base(c), "--set", f"data.source={c.data}")  # the console script itself
    assert code == 1 and err.count("\n") == 0, err
    assert "tracking store sqlite:///" in err and "node 127.0.0.2" in err and "MLflow server" in err
    server, s3 = ["--set", f"tracking.uri={c.tracking}"], ["--set", f"storage_path={c.s3('runs/refused')}"]
    got = raytrain_many(
        c,
        ["train", *base(c), "--set", f"data.source={c.data}", *server],
        ["train", *base(c), "--set", f"data.source={c.data}", "--set", "data.stream=true", *server, *s3],
        ["train", *base(c), *server, "--set", f"storage_path={c.s3('no-such-bucket/x')}"],
        # the pipeline's own scaling (1 worker x 2 CPUs) and SeNM-VAE's 3 patch streams do not fit the 4-CPU node:
        # it would sit at step 0 forever; refused before its parent MLflow run opens
        ["pipeline", PIPELINE, "--address", c.address, "--set", f"workdir={c.work}", "--set", f"data.source={c.data}",
         *server, *s3],
    )  # fmt: skip
    (code, _, err), (code2, _, err2), (code3, _, err3), (code4, _, err4) = got
    assert code == 1 and f"storage_path {c.work}/ray is on this machine's disk only" in err, err
    assert code2 == 1 and f"the data file {c.data}/" in err2 and "not readable on node 127.0.0.2" in err2, err2
    assert code3 == 1 and "the bucket does not exist" in err3, err3
    assert code4 == 1 and "1 workers x 2 CPUs leave 2 for Ray Data's 3 patch stream(s)" in err4, err4
    assert all(e.strip().count("\n") == 0 for _, _, e in got), got  # one line each
    runs = on_server(c, "print(sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments()))")
    assert runs == 0  # nothing started: no MLflow run, no checkpoint
    assert not in_bucket(c, "runs/refused")


def test_a_killed_worker_resumes_from_the_bucket_and_eval_reads_the_stored_run_from_the_driver(cluster):
    """One ``train`` run (S3 storage, the MLflow server) whose Train worker on the worker node is SIGKILLed after its
    first checkpoint reached the bucket: it resumes from that checkpoint and finishes; its checkpoint is in the
    bucket, its weights artifact on the server, and ``eval`` of the stored run from the driver scores what the run
    logged."""
    c = cluster
    run = c.popen(["raytrain", "train", *base(c), "--set", f"data.source={c.data}", "--set", "name=killed",
                   "--set", "train.steps=400", "--set", "train.checkpoint_every=40", "--set", "train.val_every=40",
                   "--set", "scaling.max_failures=1", "--set", f"tracking.uri={c.tracking}",
                   "--set", f"storage_path={c.s3('runs/k')}"])  # fmt: skip
    victim = None
    # one process polls the bucket until Ray holds a checkpoint there: a restart resumes from it
    if registered(c, "runs/k/killed", wait_s=300) and run.poll() is None:
        time.sleep(0.5)  # a few steps past it: those are replayed
        victim = c.worker_process("RayTrainWorker")
        c.kill(victim)
    out, _ = run.communicate(timeout=400)
    assert victim, f"the run ended before a worker could be killed: {out[-2000:]}"
    assert run.returncode == 0, out[-3000:]
    assert "run killed: 400 steps" in out and "checkpoint: s3://runs/k/killed/checkpoint_" in out
    files = in_bucket(c, "runs/k/killed")
    assert any(f.endswith("/model.pt") for f in files) and any(f.endswith("/state.pt") for f in files), files
    got = on_server(c, "r = client.search_runs([client.get_experiment_by_name('raytrain').experiment_id], "
                       "\"attributes.run_name = 'killed'\")[0]\n"
                       "print(json.dumps([r.info.status, [a.path for a in client.list_artifacts(r.info.run_id, "
                       "'weights')], max(m.value for m in client.get_metric_history(r.info.run_id, 'val_psnr'))] + "
                       "[m.value for m in client.get_metric_history(r.info.run_id, 'start_step')]))")  # fmt: skip
    status, weights, psnr, *starts = got  # psnr: the best validation, whose checkpoint the run's folder stands for
    assert status == "FINISHED" and max(starts) >= 40, got  # restarted from a checkpoint, not step 0
    assert weights == ["weights/model.pt"] and psnr > 0
    code, out, err = raytrain(c, "eval", c.s3("runs/k/killed"), "--crop", "32")
    assert code == 0, err
    # the stored run's best checkpoint (train.keep_best auto: val_psnr max) on its own held-out image, from the driver
    assert f"mean ± std psnr: {psnr:.2f}" in out


def test_a_sweep_on_data_in_the_bucket_logs_every_trial_to_the_server(cluster, tmp_path):
    c = cluster
    space = c.root / "space.yaml"
    space.write_text(yaml.safe_dump({"params": {"train.lr": {"choice": [0.001, 0.002]}}}))
    code, out, err = raytrain(
        c,
        "tune",
        *base(c),
        "--space",
        str(space),
        "--samples",
        "2",
        "--concurrent",
        "1",
        "--name",
        "sw",
        "--set",
        f"data.source={c.s3('data/clean')}",
        "--set",
        "data.stream=true",
        "--set",
        f"tracking.uri={c.tracking}",
        "--set",
        f"storage_path={c.s3('runs/s')}",
    )
    assert code == 0, err[-3000:]
    got = on_server(
        c,
        "e = client.get_experiment_by_name('raytrain').experiment_id\n"
        "runs = client.search_runs([e], \"tags.`raytrain.sweep` = 'sw'\")\n"
        "print(json.dumps(sorted([r.info.status, 'val_psnr' in r.data.metrics] for r in runs)))",
    )
    assert got == [["FINISHED", False], ["FINISHED", True], ["FINISHED", True]], got  # the parent and 2 trials
    assert any(f.endswith("best_config.yaml") for f in in_bucket(c, "runs/s/sw"))


def test_the_pipeline_hands_every_stage_over_through_the_bucket(cluster):
    c = cluster
    sets = [f"--set={s}" for s in SENM]
    code, out, err = raytrain(c, "pipeline", PIPELINE, "--address", c.address, *sets, "--set", f"workdir={c.work}",
                              "--set", f"data.source={c.data}", "--set", f"tracking.uri={c.tracking}",
                              "--set", f"storage_path={c.s3('runs/p')}")  # fmt: skip
    assert code == 0, err[-3000:]
    assert "| SeNM-VAE synthetic + real pairs |" in out and "| real pairs only |" in out
    files = in_bucket(c, "runs/p")
    synth = [f for f in files if "/synthetic-senm/" in f]
    assert any(f.endswith("/synthetic-senm/manifest.json") for f in synth), files[:20]
    assert len([f for f in synth if "/noisy/" in f]) == len([f for f in synth if "/clean/" in f]) > 0
    assert any(f.endswith("/table.md") for f in files) and any(f.endswith("/noise_samples.png") for f in files)
    assert sum(f.endswith("/model.pt") for f in files) >= 3  # the noise model and both downstream denoisers
