"""Streamed vs in-memory data (``data.stream``): memory held and patch rate on a set of large photographs.

Writes ``--pairs`` clean/noisy pairs of ``--height`` x ``--width`` RGB PNGs (a smooth scene + noise, like a camera's
frames; SIDD Medium's are 3000 x 5328) to a temporary folder, then, each mode in its own process (so the peak
resident memory is that mode's): loads the run's domains with ``data.stream`` true / false, and streams
``--patches`` 64 px patches of the paired domain (every pair but the held-out one) through Ray Data as a Train
worker reads them (``iter_torch_batches`` at batch 16). Prints, per mode: the images' size as float32, the time to
load the domains, the peak resident memory of the driver, and patches/s over the whole stream (its start-up, every
file read, included). Target: the streamed peak does not grow
with the set (a few cached images per process), at a patch rate a training step can use.

    python benchmarks/stream_memory.py [--pairs 16] [--height 2000] [--width 3552] [--patches 4096]
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


def measure(root: str, stream: bool, patches: int, pairs: int, per_read: int) -> dict:
    import ray

    from raytrain.config import load_config
    from raytrain.data.collection import load_domains
    from raytrain.data.pipeline import build_datasets
    from raytrain.data.stored import stored_bytes

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    cfg = load_config(None, [f"data.source={root}/clean", f"data.noisy_source={root}/noisy", "data.color=rgb",
                             "data.max_size=null", "data.val_images=1", "data.val_crop=64",
                             f"data.paired.count={pairs - 1}",
                             f"data.stream={str(stream).lower()}", f"data.stream_patches={per_read}",
                             "data.patches.size=64", "train.batch_size=16",
                             f"train.steps={patches // 16}"])  # fmt: skip
    t0 = time.perf_counter()
    col = load_domains(cfg)
    load_s = time.perf_counter() - t0
    dom = col.domains["paired"]
    ds = build_datasets(cfg, col, ("paired",), 1)["paired"].limit(patches)
    start, seen = time.perf_counter(), 0
    for batch in ds.iter_torch_batches(batch_size=16, local_shuffle_buffer_size=256, drop_last=True):
        seen += batch["clean"].shape[0]
    rate = seen / (time.perf_counter() - start)
    ray.shutdown()
    return {"stream": stream, "images_gb": stored_bytes([*dom.clean, *dom.noisy]) / 2**30,
            "load_s": load_s, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "patches_per_s": rate}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--height", type=int, default=2000)
    ap.add_argument("--width", type=int, default=3552)
    ap.add_argument("--patches", type=int, default=4096)
    ap.add_argument("--stream-patches", type=int, default=64, help="data.stream_patches: patches per file read")
    ap.add_argument("--measure", nargs=2, metavar=("ROOT", "STREAM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        root, stream = args.measure
        print(json.dumps(measure(root, stream == "true", args.patches, args.pairs, args.stream_patches)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clean").mkdir()
        (root / "noisy").mkdir()
        t0 = time.perf_counter()
        write_set(root, args.pairs, args.height, args.width)
        print(f"wrote {args.pairs} pairs of {args.height}x{args.width} RGB in {time.perf_counter() - t0:.0f} s")
        rows = []
        for stream in ("true", "false"):
            cmd = [sys.executable, __file__, "--measure", str(root), stream, "--patches", str(args.patches), "--pairs",
                   str(args.pairs), "--stream-patches", str(args.stream_patches)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"stream={stream} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| data.stream | paired images as float32 | load | driver peak RSS | patches/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {str(r['stream']).lower()} | {r['images_gb']:.2f} GB | {r['load_s']:.1f} s | "
              f"{r['peak_rss_gb']:.2f} GB | {r['patches_per_s']:.0f} |")  # fmt: skip
    s, m = rows
    print(
        f"peak RSS streamed / in memory: {s['peak_rss_gb'] / m['peak_rss_gb']:.2f}; "
        f"patch rate streamed / in memory: {s['patches_per_s'] / m['patches_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
