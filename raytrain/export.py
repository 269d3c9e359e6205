"""A trained restorer for use outside raytrain: TorchScript (``torch.jit.trace``) or ONNX (``torch.onnx.export``'s
dynamo exporter, dynamic batch, height and width), checked against the eager model on a test image before the file is
kept. No Ray, no MLflow.

The exported graph is the restorer's own arithmetic (LIR: ``G_Y(E_X(2x - 1))`` mapped back to [0, 1]; a DRUNet with a
noise-level map takes the level as a second input). Its input's height and width must divide by the net's stride
(:func:`stride_of`: 1 for DnCNN, 8 for a 4-scale DRUNet, 2^n_down for LIR), because the eager model's padding to that
multiple depends on the size and is not part of a traced graph; pad on the right and bottom (reflect / replicate)
and crop back, as ``raytrain denoise`` does. The sidecar ``FILE.json`` says so, with the channels and value range.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raytrain.errors import RaytrainError

FORMATS = ("torchscript", "onnx")
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
TOLERANCE = 1e-4


def stride_of(method) -> int:
    """What the exported model's input sides must divide by."""
    s = getattr(method, "stride", None)
    if s is None:
        s = max((getattr(n, "stride", 1) for n in method.nets.values()), default=1)
    return int(s)


class ExportedRestorer(nn.Module):
    """The eager restorer as one module: ``forward(noisy[, level])`` -> restored, (N, C, H, W) in [0, 1]."""

    def __init__(self, method):
        super().__init__()
        self.method = method
        self.nets = nn.ModuleDict({k: method.nets[k] for k in method.inference_nets})
        self.noise_map = bool(getattr(method, "noise_map", False))

    def forward(self, noisy: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise_map:
            return self.method._forward(noisy, level)
        return self.method.restore(noisy)


def check_image(channels: int, stride: int, size: tuple[int, int] = (96, 136)) -> torch.Tensor:
    """A bundled photograph (scikit-image's camera / astronaut), a centre crop whose sides divide by ``stride``:
    another size than the export's example, so a size baked into the graph fails the check."""
    from skimage import data

    img = data.astronaut() if channels == 3 else data.camera()[..., None]
    h, w = (max(stride, s - s % stride) for s in size)
    y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    crop = img[y0 : y0 + h, x0 : x0 + w].astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]


def export(method, cfg, fmt: str, out: str | Path, check: torch.Tensor | None = None) -> dict:
    """Write ``method`` (a restorer) as ``fmt`` to ``out`` after checking it against the eager model on ``check``
    (default: :func:`check_image`); returns the sidecar's facts (with the check's max abs difference). A difference
    over :data:`TOLERANCE` is an error and no file is left."""
    if fmt not in FORMATS:
        raise RaytrainError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not method.restores:
        raise RaytrainError(f"a {method.name} checkpoint is a noise model; export takes a denoiser / SR model")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = ExportedRestorer(method).eval()
    stride = stride_of(method)
    channels = 3 if cfg.data.color == "rgb" else 1
    example = (torch.rand(1, channels, 4 * stride if stride > 1 else 64, 4 * stride if stride > 1 else 64),)
    x = check_image(channels, stride) if check is None else check
    inputs = (x,)
    if module.noise_map:
        example += (torch.full((1, 1, 1, 1), 25 / 255),)
        inputs += (torch.full((x.shape[0], 1, 1, 1), 15 / 255),)
    with torch.no_grad():
        want = module(*inputs)
    tmp = out.with_name(out.name + ".tmp")
    try:
        got = _write(module, fmt, example, tmp, inputs, stride)
        diff = float((got - want).abs().max())
        if not diff <= TOLERANCE:
            raise RaytrainError(f"the exported {fmt} model differs from the eager one by {diff:.2e} (limit "
                                f"{TOLERANCE:g}) on a {tuple(x.shape)} test image; not written")  # fmt: skip
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    facts = {
        "format": fmt, "method": method.name, "inputs": ["noisy", "level"] if module.noise_map else ["noisy"],
        "layout": "NCHW float32", "channels": channels, "range": [0.0, 1.0],
        "sides_divide_by": stride, "scale": int(getattr(cfg.data, "scale", 1) or 1),
        "level": "noise std on the [0, 1] scale, shape (N, 1, 1, 1)" if module.noise_map else None,
        "checked_on": list(x.shape), "max_abs_diff": diff,
    }  # fmt: skip
    Path(str(out) + ".json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def _write(module: nn.Module, fmt: str, example: tuple, path: Path, inputs: tuple, stride: int) -> torch.Tensor:
    """Write the model to ``path``, load it back and return its output on ``inputs``."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer / exporter notices about Python control flow on shapes
        if fmt == "torchscript":
            traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, str(path))
            return torch.jit.load(str(path))(*inputs)
        return _onnx(module, example, path, inputs, stride)


def _onnx(module: nn.Module, example: tuple, path: Path, inputs: tuple, stride: int) -> torch.Tensor:
    try:
        import onnxruntime as ort
    except ImportError:
        raise RaytrainError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'raytrain[export]'"
        ) from None
    n = torch.export.Dim("batch", min=1, max=1024)
    h, w = (torch.export.Dim(k, min=1, max=4096) for k in ("h", "w"))
    spatial = {0: n, 2: stride * h, 3: stride * w} if stride > 1 else {0: n, 2: h, 3: w}
    names = ["noisy", "level"][: len(example)]
    shapes = {"noisy": spatial} | ({"level": {0: n}} if len(example) > 1 else {})
    import logging

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=names,
            output_names=["restored"],
            dynamic_shapes=shapes,
            dynamo=True,
            verbose=False,
            external_data=False,
        )  # one file
    except ImportError:
        raise RaytrainError("ONNX export needs onnx and onnxscript: pip install 'raytrain[export]'") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
    return torch.from_numpy(session.run(None, feed)[0])
