"""KL regularisers of a latent code towards N(0, 1)."""

from __future__ import annotations

import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over elements of KL(N(mu, exp(logvar)) || N(0, 1)) (the paper's KL on the noise code)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def mu_squared(mu: torch.Tensor) -> torch.Tensor:
    """UNIT/official-code variant: mean(mu^2), with unit-variance sampling z = mu + N(0, 1)."""
    return mu.pow(2).mean()


def gaussian_kl_two(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor):
    """Elementwise KL(N(mu_q, var_q) || N(mu_p, var_p))."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0)
