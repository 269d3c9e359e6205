"""Sweeps (Ray Tune + Optuna) and ablation grids over the one training loop."""
