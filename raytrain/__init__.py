"""raytrain: train and tune learned image-restoration models on Ray when clean/noisy pairs are scarce."""

__version__ = "0.1.0"
