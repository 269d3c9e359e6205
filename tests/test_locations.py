"""Locations (raytrain/locations.py): URIs never pass through pathlib; files, checkpoints, image folders and synthetic
pair sets read and written at ``s3://`` exactly as in local folders (an S3 API server in this process, on loopback:
moto's ThreadedMotoServer); bad locations are one line naming the location and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from raytrain import locations as loc
from raytrain.errors import RaytrainError

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A bucket ``bkt`` on an S3 API server on 127.0.0.1; yields ``uri(key)`` -> ``s3://bkt/key?endpoint_override=...``."""
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_port
    mp = pytest.MonkeyPatch()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        mp.setenv(k, "test")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True).create_dir(
        "bkt"
    )
    yield lambda key="": f"s3://bkt/{key}?endpoint_override=127.0.0.1:{port}&scheme=http"
    server.stop()
    mp.undo()


def test_uri_paths_keep_their_scheme_and_options():
    uri = "s3://bucket/runs?endpoint_override=h:9000&scheme=http"
    assert loc.join(uri, "a", "b.pt") == "s3://bucket/runs/a/b.pt?endpoint_override=h:9000&scheme=http"
    assert loc.parent(loc.join(uri, "x")) == uri and loc.name(loc.join(uri, "x/")) == "x"
    assert loc.join("/tmp/a", "b") == "/tmp/a/b" and loc.is_uri(uri) and not loc.is_uri("file:///tmp/a")
    assert loc.absolute(uri) == uri and loc.absolute("rel") == str(Path("rel").resolve())
    # secrets never printed; the options a user needs to reuse the location are kept
    assert (
        loc.display("s3://bkt/k?secret_key=S&access_key=A&endpoint_override=h:1") == "s3://bkt/k?endpoint_override=h:1"
    )
    fs, path = loc.resolve("s3://bucket/a/b/?endpoint_override=h:9000&scheme=http")
    assert path == "bucket/a/b" and type(fs).__name__ == "S3FileSystem"


def test_bad_uris_and_missing_buckets_are_one_line(s3):
    with pytest.raises(RaytrainError, match=r"s3:///x: a URI with no bucket; expected s3://BUCKET/PREFIX"):
        loc.resolve("s3:///x")
    missing = s3("x").replace("s3://bkt/", "s3://nobucket/")
    with pytest.raises(RaytrainError, match=r"storage_path: s3://nobucket/.*cannot write \(the bucket does not exist"):
        loc.check_writable(missing, "storage_path")
    err = loc.location_error("s3://bkt/k", OSError("AWS Error ACCESS_DENIED during PutObject operation: denied"))
    assert "credentials refused" in str(err) and "AWS_ACCESS_KEY_ID" in str(err)
    err = loc.location_error("s3://bkt/k", OSError("AWS Error NETWORK_CONNECTION during HeadObject: curlCode: 7"))
    assert "the endpoint is unreachable" in str(err)
    err = loc.location_error("s3://bkt/ckpt_11-40-37.403125", FileNotFoundError("no such key ckpt_11-40-37.403125"))
    assert str(err).endswith("cannot use (not found)")  # digits in a name are not an HTTP status


def test_files_folders_and_outputs_at_a_uri_as_in_a_local_folder(s3, tmp_path):
    for root in (str(tmp_path / "local"), s3("o")):
        loc.write_text(loc.join(root, "sub", "a.txt"), "hello")
        assert loc.read_bytes(loc.join(root, "sub", "a.txt")) == b"hello"
        assert loc.is_file(loc.join(root, "sub", "a.txt")) and loc.is_dir(loc.join(root, "sub"))
        assert loc.list_dir(root) == [("sub", True)] and loc.list_dir(loc.join(root, "none")) == []
        out = loc.OutputFolder(loc.join(root, "report"))
        (out / "table.md").write_text("| a |")
        out.publish()
        assert loc.read_bytes(out.where("table.md")) == b"| a |"
        out.close()
        loc.remove(loc.join(root, "sub"))
        assert not loc.exists(loc.join(root, "sub", "a.txt"))


