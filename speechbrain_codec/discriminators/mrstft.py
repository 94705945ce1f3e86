"""SIREN P1's discriminator pair (siren.md §3): HiFi-GAN's multi-period discriminator (periods
2, 3, 5, 7, 11; :class:`~speechbrain_codec.discriminators.hifigan.MultiPeriod`) and a
multi-resolution STFT discriminator (MRD) on *linear* magnitude spectrograms.

MRD (:class:`MagnitudeSTFTDiscriminator`, one per resolution (n_fft, hop, win) = (1024, 120, 600),
(2048, 240, 1200), (512, 50, 240), Hann): ``|STFT|`` laid out ``[B, 1, freq, time]``; 2-D convs of
``channels`` (32) channels: (3, 9) stride 1, three (3, 9) with stride 2 along the **time** axis,
(3, 3), post conv (3, 3) to one channel; weight norm, LeakyReLU 0.1. This is not the toolkit's
:class:`~speechbrain_codec.discriminators.MultiResolutionSTFTDiscriminator` (log magnitude,
strides along frequency, dilations, slope 0.2).

Every discriminator maps ``sig [B, 1, T]`` to ``(scores, feats)`` (the toolkit's convention).
``width`` multiplies every channel count (1: the reference; debug runs use less).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .hifigan import MultiPeriod, scale_channels

__all__ = ["MagnitudeSTFTDiscriminator", "MultiResolutionMagnitudeDiscriminator", "SirenDiscriminator"]

RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


class MagnitudeSTFTDiscriminator(nn.Module):
    """One MRD sub-discriminator (module docstring). Returns ``(score [B, N], feats: 6 maps)``.

    Example
    -------
    >>> d = MagnitudeSTFTDiscriminator(512, 50, 240, channels=4)
    >>> score, feats = d(torch.randn(2, 1, 4000))
    >>> len(feats), feats[0].shape
    (6, torch.Size([2, 4, 257, 81]))
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        c = channels
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.conv_post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))
        self.act = nn.LeakyReLU(0.1)

    def spectrogram(self, sig: torch.Tensor) -> torch.Tensor:
        """``sig [B, 1, T] -> |STFT| [B, 1, freq, time]``."""
        spec = torch.stft(sig[:, 0].float(), self.n_fft, self.hop_length, self.win_length, window=self.window,
                          center=True, return_complex=True)
        return spec.abs()[:, None]

    def forward(self, sig: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.spectrogram(sig)
        feats = []
        for conv in self.convs:
            x = self.act(conv(x))
            feats.append(x)
        x = self.conv_post(x)
        feats.append(x)
        return x.flatten(1), feats


class MultiResolutionMagnitudeDiscriminator(nn.Module):
    """SIREN's MRD: one :class:`MagnitudeSTFTDiscriminator` per resolution."""

    def __init__(self, resolutions: Sequence[Sequence[int]] = RESOLUTIONS, channels: int = 32) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(MagnitudeSTFTDiscriminator(*r, channels=channels) for r in resolutions)

    def forward(self, sig: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(sig)
            scores.append(s)
            feats.append(f)
        return scores, feats


class SirenDiscriminator(nn.Module):
    """MPD + MRD (module docstring): ``len(periods) + len(resolutions)`` sub-discriminators, the
    MPD's first.

    Example
    -------
    >>> d = SirenDiscriminator(width=1 / 16)
    >>> scores, feats = d(torch.randn(2, 1, 4000))
    >>> len(scores), [len(f) for f in feats]
    (8, [6, 6, 6, 6, 6, 6, 6, 6])
    """

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), resolutions: Sequence[Sequence[int]] = RESOLUTIONS,
                 width: float = 1.0) -> None:
        super().__init__()
        self.mpd = MultiPeriod(periods, width)
        self.mrd = MultiResolutionMagnitudeDiscriminator(resolutions, scale_channels(32, width))

    def forward(self, sig: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = self.mpd(sig)
        s, f = self.mrd(sig)
        return scores + s, feats + f
