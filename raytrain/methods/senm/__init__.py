"""SeNM-VAE: semi-supervised noise modelling with a hierarchical VAE (paper 004_35052d6d574224bf)."""

from raytrain.methods.registry import MethodSpec
from raytrain.methods.senm.config import OFFICIAL_RECIPE, TRAIN_DEFAULTS, VARIANTS, SeNMConfig

SPECS = {"senm": MethodSpec(SeNMConfig, "raytrain.methods.senm.method:SeNM", TRAIN_DEFAULTS, VARIANTS, OFFICIAL_RECIPE)}
