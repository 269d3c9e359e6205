import numpy as np
import pytest

from raytrain.data.collection import DomainImages, load_domains
from raytrain.data.degrade import noise_model
from raytrain.data.pipeline import build_datasets, cut_patches, dihedral, patch_dataset

RNG = np.random.default_rng(0)


def _domain(n=3, size=48, noisy=True):
    clean = [RNG.random((size, size + 8, 1), dtype=np.float32) for _ in range(n)]
    return DomainImages(clean, [c + 0.25 for c in clean] if noisy else None)


def test_dihedral_gives_8_distinct_transforms():
    a = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    outs = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(outs) == 8


def test_cut_patches_aligned_shapes_dtypes_and_deterministic():
    dom = _domain()
    got = cut_patches(np.arange(64), dom, 16, True, seed=3, code=1)
    assert set(got) == {"clean", "noisy"}
    assert got["clean"].shape == (64, 1, 16, 16) and got["clean"].dtype == np.float32
    assert np.allclose(got["noisy"] - got["clean"], 0.25)  # the same crop and transform of both
    again = cut_patches(np.arange(64), dom, 16, True, seed=3, code=1)
    assert np.array_equal(got["clean"], again["clean"])
    other = cut_patches(np.arange(64), dom, 16, True, seed=4, code=1)
    assert not np.array_equal(got["clean"], other["clean"])


def test_augmentation_uses_all_8_transforms():
    # Transforms are visible on a patch covering the whole (asymmetric) image.
    img = np.arange(16 * 16, dtype=np.float32).reshape(16, 16, 1) / 256
    dom = DomainImages([img], None)
    got = cut_patches(np.arange(200), dom, 16, True, seed=0, code=2)["clean"]
    assert len({p.tobytes() for p in got}) == 8
    plain = cut_patches(np.arange(50), dom, 16, False, seed=0, code=2)["clean"]
    assert len({p.tobytes() for p in plain}) == 1


def test_flips_keep_the_image_axes():
    # augment: flips draws only the 4 transforms that map rows to rows: a row-correlated noise stays row-correlated
    img = np.arange(16 * 16, dtype=np.float32).reshape(16, 16, 1) / 256
    got = cut_patches(np.arange(200), DomainImages([img], None), 16, "flips", seed=0, code=2)["clean"][:, 0]
    allowed = {a.tobytes() for a in (img[..., 0], img[::-1, :, 0], img[:, ::-1, 0], img[::-1, ::-1, 0])}
    assert {p.tobytes() for p in got} == allowed  # all four, and no 90-degree turn
    rows = np.repeat(np.random.default_rng(0).standard_normal((16, 1, 1)), 16, axis=1).astype(np.float32)
    turned = cut_patches(np.arange(64), DomainImages([rows], None), 16, "dihedral", seed=0, code=2)["clean"][:, 0]
    kept = cut_patches(np.arange(64), DomainImages([rows], None), 16, "flips", seed=0, code=2)["clean"][:, 0]
    assert all(np.ptp(p, axis=1).max() == 0 for p in kept)  # constant along every row, as the source
    assert any(np.ptp(p, axis=1).max() > 0 for p in turned)  # dihedral turns some into columns


def test_auto_augment_turns_patches_only_when_the_paired_noise_is_isotropic():
    from types import SimpleNamespace

    from raytrain.data.pipeline import resolve_augment

    rng = np.random.default_rng(0)
    clean = [np.full((64, 64, 1), 0.5, np.float32) for _ in range(3)]
    white = [c + 0.05 * rng.standard_normal(c.shape).astype(np.float32) for c in clean]
    w = rng.standard_normal((3, 64, 66, 1))
    rows = [c + 0.05 * (w[i, :, :-2] + 2 * w[i, :, 1:-1] + w[i, :, 2:]).astype(np.float32) for i, c in enumerate(clean)]
    col = lambda noisy: SimpleNamespace(domains={"paired": DomainImages(clean, noisy)})  # noqa: E731
    assert resolve_augment("auto", col(white))[0] == "dihedral"
    pick, why = resolve_augment("auto", col(rows))
    assert pick == "flips" and "along rows 0.6" in why, why  # [1, 2, 1] along rows: lag-1 4/6
    assert resolve_augment("auto", col([np.swapaxes(r, 0, 1) for r in rows]))[0] == "flips"  # along columns
    mixed = DomainImages(clean + clean * 10, rows + white * 10, synthetic_from=3)  # a downstream arm: white synthetic
    assert resolve_augment("auto", SimpleNamespace(domains={"paired": mixed}))[0] == "flips"  # the real pairs decide
    assert resolve_augment("auto", SimpleNamespace(domains={}))[0] == "dihedral"  # no pairs (LIR)
    assert resolve_augment("flips", col(white)) == ("flips", "")  # anything else as given


