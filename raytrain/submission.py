"""Benchmark submissions: a restorer's output in the layout a benchmark server takes. Pure numpy/torch.

DND (sRGB): ``OUT/bundled/NNNN.mat`` per image with ``Idenoised`` (a 1 x crops cell of (H, W, 3) float32 crops in
[0, 1]), ``israw`` false and ``eval_version`` "1.0", as the devkit's ``bundle_submissions_srgb`` writes them; the
folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from raytrain.data.datasets import dnd_crops
from raytrain.errors import DataError
from raytrain.evaluate import tiled
from raytrain.layout import to_image, to_tensor


def dnd_submission(restore: Callable[[torch.Tensor], torch.Tensor], root: str | Path, out: str | Path,
                   progress: bool = True) -> int:  # fmt: skip
    """Denoise every DND crop with ``restore`` ((1, 3, H, W) -> same) into ``out/bundled``; returns the image count."""
    import scipy.io
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and is not empty; give a new folder")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bundled").mkdir(parents=True)
    run = tiled(restore)
    n = 0
    try:
        for i, crops in tqdm(dnd_crops(root), desc="dnd", unit="img", disable=None if progress else True):
            cell = np.empty((1, len(crops)), dtype=object)
            for k, c in enumerate(crops):
                with torch.no_grad():
                    cell[0, k] = to_image(run(to_tensor(c)).clamp(0, 1))
            scipy.io.savemat(tmp / "bundled" / f"{i:04d}.mat",
                             {"Idenoised": cell, "israw": False, "eval_version": "1.0"})  # fmt: skip
            n += 1
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n
