"""HiFi-GAN discriminators (Kong et al., 2020), V1 layout, with a channel-width multiplier.

The LM-loss codec's spec (§2.6) trains the generator against HiFi-GAN's multi-period (MPD) and
multi-scale (MSD) discriminators. speechbrain's lobes (``speechbrain.lobes.models.HifiGAN``) have
fixed sizes (about 70 M parameters); :class:`HiFiGANDiscriminator` is the same model with every
hidden channel count multiplied by ``width``, so ``width=1`` is the published model (same
parameter count, score and feature-map shapes as speechbrain's ``MultiPeriodDiscriminator`` +
``MultiScaleDiscriminator``) and ``width=1/16`` a tiny one for debug runs.

* MPD (:class:`PeriodDiscriminator`, one per period 2, 3, 5, 7, 11): the input is reflect-padded
  at the end to a multiple of the period and folded to ``[B, 1, T / p, p]``; 2-D convs
  1→32→128→512→1024 (kernel (5, 1), stride (3, 1), padding (2, 0)), then 1024→1024 (kernel (5, 1),
  stride 1, padding (2, 0)), post conv 1024→1 (kernel (3, 1), padding (1, 0)); weight norm.
* MSD (:class:`ScaleDiscriminator`, 3 scales: the raw signal, then two successive
  ``AvgPool1d(4, 2, padding=2)``; the first scale spectral norm, the others weight norm): Conv1d
  1→128 k15 p7; 128→128 k41 s2 g4 p20; 128→256 k41 s2 g16 p20; 256→512 k41 s4 g16 p20;
  512→1024 k41 s4 g16 p20; 1024→1024 k41 s1 g16 p20; 1024→1024 k5 p2; post 1024→1 k3 p1.
* LeakyReLU(0.1) after every conv but the post conv. Each sub-discriminator returns its flattened
  post-conv output as the score, and as features the activation of every conv plus the post-conv
  output (6 maps for a period, 8 for a scale), as speechbrain's lobes do.

Width rounding: a hidden channel count ``c`` becomes ``max(m, round(c * width / m) * m)`` where
``m`` is the least common multiple of the group counts of the two convolutions it joins (so
that both stay valid grouped convolutions); ``width=1`` leaves every count unchanged.

Padding: the convolutions zero-pad, as the published HiFi-GAN code (``padding=(2, 0)``).
speechbrain's ``DiscriminatorP`` pads its 2-D convs by the same amounts but in ``"reflect"``
mode (its ``Conv2d`` default); ``mpd_padding_mode="reflect"`` reproduces that lobe numerically.
The weight / spectral norms are ``torch.nn.utils.parametrizations`` ones (``dim=0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

__all__ = [
    "HiFiGANDiscriminator",
    "MultiPeriod",
    "MultiScale",
    "PeriodDiscriminator",
    "ScaleDiscriminator",
    "scale_channels",
]

LRELU_SLOPE = 0.1

# (out_channels, kernel, stride, groups, padding) of the MSD conv stack (the post conv excluded).
_MSD_LAYERS = (
    (128, 15, 1, 1, 7),
    (128, 41, 2, 4, 20),
    (256, 41, 2, 16, 20),
    (512, 41, 4, 16, 20),
    (1024, 41, 4, 16, 20),
    (1024, 41, 1, 16, 20),
    (1024, 5, 1, 1, 2),
)
# (out_channels, stride) of the MPD conv stack (kernel (5, 1), padding (2, 0); post conv excluded).
_MPD_LAYERS = ((32, 3), (128, 3), (512, 3), (1024, 3), (1024, 1))


def scale_channels(channels: int, width: float, multiple: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``multiple`` (and at least ``multiple``).

    Example
    -------
    >>> scale_channels(1024, 1.0, 16), scale_channels(128, 1 / 16, 16), scale_channels(32, 1 / 16)
    (1024, 16, 2)
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(multiple, int(round(channels * width / multiple)) * multiple)


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator: folds ``[B, 1, T]`` by ``period`` and runs weight-normed
    2-D convs over the folded time axis. Returns ``(score [B, N], feats: 6 maps)``.

    Example
    -------
    >>> d = PeriodDiscriminator(3, width=1 / 16)
    >>> score, feats = d(torch.randn(2, 1, 1000))
    >>> score.shape, len(feats), feats[0].shape
    (torch.Size([2, 15]), 6, torch.Size([2, 2, 112, 3]))
    """

    def __init__(self, period: int, width: float = 1.0, kernel_size: int = 5,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        pad = (kernel_size - 1) // 2
        convs, cin = [], 1
        for cout, stride in _MPD_LAYERS:
            cout = scale_channels(cout, width)
            convs.append(weight_norm(nn.Conv2d(cin, cout, (kernel_size, 1), (stride, 1), padding=(pad, 0),
                                               padding_mode=padding_mode)))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(cin, 1, (3, 1), 1, padding=(1, 0), padding_mode=padding_mode))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"PeriodDiscriminator expects x [B, 1, T], got {tuple(x.shape)}")
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return torch.flatten(x, 1, -1), feats


class ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator: grouped 1-D convs on ``[B, 1, T]``, spectral-normed
    (``use_spectral_norm=True``) or weight-normed. Returns ``(score [B, N], feats: 8 maps)``.

    Example
    -------
    >>> d = ScaleDiscriminator(width=1 / 16)
    >>> score, feats = d(torch.randn(2, 1, 1000))
    >>> score.shape, len(feats), [f.shape[1] for f in feats]
    (torch.Size([2, 16]), 8, [8, 16, 16, 32, 64, 64, 64, 1])
    """

    def __init__(self, width: float = 1.0, use_spectral_norm: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        groups = [g for _, _, _, g, _ in _MSD_LAYERS] + [1]  # + the post conv
        convs, cin = [], 1
        for i, (cout, k, s, g, p) in enumerate(_MSD_LAYERS):
            cout = scale_channels(cout, width, math.lcm(g, groups[i + 1]))
            convs.append(norm(nn.Conv1d(cin, cout, k, s, groups=g, padding=p)))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(cin, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return torch.flatten(x, 1, -1), feats


class MultiPeriod(nn.Module):
    """HiFi-GAN's MPD: one :class:`PeriodDiscriminator` per period (``discriminators``)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), width: float = 1.0,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width, padding_mode=padding_mode)
                                            for p in periods)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(x)
            scores.append(s)
            feats.append(f)
        return scores, feats


class MultiScale(nn.Module):
    """HiFi-GAN's MSD: ``num_scales`` :class:`ScaleDiscriminator` (the first spectral-normed) on
    the raw signal and on successively ``AvgPool1d(4, 2, padding=2)``-pooled copies."""

    def __init__(self, num_scales: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if num_scales < 0:
            raise ValueError(f"num_scales must be >= 0, got {num_scales}")
        self.discriminators = nn.ModuleList(ScaleDiscriminator(width, use_spectral_norm=i == 0)
                                            for i in range(num_scales))
        self.meanpools = nn.ModuleList(nn.AvgPool1d(4, 2, padding=2) for _ in range(max(num_scales - 1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.meanpools[i - 1](x)
            s, f = d(x)
            scores.append(s)
            feats.append(f)
        return scores, feats


class HiFiGANDiscriminator(nn.Module):
    """HiFi-GAN's MPD + MSD with a channel-width multiplier (module docstring).

    ``forward(sig [B, 1, T]) -> (scores, feats)``: the MPD's ``len(periods)`` sub-discriminators
    first, then the MSD's ``num_scales`` (8 by default), as
    ``CombinedDiscriminator([MultiPeriodDiscriminator(), MultiScaleDiscriminator()])``;
    ``feats[i]`` is the list of sub-discriminator ``i``'s feature maps (6 per period, 8 per
    scale). ``width=1`` is the published model (about 70 M parameters).

    Example
    -------
    >>> d = HiFiGANDiscriminator(width=1 / 16)
    >>> scores, feats = d(torch.randn(2, 1, 4000))
    >>> len(scores), [len(f) for f in feats]
    (8, [6, 6, 6, 6, 6, 8, 8, 8])
    >>> sum(p.numel() for p in d.parameters()) < 1_000_000
    True
    """

    def __init__(self, width: float = 1.0, periods: Sequence[int] = (2, 3, 5, 7, 11), num_scales: int = 3,
                 mpd_padding_mode: str = "zeros") -> None:
        super().__init__()
        self.width = width
        self.mpd = MultiPeriod(periods, width, mpd_padding_mode)
        self.msd = MultiScale(num_scales, width)

    def forward(self, sig: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = self.mpd(sig)
        scores_, feats_ = self.msd(sig)
        return scores + scores_, feats + feats_