def test_augment_accepts_the_old_booleans_and_rejects_unknown_names():
    from raytrain.config.sections import Patches

    assert Patches(augment=True).augment == "dihedral" and Patches(augment=False).augment == "none"
    assert Patches().augment == "dihedral" and Patches(augment="flips").augment == "flips"
    with pytest.raises(ValueError, match="augment"):
        Patches(augment="rot90")


def _reference_patch(domain, pid, size, transforms, seed, code, key="clean"):
    """One patch the slow, obvious way: the draws of ``pid``, a crop, the dihedral transform, CHW."""
    from raytrain.data.pipeline import counter_uniforms, pick_images

    u = counter_uniforms(seed, code, np.array([pid]), 5)[:, 0]
    j = int(pick_images(domain, u[:1], u[1:2])[0])
    img = getattr(domain, key)[j]
    top = int(u[2] * (img.shape[0] - size + 1))
    left = int(u[3] * (img.shape[1] - size + 1))
    k = transforms[min(int(u[4] * len(transforms)), len(transforms) - 1)]
    return dihedral(img[top : top + size, left : left + size], k).transpose(2, 0, 1)


def test_vectorised_cut_matches_the_patch_by_patch_reference_in_any_blocks():
    rng = np.random.default_rng(1)
    clean = [rng.integers(0, 256, (int(rng.integers(20, 40)), int(rng.integers(20, 40)), 3), dtype=np.uint8)
             for _ in range(5)]  # fmt: skip
    dom = DomainImages(clean, [255 - c for c in clean])
    ids = np.arange(1000, 1300)
    got = cut_patches(ids, dom, 16, "dihedral", seed=7, code=2)
    assert got["clean"].dtype == np.uint8 and got["clean"].shape == (300, 3, 16, 16)
    for row, pid in enumerate(ids):
        assert np.array_equal(got["clean"][row], _reference_patch(dom, pid, 16, range(8), 7, 2)), pid
    assert np.array_equal(got["noisy"], 255 - got["clean"])  # the same crop and transform of both
    parts = [cut_patches(ids[i : i + 37], dom, 16, "dihedral", seed=7, code=2)["clean"] for i in range(0, 300, 37)]
    assert np.array_equal(np.concatenate(parts), got["clean"])  # a patch id is the same patch in any block
    assert len({p.tobytes() for p in got["clean"]}) > 270  # 300 draws: few repeats on these small images
    # the same images as float32 (k / 255) give the same patches, as float32
    as_float = DomainImages([c.astype(np.float32) / 255 for c in clean], None)
    f = cut_patches(ids, as_float, 16, "dihedral", seed=7, code=2)["clean"]
    assert f.dtype == np.float32 and np.array_equal(f, got["clean"].astype(np.float32) / 255)


def test_counter_draws_are_uniform_and_keyed_by_seed_code_and_id():
    from raytrain.data.pipeline import counter_uniforms

    u = counter_uniforms(0, 1, np.arange(100_000), 3)
    assert u.shape == (3, 100_000) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(u[0], u[1])[0, 1]) < 0.01 and abs(np.corrcoef(u[0, :-1], u[0, 1:])[0, 1]) < 0.01
    assert np.array_equal(counter_uniforms(0, 1, np.arange(50, 60), 3), u[:, 50:60])  # by id, not position
    for other in (counter_uniforms(1, 1, np.arange(10), 3), counter_uniforms(0, 2, np.arange(10), 3)):
        assert not np.allclose(other, u[:, :10])


def test_synthetic_fraction_picks_synthetic_images_at_that_rate():
    from raytrain.data.pipeline import counter_uniforms, pick_images

    dom = DomainImages([np.zeros((4, 4, 1), np.float32)] * 10, None, synthetic_from=2, synthetic_fraction=0.8)
    u = counter_uniforms(0, 1, np.arange(20_000), 2)
    j = pick_images(dom, u[0], u[1])
    assert j.min() == 0 and j.max() == 9 and abs((j >= 2).mean() - 0.8) < 0.01
    assert abs((j == 0).mean() - 0.1) < 0.01 and abs((j == 9).mean() - 0.1) < 0.01


