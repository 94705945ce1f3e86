"""SIREN's convolutional frame-rate reduction and upsampling blocks (siren.md §2.1).

* :class:`ConvRateReduction`: ``Conv1d(kernel 2f, stride f, padding floor(f / 2))`` then
  ``LayerNorm``; for an even factor ``f`` it maps ``T`` frames to ``floor(T / f)``.
* :class:`ConvUpsample`: ``ConvTranspose1d(kernel 2f, stride f, padding f / 2)`` (exactly ``x f``
  for even ``f``), a residual refinement of two kernel-7 convolutions with an activation between
  (SiLU in SIREN P1), then ``LayerNorm``.

Both take and return channels-last ``[B, T, C]`` and carry ``downsample`` / ``upsample``
attributes (the toolkit's frame-rate convention). ``factor=1`` is a pointwise projection (the
reference never uses it; odd factors > 1 are refused: the reference's padding does not give
``floor(T / f)`` frames for them).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvRateReduction", "ConvUpsample"]


def _check_factor(factor: int) -> int:
    factor = int(factor)
    if factor < 1 or (factor > 1 and factor % 2):
        raise ValueError(f"rate factor must be 1 or even (siren.md §2.1), got {factor}")
    return factor


class ConvRateReduction(nn.Module):
    """``[B, T, C_in] -> [B, floor(T / f), C_out]`` (strided conv, then LayerNorm).

    Example
    -------
    >>> down = ConvRateReduction(768, 256, 4)
    >>> down(torch.randn(2, 50, 768)).shape, down.downsample
    (torch.Size([2, 12, 256]), 4)
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int, norm: bool = True) -> None:
        super().__init__()
        self.downsample = f = _check_factor(factor)
        if f == 1:
            self.conv = nn.Conv1d(in_channels, out_channels, 1)
        else:
            self.conv = nn.Conv1d(in_channels, out_channels, 2 * f, stride=f, padding=f // 2)
        self.norm = nn.LayerNorm(out_channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"ConvRateReduction expects [B, T, C], got {list(x.shape)}")
        if x.shape[1] < self.downsample:
            raise ValueError(f"ConvRateReduction: {x.shape[1]} frames, fewer than the factor {self.downsample}")
        return self.norm(self.conv(x.transpose(1, 2)).transpose(1, 2))


class ConvUpsample(nn.Module):
    """``[B, T, C_in] -> [B, T * f, C_out]`` (transposed conv, residual k7 refinement, LayerNorm).

    Example
    -------
    >>> up = ConvUpsample(8, 256, 4)
    >>> up(torch.randn(2, 12, 8)).shape, up.upsample
    (torch.Size([2, 48, 256]), 4)
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int, activation: type[nn.Module] = nn.SiLU,
                 kernel_size: int = 7, norm: bool = True) -> None:
        super().__init__()
        self.upsample = f = _check_factor(factor)
        if f == 1:
            self.up = nn.Conv1d(in_channels, out_channels, 1)
        else:
            self.up = nn.ConvTranspose1d(in_channels, out_channels, 2 * f, stride=f, padding=f // 2)
        pad = kernel_size // 2
        self.refine = nn.Sequential(
            nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad),
            activation(),
            nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad),
        )
        self.norm = nn.LayerNorm(out_channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"ConvUpsample expects [B, T, C], got {list(x.shape)}")
        y = self.up(x.transpose(1, 2))
        y = y + self.refine(y)
        return self.norm(y.transpose(1, 2))
