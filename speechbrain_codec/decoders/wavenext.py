"""WaveNeXt decoder (Okamoto et al., 2023): ConvNeXt backbone and a linear waveform head.

FocalCodec-Stream's decoder: causal backbone (convolutions left-padded with zeros), then
``Linear(dim, hop_length)`` per frame, flattened and clamped to [-1, 1]. Parameter names
follow FocalCodec's ``WaveNeXt`` (``backbone.*``, ``head.proj``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import ConvNeXtStack, StreamCache
from .base import Decoder

__all__ = ["WaveNeXtDecoder", "WaveNeXtHead"]


class WaveNeXtHead(nn.Module):
    """``x [B, T, dim] -> sig [B, T * hop_length]`` by a per-frame linear map, clamped to [-1, 1]."""

    def __init__(self, dim: int, hop_length: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(1).clamp(-1.0, 1.0)


class WaveNeXtDecoder(Decoder):
    """ConvNeXt backbone + :class:`WaveNeXtHead`; streams when ``causal``.

    Parameters
    ----------
    in_channels : int
        Input frame size C.
    dim, intermediate_dim, num_layers, kernel_size : int
        Backbone size (FocalCodec-Stream: 1024, 2048, 8, 7).
    hop_length : int
        Output samples per input frame (FocalCodec-Stream: 480 = 20 ms at 24 kHz).
    sample_rate : int
        Output sample rate.
    causal : bool
        Causal backbone; ``forward(x, cache)`` then decodes a stream chunk by chunk.

    Example
    -------
    >>> dec = WaveNeXtDecoder(8, dim=16, intermediate_dim=32, num_layers=1, hop_length=30,
    ...                       sample_rate=24000, causal=True)
    >>> x = torch.randn(1, 6, 8)
    >>> cache = {}
    >>> torch.allclose(dec(x), torch.cat([dec(x[:, :2], cache), dec(x[:, 2:], cache)], 1), atol=1e-6)
    True
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 1024,
        intermediate_dim: int = 2048,
        num_layers: int = 8,
        hop_length: int = 480,
        sample_rate: int = 24000,
        kernel_size: int = 7,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.hop_length, self.sample_rate = in_channels, hop_length, sample_rate
        self.causal = self.streaming = causal
        self.backbone = ConvNeXtStack(in_channels, dim, intermediate_dim, num_layers, kernel_size, causal)
        self.head = WaveNeXtHead(dim, hop_length)

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        """``x [B, T, C] -> sig [B, T * hop_length]``."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"WaveNeXtDecoder expects [B, T, {self.in_channels}], got {list(x.shape)}")
        return self.head(self.backbone(x.transpose(1, 2), cache))
