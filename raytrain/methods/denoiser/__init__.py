"""Supervised denoisers (DnCNN; DRUNet arrives with SeNM-VAE's downstream stage)."""
