"""Losses (no Ray, no MLflow): adversarial, KL, background consistency (BCM), semantic consistency (SCM)."""
