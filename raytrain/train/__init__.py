"""Training: the one loop, checkpoints, and the TorchTrainer launcher."""
