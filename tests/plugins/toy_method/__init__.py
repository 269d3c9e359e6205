"""A toy method in one folder (tests/test_registry.py): registered by naming this package in RAYTRAIN_METHODS."""

from raytrain.methods.registry import MethodSpec
from toy_method.config import ToyConfig

SPECS = {
    "toy": MethodSpec(
        ToyConfig,
        "toy_method.method:Toy",
        {"lr": 1e-2, "schedule": {"kind": "constant"}},
        {"full": (), "wide": ("method.kernel=5",)},
    ),  # fmt: skip
}
