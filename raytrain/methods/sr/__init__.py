"""Super-resolution: the RRDB / ESRGAN net SeNM-VAE's SR experiments train on synthetic LR/HR pairs (Tables 4-5)."""

from raytrain.methods.registry import MethodSpec
from raytrain.methods.sr.config import OFFICIAL_RECIPE, TRAIN_DEFAULTS, RRDBConfig

SPECS = {"rrdb": MethodSpec(RRDBConfig, "raytrain.methods.sr.method:RRDBSR", TRAIN_DEFAULTS,
                            official=OFFICIAL_RECIPE)}  # fmt: skip
