"""Streamed vs in-memory data (``data.stream``): memory held and patch rate on a set of large photographs.

Writes ``--pairs`` clean/noisy pairs of ``--height`` x ``--width`` RGB PNGs (a smooth scene + noise, like a camera's
frames; SIDD Medium's are 3000 x 5328) to a temporary folder, prepares them (``raytrain data prepare``, timed), then,
each mode in its own process (so the peak resident memory is that mode's): loads the run's domains streamed from the
files, streamed from the prepared store (``data.prepared``) and in memory (``data.stream`` false), and streams
``--patches`` 64 px patches of the paired domain (every pair but the held-out one) through Ray Data as a Train
worker draws them (``train.draw.batch_stream`` at batch 16: pass after pass, uint8 made float). Prints, per mode: the
images' size as float32, the time to load the domains, the peak resident memory of the driver, patches/s over the
whole stream (its start-up, every file read, included) and after its first 2048 patches, and the pass size.
Target: the streamed peak does not grow with the set (a few cached images per process); streamed from the prepared
store, >= 0.8x the in-memory rate.

    python benchmarks/stream_memory.py [--pairs 16] [--height 2000] [--width 3552] [--patches 32768]
                                       [--stream-patches 64]
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_set(root: Path, pairs: int, h: int, w: int) -> None:
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for i in range(pairs):
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        base = np.stack([np.sin(6 * x + i), np.cos(5 * y - i), np.sin(4 * (x + y))], -1) * 0.35 + 0.5
        noisy = base + rng.normal(0, 0.04, base.shape)
        iio.imwrite(root / "clean" / f"f{i:03d}.png", np.round(np.clip(base, 0, 1) * 255).astype(np.uint8))
        iio.imwrite(root / "noisy" / f"f{i:03d}.png", np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8))


WARM = 2048  # patches/s after the first WARM patches too: the stream's rate without its start-up


def measure(root: str, mode: str, patches: int, pairs: int, per_read: int) -> dict:
    import ray
    import torch

    from raytrain.config import load_config
    from raytrain.data.collection import load_domains
    from raytrain.data.pipeline import PassCounter, build_datasets, compact_domain, domain_itemsize, pass_size
    from raytrain.data.stored import stored_bytes
    from raytrain.train.draw import batch_stream

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cfg = load_config(None, [f"data.source={root}/clean", f"data.noisy_source={root}/noisy", "data.color=rgb",
                             "data.max_size=null", "data.val_images=1", "data.val_crop=64",
                             f"data.paired.count={pairs - 1}",
                             f"data.stream={str(mode != 'memory').lower()}", f"data.stream_patches={per_read}",
                             f"data.prepared={Path(root).parent / 'store' if mode == 'prepared' else 'null'}",
                             "data.patches.size=64", "train.batch_size=16",
                             f"train.steps={patches // 16}"])  # fmt: skip
    t0 = time.perf_counter()
    col = load_domains(cfg)
    load_s = time.perf_counter() - t0
    dom = col.domains["paired"]
    counter = PassCounter.remote()
    ds = build_datasets(cfg, col, ("paired",), 1, counter)["paired"]
    # as a Train worker draws them (train.draw.batch_stream): pass after pass, uint8 patches made float on the device
    batches = batch_stream(ds.iterator(), "paired", cfg, torch.device("cpu"), counter)
    start, seen, warm = time.perf_counter(), 0, None
    while seen < patches:
        seen += next(batches)["clean"].shape[0]
        if warm is None and seen >= WARM:
            warm = (time.perf_counter(), seen)
    end = time.perf_counter()
    batches.close()  # the pass under way ends before Ray does (a live stream at shutdown aborts Ray's core worker)
    del batches, ds
    ray.shutdown()
    return {"mode": mode, "images_gb": stored_bytes([*dom.clean, *dom.noisy]) / 2**30,
            "load_s": load_s, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "patches_per_s": seen / (end - start), "warm_per_s": (seen - warm[1]) / (end - warm[0]),
            "pass": pass_size(cfg, 1, domain_itemsize(compact_domain(dom)))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--width", type=int, default=3552)
    ap.add_argument("--patches", type=int, default=32768)
    ap.add_argument("--stream-patches", type=int, default=64, help="data.stream_patches: patches per file read")
    ap.add_argument("--measure", nargs=2, metavar=("ROOT", "STREAM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        root, mode = args.measure
        print(json.dumps(measure(root, mode, args.patches, args.pairs, args.stream_patches)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"  # the store goes beside it (tmp/store), not inside
        (root / "clean").mkdir(parents=True)
        (root / "noisy").mkdir()
        t0 = time.perf_counter()
        write_set(root, args.pairs, args.height, args.width)
        print(f"wrote {args.pairs} pairs of {args.height}x{args.width} RGB in {time.perf_counter() - t0:.0f} s")
        from raytrain.data.prepared import prepare

        t0 = time.perf_counter()
        got = prepare(str(root), str(root.parent / "store"), progress=False)
        print(f"raytrain data prepare: {got['files']} files decoded into {got['array_bytes'] / 2**30:.2f} GiB of "
              f"arrays in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        rows = {}
        for mode in ("files", "prepared", "memory"):
            cmd = [sys.executable, __file__, "--measure", str(root), mode, "--patches", str(args.patches), "--pairs",
                   str(args.pairs), "--stream-patches", str(args.stream_patches)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
            rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"| read from | paired images as float32 | load | driver peak RSS | patches/s | after {WARM} | pass |")
    print("|---|---|---|---|---|---|---|")
    what = {"files": "the files (data.stream)", "prepared": "a prepared store (data.stream, data.prepared)",
            "memory": "memory (data.stream false)"}  # fmt: skip
    for mode, r in rows.items():
        print(f"| {what[mode]} | {r['images_gb']:.2f} GB | {r['load_s']:.1f} s | {r['peak_rss_gb']:.2f} GB | "
              f"{r['patches_per_s']:.0f} | {r['warm_per_s']:.0f} | {r['pass']} |")  # fmt: skip
    m = rows["memory"]
    for mode in ("files", "prepared"):
        r = rows[mode]
        print(f"{mode}: peak RSS / in memory {r['peak_rss_gb'] / m['peak_rss_gb']:.2f}; "
              f"patch rate / in memory {r['patches_per_s'] / m['patches_per_s']:.2f} "
              f"(after {WARM}: {r['warm_per_s'] / m['warm_per_s']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
