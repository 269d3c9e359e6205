"""LIR: unsupervised restoration by learning an invariant representation (paper 000_9b4b6eeb780770c7)."""

from raytrain.methods.lir.config import OFFICIAL_RECIPE, TRAIN_DEFAULTS, VARIANTS, LIRConfig
from raytrain.methods.registry import MethodSpec

SPECS = {"lir": MethodSpec(LIRConfig, "raytrain.methods.lir.method:LIR", TRAIN_DEFAULTS, VARIANTS, OFFICIAL_RECIPE)}