def test_a_checkpoint_at_a_uri_loads_as_a_local_one(s3, tmp_path):
    import torch

    from raytrain.config import load_config
    from raytrain.inference import load_restorer
    from raytrain.methods import build_method
    from raytrain.train.checkpoint import load_state, save_checkpoint, stored_run

    cfg = load_config(None, ["method.depth=3", "method.width=8"])
    method = build_method(cfg, torch.device("cpu"))
    run = tmp_path / "run"
    for step in (10, 20):
        (run / f"checkpoint_000{step}").mkdir(parents=True)
        save_checkpoint(run / f"checkpoint_000{step}", method, step, json.dumps(cfg.model_dump(mode="json")), {})
    loc.upload(run, s3("runs/tiny"))
    where, step, stored = stored_run(s3("runs/tiny"))
    assert step == 20 and where == s3("runs/tiny/checkpoint_00020") and stored["method"]["depth"] == 3
    assert load_state(where)["step"] == 20
    _, restorer = load_restorer(s3("runs/tiny"))  # a run's folder: its newest checkpoint
    x = torch.rand(1, 1, 16, 16)
    _, local = load_restorer(run)
    torch.testing.assert_close(restorer.restore(x), local.restore(x))
    with pytest.raises(RaytrainError, match=r"s3://bkt/runs/none\?.*: no raytrain checkpoint"):
        load_restorer(s3("runs/none"))


def test_an_image_folder_at_a_uri_reads_and_streams_as_a_local_one(s3, tmp_path):
    from raytrain.data.images import load_collection
    from raytrain.data.stored import is_stored, source_files

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        iio.imwrite(folder / f"u{i}.png", RNG.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("skip me")
    loc.upload(folder, s3("data/clean"))
    local = load_collection(str(folder), "rgb")
    remote = load_collection(s3("data/clean"), "rgb")
    assert [im.name for im in remote] == ["u0", "u1", "u2"]
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)
    lazy = load_collection(s3("data/clean"), "rgb", lazy=True)  # data.stream: the header only, pixels when cut
    assert all(is_stored(im.pixels) for im in lazy) and lazy[1].pixels.shape == (40, 48, 3)
    np.testing.assert_array_equal(np.asarray(lazy[1].pixels), local[1].pixels)
    assert source_files([im.pixels for im in lazy]) == [s3(f"data/clean/u{i}.png") for i in range(3)]


def test_a_synthetic_pair_set_at_a_uri_is_complete_or_absent(s3):
    from raytrain.data.images import Image
    from raytrain.synthesis import write_pairs

    images = [Image(f"c{i}", RNG.random((32, 32, 1)).astype(np.float32)) for i in range(3)]
    out = write_pairs(images, lambda c, i: np.clip(c + 0.1, 0, 1), s3("pairs/a"), progress=False)
    assert out == s3("pairs/a")
    names = [n for n, _ in loc.list_dir(loc.join(out, "noisy"))]
    assert names == ["c0.png", "c1.png", "c2.png"] and json.loads(loc.read_bytes(loc.join(out, "manifest.json")))
    with pytest.raises(RaytrainError, match="exists and is not empty"):
        write_pairs(images, lambda c, i: c, s3("pairs/a"), progress=False)

    def broken(clean, i):
        if i == 2:
            raise RuntimeError("model failed")
        return clean

    with pytest.raises(RuntimeError, match="model failed"):
        write_pairs(images, broken, s3("pairs/b"), progress=False)
    assert loc.list_dir(s3("pairs/b")) == []  # nothing half-written


def test_mlflow_tracking_uri_from_the_environment_and_a_uri_workdir(monkeypatch, tmp_path):
    from raytrain.tracking import resolve_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    with pytest.raises(RaytrainError, match=r"workdir s3://bkt/w is not a local folder.*set tracking.uri"):
        resolve_uri(None, "s3://bkt/w")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_uri(None, "s3://bkt/w") == "http://127.0.0.1:5000"
    assert resolve_uri("http://127.0.0.1:6000", tmp_path) == "http://127.0.0.1:6000"  # the config's wins


