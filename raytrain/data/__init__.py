"""Data: image collections, noise models, domain splits, Ray Data patch streams."""