def test_8_bit_images_travel_as_uint8_and_the_rest_as_float():
    from raytrain.data.pipeline import compact8

    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, (8, 8, 1)).astype(np.float32) / 255
    noisy = levels + 0.001
    out = compact8([levels, noisy, (levels * 2).astype(np.float32)])
    assert out[0].dtype == np.uint8 and np.array_equal(out[0].astype(np.float32) / 255, levels)
    assert out[1] is noisy and out[2].dtype == np.float32  # not 8-bit levels; out of [0, 1]
    from raytrain.data.images import is_8bit, shrink

    big = rng.integers(0, 256, (100, 60, 3)).astype(np.float32) / 255
    small = shrink(big, 50)  # data.max_size: an 8-bit image resized stays 8-bit (it travels as uint8)
    assert small.shape == (50, 30, 3) and is_8bit(small) and abs(small.mean() - big.mean()) < 0.01
    assert not is_8bit(shrink(big + 1e-3, 50))


def test_on_device_converts_8_bit_exactly_and_draws_the_noise_there():
    import torch

    from raytrain.config import AWGN
    from raytrain.data.device_noise import generator
    from raytrain.train.draw import on_device

    u8 = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).repeat(32, 1, 1, 1)
    model = noise_model(AWGN(sigma=25))
    got = on_device({"clean": u8}, model, generator(torch.device("cpu"), 0, 0, 1, 0))
    assert torch.equal(got["clean"][0], torch.from_numpy(np.arange(256, dtype=np.float32).reshape(1, 16, 16) / 255))
    resid = got["noisy"] - got["clean"]
    assert float(resid.std()) * 255 == pytest.approx(25, rel=0.05) and abs(float(resid.mean())) * 255 < 0.5
    assert not torch.allclose(resid[0], resid[1])  # fresh for every patch
    again = on_device({"clean": u8}, model, generator(torch.device("cpu"), 0, 0, 1, 0))
    assert torch.equal(again["noisy"], got["noisy"])  # the same seed, the same noise
    other = on_device({"clean": u8}, model, generator(torch.device("cpu"), 0, 0, 1, 1))  # the next pass
    assert not torch.equal(other["noisy"], got["noisy"])
    assert set(on_device({"clean": u8})) == {"clean"}


def test_ray_dataset_stream_and_split(ray_local, tiny):
    ds = patch_dataset(_domain(), 100, 16, True, 0, "paired")
    batch = ds.take_batch(10)
    assert batch["clean"].shape == (10, 1, 16, 16) and batch["noisy"].dtype == np.float32
    assert ds.count() == 100
    # Shards of a streaming split are consumed concurrently (as Train workers do), not one after the other.
    from concurrent.futures import ThreadPoolExecutor

    shards = ds.streaming_split(2, equal=True)
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda s: sum(len(b["clean"]) for b in s.iter_batches(batch_size=10)), shards))
    assert counts == [50, 50]


def test_one_worker_streams_the_whole_dataset_without_a_split_coordinator(ray_local):
    """The run's Ray Data hand-over (launch.data_config): two workers get disjoint halves through a split coordinator
    actor; one worker the whole stream, executed in its own process (no coordinator actor to start)."""
    from ray.data._internal.iterator.stream_split_iterator import StreamSplitDataIterator

    from raytrain.train.launch import data_config

    ds = patch_dataset(_domain(), 100, 16, True, 0, "paired")
    (one,) = data_config(1).configure({"paired": ds}, world_size=1, worker_handles=None, worker_node_ids=None)
    assert not isinstance(one["paired"], StreamSplitDataIterator)
    assert sum(len(b["clean"]) for b in one["paired"].iter_batches(batch_size=10)) == 100
    two = data_config(2).configure({"paired": ds}, world_size=2, worker_handles=None, worker_node_ids=None)
    assert all(isinstance(w["paired"], StreamSplitDataIterator) for w in two)


def test_collection_domains_from_config(tiny):
    cfg = tiny("data.paired.fraction=0.4", "data.val_crop=32")
    col = load_domains(cfg)
    sizes = col.split.sizes()
    assert sizes == {"val": 2, "paired": 6, "source": 4, "target": 5}
    assert col.domains["source"].noisy is None and col.domains["target"].clean is None
    assert all(p.clean.shape == p.noisy.shape == (32, 32, 1) for p in col.val)  # HWC, (clean, noisy)
    assert all(float(np.std(p.noisy - p.clean)) > 0.02 for p in col.val)  # the noisy one is the second


