"""Supervised denoisers: DnCNN and DRUNet (SeNM-VAE's downstream stage)."""

from raytrain.methods.denoiser.config import TRAIN_DEFAULTS, DnCNNConfig, DRUNetConfig
from raytrain.methods.registry import MethodSpec

_METHOD = "raytrain.methods.denoiser.method:SupervisedDenoiser"
SPECS = {
    "dncnn": MethodSpec(DnCNNConfig, _METHOD, TRAIN_DEFAULTS["dncnn"]),
    "drunet": MethodSpec(DRUNetConfig, _METHOD, TRAIN_DEFAULTS["drunet"]),
}