def test_sidd_folders_and_sr_sets_at_a_uri_read_as_local_ones(s3, tmp_path):
    from test_datasets import sidd_folders, sr_image, write_png

    from raytrain.data.datasets import load_dataset

    sidd_folders(tmp_path / "SIDD", medium=True)
    loc.upload(tmp_path / "SIDD", s3("SIDD"))
    rng = np.random.default_rng(0)
    for i in range(2):
        write_png(tmp_path / "sr" / "train_HR" / f"img{i}_x1.png", sr_image(rng, 32, 24))
        write_png(tmp_path / "sr" / "train_LR" / f"img{i}_x4.png", sr_image(rng, 8, 6))
    loc.upload(tmp_path / "sr", s3("sr"))
    for local, remote, scale in ((f"sidd:{tmp_path / 'SIDD'}", f"sidd:{s3('SIDD')}", 1),
                                 (f"sr:{tmp_path / 'sr'}", f"sr:{s3('sr')}", 4)):  # fmt: skip
        (want, want_groups), (got, got_groups) = (load_dataset(s, "rgb", scale=scale) for s in (local, remote))
        assert got_groups == want_groups and [c.name for c, _ in got] == [c.name for c, _ in want] and got
        lazy, _ = load_dataset(remote, "rgb", scale=scale, lazy=True)  # streamed: read where it is, when cut
        for (c, n), (lc, ln), (wc, wn) in zip(got, lazy, want, strict=True):
            np.testing.assert_array_equal(c.pixels, wc.pixels)
            np.testing.assert_array_equal(n.pixels, wn.pixels)
            np.testing.assert_array_equal(np.asarray(lc.pixels), wc.pixels)
            np.testing.assert_array_equal(np.asarray(ln.pixels), wn.pixels)


def test_a_pair_set_whose_files_did_not_all_land_is_removed_not_published(s3):
    from raytrain.synthesis import PairSet, write_pair

    pairs = PairSet(s3("pairs/c"))
    img = np.zeros((8, 8, 1), np.float32)
    write_pair(pairs.root, "a", img, img)
    loc.write_bytes(loc.join(pairs.root, "clean", "b.png"), b"x")  # b's noisy image never landed (a lost actor)
    with pytest.raises(
        RaytrainError, match=r"synthesis wrote 1 of 2 noisy images to s3://bkt/pairs/c.*nothing was kept"
    ):
        pairs.publish(["a", "b"], {"count": 2})
    assert loc.list_dir(s3("pairs/c")) == []


def test_a_uri_workdir_or_storage_path_keeps_every_location_a_uri(tmp_path):
    from raytrain.config import load_config
    from raytrain.train.preflight import outputs_folder, storage_path
    from raytrain.tune.driver import absolute_paths, sweep_folder

    cfg = load_config(None, ["workdir=s3://bkt/w?endpoint_override=h:1", "tracking.uri=http://127.0.0.1:5000"])
    assert storage_path(cfg) == "s3://bkt/w/ray?endpoint_override=h:1"  # not a folder named "s3:"
    assert outputs_folder(cfg, "pipelines", "p-1") == "s3://bkt/w/pipelines/p-1?endpoint_override=h:1"
    assert sweep_folder(cfg, "sw") == "s3://bkt/w/sweeps/sw?endpoint_override=h:1"
    assert absolute_paths({"workdir": "s3://bkt/w", "storage_path": "gs://g/s"}) == {
        "workdir": "s3://bkt/w", "storage_path": "gs://g/s"}  # fmt: skip
    local = load_config(None, [f"workdir={tmp_path}", "storage_path=s3://bkt/runs"])
    assert storage_path(local) == "s3://bkt/runs" and sweep_folder(local, "sw") == "s3://bkt/runs/sw"
    assert outputs_folder(local, "pipelines", "p") == "s3://bkt/runs/pipelines/p"  # where every node reads them
    plain = load_config(None, ["workdir=runs"])
    assert storage_path(plain) == str(Path("runs").resolve() / "ray")


def test_the_sets_read_only_from_local_folders_say_so_at_a_uri(s3):
    from raytrain.data.datasets import load_dataset
    from raytrain.errors import DataError

    with pytest.raises(DataError, match=r"s3://bkt/ct.*: CT slices \(ldct:\) are read from a local folder"):
        load_dataset(f"ldct:{s3('ct')}", "gray")
    loc.write_bytes(s3("blocks/ValidationGtBlocksSrgb.mat"), b"MATLAB")
    with pytest.raises(DataError, match=r"s3://bkt/blocks.*: SIDD's .mat validation blocks are read from a local"):
        load_dataset(f"sidd:{s3('blocks')}", "rgb")
