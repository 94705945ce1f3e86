"""ConvNeXt 1-D blocks as used by Vocos (Siuzdak, 2023) and FocalCodec's decoders.

Parameter names follow FocalCodec's Vocos / WaveNeXt backbones (``embedding``, ``input_norm``,
``layers.i.{dwconv,norm,pwconv1,pwconv2,gamma}``, ``output_norm``) so that published decoder
weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .streaming import StreamCache, pad_left, stream_conv1d

__all__ = ["ConvNeXtBlock", "ConvNeXtStack"]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP (GELU) -> layer scale, with a residual.

    Parameters
    ----------
    dim : int
        Channels in and out.
    intermediate_dim : int
        Hidden size of the pointwise MLP.
    kernel_size : int
        Depthwise kernel size (odd).
    layer_scale_init : float
        Initial value of the per-channel residual scale.
    causal : bool
        Left-pad the depthwise convolution with zeros so that no output depends on future
        frames; streaming then carries the left context in ``cache``.

    Example
    -------
    >>> blk = ConvNeXtBlock(16, 48)
    >>> blk(torch.randn(2, 16, 10)).shape
    torch.Size([2, 16, 10])
    """

    def __init__(
        self,
        dim: int,
        intermediate_dim: int,
        kernel_size: int = 7,
        layer_scale_init: float = 1e-6,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.causal, self.kernel_size = causal, kernel_size
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, groups=dim, padding=0 if causal else "same")
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale_init * torch.ones(dim))

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        """``x [B, C, T] -> [B, C, T]``."""
        residual = x
        if self.causal:
            x = pad_left(x, self.kernel_size - 1, self, cache, mode="constant")
        x = self.dwconv(x).transpose(1, 2)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = (self.gamma * x).transpose(1, 2)
        return residual + x


class ConvNeXtStack(nn.Module):
    """Input conv, ``num_layers`` ConvNeXt blocks and a final LayerNorm (Vocos backbone).

    Example
    -------
    >>> stack = ConvNeXtStack(8, 32, 96, num_layers=2)
    >>> stack(torch.randn(2, 8, 10)).shape
    torch.Size([2, 10, 32])
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        kernel_size: int = 7,
        causal: bool = False,
        layer_scale_init: float | None = None,
    ) -> None:
        super().__init__()
        self.causal, self.kernel_size = causal, kernel_size
        if layer_scale_init is None:
            layer_scale_init = 1.0 / max(num_layers, 1)
        self.embedding = nn.Conv1d(in_channels, dim, kernel_size, padding=0 if causal else "same")
        self.input_norm = nn.LayerNorm(dim, eps=1e-6)
        self.layers = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, kernel_size, layer_scale_init, causal)
            for _ in range(num_layers)
        )
        self.output_norm = nn.LayerNorm(dim, eps=1e-6)
        self.fast = False  # the inference path: streaming chunks through stream_conv1d

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        """``x [B, C_in, T] -> [B, T, dim]``."""
        if self.causal:
            x = pad_left(x, self.kernel_size - 1, self, cache, mode="constant")
        x = stream_conv1d(self.embedding, x) if self.fast and self.causal else self.embedding(x)
        x = self.input_norm(x.transpose(1, 2)).transpose(1, 2)
        for blk in self.layers:
            x = blk(x, cache)
        return self.output_norm(x.transpose(1, 2))
