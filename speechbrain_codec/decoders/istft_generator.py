"""SIREN P1's Vocos-style magnitude + phase iSTFT generator (``NeuralVocoderV2``, siren.md §2.5).

``x [B, T, C] (50 Hz) -> sig [B, T * 320]``:

1. reflect-pad 3 + ``Conv1d(C -> dim, k7)``;
2. ``len(dilations)`` ConvNeXt blocks (depthwise k7 with dilations 1, 1, 2, 2, 4, 4, 8, 8,
   LayerNorm, ``dim -> intermediate_dim -> dim`` with GELU, layer scale 1e-6, residual), plus a
   1x1 skip from the input (added after the blocks);
3. ``len(res_dilations)`` residual blocks (LeakyReLU 0.1 -> k3 conv with dilation 1, 3, 5 ->
   LeakyReLU 0.1 -> k3 conv, residual);
4. LayerNorm; magnitude head ``Linear -> GELU -> Linear(n_fft / 2 + 1)`` giving
   ``exp(clamp(log_mag, -10, 10))``; phase head (same shape) predicting an instantaneous frequency
   ``pi tanh(.)``, integrated by a cumulative sum along time, scaled by a learnable scalar
   (initial 0.1) and wrapped to ``[-pi, pi]``;
5. inverse STFT, ``n_fft`` 1024, hop 320, Hann 1024, centred (``torch.istft(center=True)``), cut
   to ``T * hop`` samples.

The math differs from :class:`~speechbrain_codec.decoders.vocos.ISTFTHead` (which predicts the
phase directly and inverts with "same" padding), so that head is not reused. The residual blocks'
inner layout (two convolutions per block) is our reading of "3 residual blocks (k3, dilations
1, 3, 5, LeakyReLU 0.1)". The reference hard-codes 512 / 8 / 3 (its config keys are ignored,
spec §7 item 8); here they are arguments with those defaults.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .base import Decoder

__all__ = ["DilatedConvNeXtBlock", "ISTFTGenerator", "wrap_phase"]


def wrap_phase(phase: torch.Tensor) -> torch.Tensor:
    """Phase wrapped to ``[-pi, pi)``."""
    return torch.remainder(phase + math.pi, 2 * math.pi) - math.pi


class DilatedConvNeXtBlock(nn.Module):
    """ConvNeXt block with a dilated depthwise conv, on ``[B, C, T]``."""

    def __init__(self, dim: int, intermediate_dim: int, dilation: int = 1, kernel_size: int = 7,
                 layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation,
                                groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class _ResBlock(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class ISTFTGenerator(Decoder):
    """SIREN P1's iSTFT generator (module docstring).

    Example
    -------
    >>> gen = ISTFTGenerator(16, dim=32, intermediate_dim=64, dilations=(1, 2), res_dilations=(1,))
    >>> gen(torch.randn(2, 5, 16)).shape, gen.hop_length
    (torch.Size([2, 1600]), 320)
    """

    def __init__(self, in_channels: int, dim: int = 512, intermediate_dim: int = 2048,
                 dilations: Sequence[int] = (1, 1, 2, 2, 4, 4, 8, 8), res_dilations: Sequence[int] = (1, 3, 5),
                 n_fft: int = 1024, hop_length: int = 320, win_length: int | None = None,
                 sample_rate: int = 16000, phase_scale_init: float = 0.1) -> None:
        super().__init__()
        self.in_channels, self.hop_length, self.sample_rate = in_channels, hop_length, sample_rate
        self.n_fft, self.win_length = n_fft, win_length or n_fft
        self.embed = nn.Conv1d(in_channels, dim, 7)
        self.blocks = nn.ModuleList(DilatedConvNeXtBlock(dim, intermediate_dim, d) for d in dilations)
        self.skip = nn.Conv1d(in_channels, dim, 1)
        self.res_blocks = nn.ModuleList(_ResBlock(dim, d) for d in res_dilations)
        self.norm = nn.LayerNorm(dim)
        bins = n_fft // 2 + 1
        self.mag_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, bins))
        self.phase_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, bins))
        self.phase_scale = nn.Parameter(torch.tensor(float(phase_scale_init)))
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, T, C] -> (magnitude, phase)``, each ``[B, n_fft / 2 + 1, T]``."""
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"ISTFTGenerator expects [B, T, {self.in_channels}], got {list(x.shape)}")
        h = x.transpose(1, 2)
        y = self.embed(nn.functional.pad(h, (3, 3), mode="reflect" if h.shape[-1] > 3 else "replicate"))
        for blk in self.blocks:
            y = blk(y)
        y = y + self.skip(h)
        for blk in self.res_blocks:
            y = blk(y)
        y = self.norm(y.transpose(1, 2))  # [B, T, dim]
        mag = torch.exp(self.mag_head(y).clamp(-10, 10))
        inst_freq = math.pi * torch.tanh(self.phase_head(y))
        phase = wrap_phase(self.phase_scale * torch.cumsum(inst_freq, dim=1))
        return mag.transpose(1, 2), phase.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C] -> sig [B, T * hop_length]``."""
        mag, phase = self.spectrum(x)
        spec = torch.polar(mag.float(), phase.float())
        return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, window=self.window.float(),
                           center=True, length=x.shape[1] * self.hop_length)
