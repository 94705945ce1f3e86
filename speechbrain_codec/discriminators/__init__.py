"""Waveform discriminators for adversarial codec training.

Every discriminator maps ``sig [B, 1, T]`` to ``(scores, feats)``: a list of score tensors (one
per sub-discriminator) and a list of lists of intermediate feature maps (for feature matching).

| class | from | notes |
|---|---|---|
| ``MultiPeriodDiscriminator`` | HiFi-GAN (Kong et al., 2020) | speechbrain's lobe; periods 2, 3, 5, 7, 11 |
| ``MultiScaleDiscriminator`` | MelGAN / HiFi-GAN | speechbrain's lobe; raw, 2x and 4x average-pooled |
| ``MultiScaleSTFTDiscriminator`` | EnCodec (Défossez et al., 2022) | complex STFT at several resolutions, 2-D convs |
| ``MultiResolutionSTFTDiscriminator`` | UnivNet / SIREN's MR-STFT | magnitude STFT at several resolutions |
| ``CombinedDiscriminator`` | | concatenates the outputs of several (HiFi-GAN = MPD + MSD) |
| ``HiFiGANDiscriminator`` | HiFi-GAN V1 | MPD + MSD, channel ``width`` multiplier (1: 70.7 M; 1/16: 0.28 M) |
"""

from __future__ import annotations

from typing import Sequence

import torch
from speechbrain.lobes.models.HifiGAN import MultiPeriodDiscriminator, MultiScaleDiscriminator
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .hifigan import HiFiGANDiscriminator

__all__ = [
    "CombinedDiscriminator",
    "HiFiGANDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiResolutionSTFTDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleSTFTDiscriminator",
    "STFTDiscriminator",
]


class STFTDiscriminator(nn.Module):
    """2-D conv discriminator on one STFT resolution (EnCodec's ``DiscriminatorSTFT``).

    ``complex=True`` feeds real and imaginary parts (EnCodec); ``False`` the log magnitude.
    """

    def __init__(self, n_fft: int, hop_length: int, filters: int = 32, complex: bool = True,
                 dilations: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.complex = n_fft, hop_length, complex
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        cin = 2 if complex else 1
        convs = [weight_norm(nn.Conv2d(cin, filters, (3, 9), padding=(1, 4)))]
        for d in dilations:
            convs.append(weight_norm(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))))
        convs.append(weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, sig: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(sig[:, 0].float(), self.n_fft, self.hop_length, window=self.window, return_complex=True)
        if self.complex:
            x = torch.stack([spec.real, spec.imag], dim=1)
        else:
            x = spec.abs().clamp(min=1e-5).log()[:, None]
        x = x.transpose(2, 3)  # [B, C, frames, freq]
        feats = []
        for conv in self.convs:
            x = self.act(conv(x))
            feats.append(x)
        x = self.out(x)
        feats.append(x)
        return x.flatten(1), feats


class _MultiSTFT(nn.Module):
    complex = True

    def __init__(self, n_ffts: Sequence[int], hop_lengths: Sequence[int] | None, filters: int) -> None:
        super().__init__()
        hops = hop_lengths or [n // 4 for n in n_ffts]
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(n, h, filters, self.complex) for n, h in zip(n_ffts, hops)
        )

    def forward(self, sig: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(sig)
            scores.append(s)
            feats.append(f)
        return scores, feats


class MultiScaleSTFTDiscriminator(_MultiSTFT):
    """EnCodec's MS-STFT discriminator: complex STFTs with n_fft 2048/1024/512/256/128.

    Example
    -------
    >>> d = MultiScaleSTFTDiscriminator(n_ffts=(256, 128), filters=4)
    >>> scores, feats = d(torch.randn(2, 1, 4000))
    >>> len(scores), len(feats[0])
    (2, 6)
    """

    def __init__(self, n_ffts: Sequence[int] = (2048, 1024, 512, 256, 128),
                 hop_lengths: Sequence[int] | None = None, filters: int = 32) -> None:
        super().__init__(n_ffts, hop_lengths, filters)


class MultiResolutionSTFTDiscriminator(_MultiSTFT):
    """Magnitude-STFT discriminators at (1024, 120), (2048, 240), (512, 50) (UnivNet / SIREN)."""

    complex = False

    def __init__(self, n_ffts: Sequence[int] = (1024, 2048, 512),
                 hop_lengths: Sequence[int] | None = (120, 240, 50), filters: int = 32) -> None:
        super().__init__(n_ffts, hop_lengths, filters)


class CombinedDiscriminator(nn.Module):
    """Run several discriminators and concatenate their score and feature lists.

    Example
    -------
    >>> d = CombinedDiscriminator([MultiScaleSTFTDiscriminator((128,), filters=4),
    ...                            MultiResolutionSTFTDiscriminator((128,), (32,), filters=4)])
    >>> scores, feats = d(torch.randn(1, 1, 2000))
    >>> len(scores), len(feats)
    (2, 2)
    """

    def __init__(self, discriminators: Sequence[nn.Module]) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, sig: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, feats = [], []
        for d in self.discriminators:
            s, f = d(sig)
            scores += list(s)
            feats += list(f)
        return scores, feats
