"""Frame-rate changes between an encoder and a quantizer of its own stream."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvDownsample"]


class ConvDownsample(nn.Module):
    """``[B, T, C_in] -> [B, T / factor, C_out]``: a strided convolution (kernel ``2 * factor``,
    half-overlapping windows) whose integer ``downsample`` attribute a codec uses to derive the
    stream's frame rate (a 25 Hz encoder and ``factor=2`` give a 12.5 Hz stream).

    Example
    -------
    >>> ConvDownsample(8, 4, 2)(torch.randn(2, 10, 8)).shape
    torch.Size([2, 5, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.downsample = int(factor)
        self.conv = nn.Conv1d(in_channels, out_channels, 2 * factor if factor > 1 else 1, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Exactly ``ceil(T / factor)`` frames: the input is zero-padded at the end to a whole
        number of windows, and by ``factor // 2`` / ``factor - factor // 2`` frames around."""
        f = self.downsample
        if f == 1:
            return self.conv(x.transpose(1, 2)).transpose(1, 2)
        extra = (-x.shape[1]) % f
        y = nn.functional.pad(x.transpose(1, 2), (f // 2, f - f // 2 + extra))
        return self.conv(y).transpose(1, 2)
