"""Shared network blocks (no Ray, no MLflow)."""
