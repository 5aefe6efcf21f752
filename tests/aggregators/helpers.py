"""Shared fixtures-as-functions for the aggregator tests."""

from __future__ import annotations

import torch

import mtlkit


def make_J(K: int, n: int, seed: int = 0, dtype: torch.dtype = torch.float64,
           conflict: bool = True) -> torch.Tensor:
    """A random [K, n] Jacobian; with ``conflict`` rows alternate around a shared direction
    so that many pairs conflict."""
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(K, n, generator=g, dtype=torch.float64)
    if conflict:
        base = torch.randn(n, generator=g, dtype=torch.float64)
        signs = torch.tensor([(-1.0) ** k for k in range(K)], dtype=torch.float64)
        J = 0.7 * J + signs[:, None] * base
    return J.to(dtype)


def has_conflict(J: torch.Tensor) -> bool:
    G = J @ J.T
    return bool((G < 0).any())


def agg(name: str, **params):
    return mtlkit.get_aggregator(name, **params)