def test_empty_domain_is_a_clear_error(ray_local, tiny):
    from raytrain.errors import DataError

    cfg = tiny("data.paired.fraction=1.0")
    col = load_domains(cfg)
    with pytest.raises(DataError, match="the target domain is empty"):
        build_datasets(cfg, col, ("target",), 2)


def test_pick_domains_mixes_with_the_configured_probabilities(tiny):
    from raytrain.train.draw import pick_domains

    class Mixer:
        domains = ("paired", "source", "target")
        draw = "one"

    cfg = tiny("data.mix={paired: 2, source: 1, target: 1}")
    picks = [pick_domains(Mixer, cfg, s)[0] for s in range(4000)]
    share = {d: picks.count(d) / len(picks) for d in Mixer.domains}
    assert share["paired"] == pytest.approx(0.5, abs=0.03) and share["source"] == pytest.approx(0.25, abs=0.03)
    assert picks == [pick_domains(Mixer, cfg, s)[0] for s in range(4000)]  # every rank draws the same sequence

    class Both:
        domains = ("source", "target")
        draw = "all"

    assert pick_domains(Both, cfg, 1) == ("source", "target")


def test_collection_from_a_uri_via_ray_data(ray_local, tmp_path):
    import imageio.v3 as iio

    from raytrain.data.images import load_collection

    for i in range(3):
        iio.imwrite(tmp_path / f"u{i}.png", RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("skip me")
    imgs = load_collection(f"local://{tmp_path}", "rgb")
    assert [im.name for im in imgs] == ["u0", "u1", "u2"] and imgs[0].pixels.shape == (40, 40, 3)


def test_long_runs_keep_blocks_small(ray_local, tiny):
    # 1M steps must not turn into a few multi-GB blocks (a stalled stream) nor into one long pass that keeps Ray
    # Data's executor alive and spinning all run: a pass is capped at PASS_BYTES of patches and cycles.
    from raytrain.data.pipeline import (
        PASS_BYTES,
        PATCHES_PER_BLOCK,
        compact_domain,
        domain_itemsize,
        pass_size,
        patch_bytes,
        stream_domain,
    )

    cfg = tiny("train.steps=1000000", "data.paired.fraction=1.0")
    n = pass_size(cfg, 2)
    assert n == PASS_BYTES // patch_bytes(cfg) == 2**27 // (32 * 32 * 4 * 2)
    assert pass_size(cfg, 2, 1) == 4 * n  # 8-bit patches travel as uint8: 4x as many in a pass's bytes
    assert pass_size(tiny("train.steps=10"), 2) == 10 * 8 * 2 + 16
    assert pass_size(tiny("train.steps=1000000", "data.patches.size=256", "data.color=rgb"), 2) == 16 * 8 * 2
    assert n // PATCHES_PER_BLOCK <= 1024
    col = load_domains(cfg)
    assert domain_itemsize(compact_domain(col.domains["paired"])) == 4  # gray from RGB: not 8-bit levels
    rgb_cfg = tiny("data.color=rgb", "data.max_size=64")
    rgb = stream_domain(rgb_cfg, "paired", load_domains(rgb_cfg).domains["paired"])  # the noise drawn on the device
    assert domain_itemsize(rgb) == 4 and domain_itemsize(compact_domain(rgb)) == 1  # 8-bit levels travel as uint8
    ds = build_datasets(cfg, col, ("paired",), 2)["paired"]
    assert ds.take_batch(4)["clean"].shape == (4, 1, 32, 32)  # streams at once, no giant first block


@pytest.mark.parametrize("holder", ["PassCounter", "ProgressBoard"])
def test_each_pass_cuts_new_patches_and_a_pass_is_reproducible(ray_local, tiny, holder):
    """The pass counter offsets pass k's ids by k * n: pass 1 differs from pass 0, pass 0 again is identical, and a
    domain's pass does not move another domain's. A run's progress board is its pass counter (one actor for both)."""
    import ray

    from raytrain.data.pipeline import PassCounter
    from raytrain.train.progress import ProgressBoard

    cfg = tiny("train.steps=4", "data.paired.fraction=1.0")
    counter = {"PassCounter": PassCounter, "ProgressBoard": ProgressBoard}[holder].remote()
    ds = build_datasets(cfg, load_domains(cfg), ("paired",), 1, counter)["paired"]
    first = ds.take_batch(8)["clean"]
    ray.get(counter.set_pass.remote("paired", 1))
    second = ds.take_batch(8)["clean"]
    ray.get(counter.set_pass.remote("paired", 0))
    ray.get(counter.set_pass.remote("source", 5))  # after the reset: a counter shared by the domains would show
    again = ds.take_batch(8)["clean"]
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, again)


