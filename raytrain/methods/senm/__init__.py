"""SeNM-VAE: semi-supervised noise modelling with a hierarchical VAE (paper 004_35052d6d574224bf)."""
