"""Position-wise feed-forward block (``in_proj`` -> GELU -> ``out_proj``, dropout after each),
with the parameter names WavLM and FocalNet checkpoints use."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeedForward"]


class FeedForward(nn.Module):
    """``x [..., dim] -> [..., dim]`` through a ``ffn_dim`` hidden layer.

    Example
    -------
    >>> FeedForward(8, 32)(torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(ffn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.out_proj(self.dropout(self.act(self.in_proj(x)))))