def test_a_run_with_a_progress_board_counts_its_passes_on_it_and_a_trial_on_a_counter_of_its_own(ray_local, tiny):
    from raytrain.train.launch import prepare_run
    from raytrain.train.progress import ProgressBoard

    cfg = tiny("train.steps=4", "data.paired.fraction=1.0")
    col, board = load_domains(cfg), ProgressBoard.remote()
    assert prepare_run(cfg, col, None, board, None)[2]["pass_counter"] == board  # a run: one actor for both
    own = prepare_run(cfg, col, None, None, None)[2]["pass_counter"]  # a Tune trial draws no bar: a counter
    assert own is not None and own != board


def _id_stream(start: int, batch: int):
    """Batches whose rows carry consecutive ids from ``start``: what a domain's patch stream hands out, in order."""
    import torch

    i = start
    while True:
        yield {"id": torch.arange(i, i + batch)}
        i += batch


def test_a_patch_buffer_hands_out_every_row_once_in_order():
    from raytrain.train.draw import PatchBuffer

    buf = PatchBuffer(_id_stream(0, 8))
    taken = [buf.take(n)["id"].tolist() for n in (3, 0, 8, 5, 16)]
    assert taken == [[0, 1, 2], [], list(range(3, 11)), list(range(11, 16)), list(range(16, 32))]
    assert (buf.pulled, buf.used) == (32, 32)


def test_per_sample_domain_mixing_uses_every_patch_it_is_given():
    """SeNM-VAE's ``domain_sampling: sample`` used to take a whole batch of every domain each step and keep the mix's
    share of each (a third of the patches); now each domain hands out exactly the step's count."""
    import torch

    from raytrain.config import load_config
    from raytrain.methods import build_method
    from raytrain.train.draw import PatchBuffer, draw_batches

    cfg = load_config(None, ["method.name=senm", "method.width=8", "method.growth=4", "method.z_dim=4",
                             "method.zn_dim=2", "method.blocks_per_scale=[1]", "method.level_net_width=4",
                             "method.disc_width=4", "method.perceptual=none", "method.domain_sampling=sample",
                             "train.batch_size=8", "data.mix={paired: 2, source: 1, target: 1}"])  # fmt: skip
    method = build_method(cfg, torch.device("cpu"))
    buffers = {d: PatchBuffer(_id_stream(1000 * k, 8)) for k, d in enumerate(method.domains)}
    seen = {d: [] for d in method.domains}
    for step in range(1, 201):
        batches = draw_batches(method, cfg, buffers, step)
        assert sum(len(b["id"]) for b in batches.values()) == 8
        assert {d: len(b["id"]) for d, b in batches.items()} == method.draw_counts(step)
        kept = method._split(batches, step)
        assert {d: b["id"].tolist() for d, b in kept.items()} == {d: b["id"].tolist() for d, b in batches.items()}
        for d, b in batches.items():
            seen[d] += b["id"].tolist()
    for k, d in enumerate(method.domains):
        assert seen[d] == list(range(1000 * k, 1000 * k + len(seen[d]))), f"{d}: a patch skipped or repeated"
    used = sum(b.used for b in buffers.values())
    pulled = sum(b.pulled for b in buffers.values())
    assert used == 1600 and used / pulled >= 0.95
    assert len(seen["paired"]) == pytest.approx(800, rel=0.1), "the mix's shares: paired 2 of 4"


def test_a_groups_runs_go_side_by_side_as_far_as_the_cores_or_the_cluster_hold_them(tiny, monkeypatch):
    """raytrain/train/group.py: a pipeline stage's runs at once, as many as fit: the embedded Ray counts this
    machine's cores against each run's workers; a cluster its CPUs against workers + patch streams, and its GPUs."""
    import os

    import ray

    from raytrain.train.group import concurrency

    one = ["scaling.num_workers=1"]
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert concurrency([tiny(*one)] * 3) == 2 and concurrency([tiny(*one, "scaling.cpus_per_worker=2")] * 3) == 1
    assert concurrency([tiny("scaling.num_workers=2")] * 3) == 1 and concurrency([tiny(*one)]) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert concurrency([tiny("scaling.num_workers=2")] * 3) == 1  # never 0: one at a time
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    cluster = ["address=ray://127.0.0.1:10001", *one]
    assert concurrency([tiny(*cluster)] * 8) == 8  # 16 CPUs / (1 worker + 1 stream)
    assert concurrency([tiny(*cluster, "scaling.use_gpu=true")] * 8) == 2  # one GPU each
