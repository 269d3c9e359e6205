"""SeNM-VAE figures of issue 4, in one run: on camera-like noise (mid preset) with 10 paired tiles plus the unpaired
source/target tiles of the sample photographs,

1. both noise KLDs (and the noise correlation) of the SeNM-VAE's synthetic noise beside the Gaussian and
   heteroscedastic models fitted on the 10 pairs,
2. downstream DnCNN PSNR on the held-out real pairs when trained on SeNM-VAE synthetic + the 10 real pairs, on the
   fitted baselines' pairs, on the 10 real pairs only, and on all real pairs,
3. the step-time ratio of the Ray Train loop against a plain PyTorch loop for the same SeNM-VAE.

    python benchmarks/senm_pipeline.py [--set train.steps=600] [--ratio-steps 30]
"""

from __future__ import annotations

from raytrain import localray

localray.prefer_loopback()  # before Ray is imported: this benchmark's local Ray listens on 127.0.0.1 only

import argparse
import os
import tempfile

import ray

from raytrain.config import load_config
from raytrain.noise_pipeline import run_pipeline
from raytrain.pipeline_report import markdown

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(HERE, "..", "configs", "senm_pipeline.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--ratio-steps", type=int, default=30, help="steps of the Ray-vs-plain timing (0 skips it)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="raytrain-senm-bench-")
    cfg = load_config(a.config, [f"workdir={work}", *a.overrides])
    res = run_pipeline(cfg)
    print(f"\npipeline: {res.wall_s / 60:.1f} min (noise model {cfg.train.steps} steps, DnCNN "
          f"{cfg.pipeline.downstream.train.steps} steps per arm, {cfg.scaling.num_workers} workers)\n")  # fmt: skip
    print(markdown(res, cfg))
    ray.shutdown()
    if a.ratio_steps:
        from loop_overhead import plain_step_time, ray_step_time

        threads = os.cpu_count() or 1
        rcfg = load_config(a.config, [
            f"workdir={work}", "name=senm-overhead", f"train.steps={a.ratio_steps}", "train.log_every=5",
            f"train.val_every={a.ratio_steps}", f"train.checkpoint_every={a.ratio_steps}", "scaling.num_workers=1",
            f"scaling.cpus_per_worker={threads}", "tracking.enabled=false", "data.val_crop=32", *a.overrides,
        ])  # fmt: skip
        ray.init(num_cpus=threads + 1, include_dashboard=False, log_to_driver=False)
        ray_t = ray_step_time(rcfg)
        ray.shutdown()
        plain_t = plain_step_time(rcfg, a.ratio_steps, threads)
        print(f"\nSeNM-VAE step time, batch {rcfg.train.batch_size}, {rcfg.data.patches.size}px, {threads} threads: "
              f"Ray Train {ray_t * 1000:.0f} ms vs plain PyTorch {plain_t * 1000:.0f} ms: "
              f"ratio {ray_t / plain_t:.3f} (target <= 1.05)")  # fmt: skip


if __name__ == "__main__":
    main()
