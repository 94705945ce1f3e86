"""Spectral reconstruction losses."""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
from torch import nn

__all__ = ["MultiResolutionMelLoss", "MultiResolutionSTFTLoss"]


class MultiResolutionMelLoss(nn.Module):
    """Mean L1 distance between log-mel spectrograms at several resolutions.

    ``L = 1/R sum_r mean |log(mel_r(sig_hat) + eps) - log(mel_r(sig) + eps)|``
    (as in HiFi-GAN's mel loss, extended to several FFT sizes as in DAC / Vocos).

    Example
    -------
    >>> loss = MultiResolutionMelLoss(16000)
    >>> x = torch.randn(2, 16000)
    >>> float(loss(x, x))
    0.0
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_ffts: Sequence[int] = (512, 1024, 2048),
        n_mels: Sequence[int] = (40, 80, 128),
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(n_ffts) != len(n_mels):
            raise ValueError("n_ffts and n_mels must have the same length")
        self.eps = eps
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n, hop_length=n // 4, n_mels=m, power=1.0
            )
            for n, m in zip(n_ffts, n_mels)
        )

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        """``sig_hat, sig [B, T] -> scalar``."""
        total = sig_hat.new_zeros(())
        for mel in self.mels:
            a = torch.log(mel(sig_hat) + self.eps)
            b = torch.log(mel(sig) + self.eps)
            total = total + (a - b).abs().mean()
        return total / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 over several STFTs (Yamamoto et al., 2020).

    A thin wrapper over ``auraloss.freq.MultiResolutionSTFTLoss`` taking ``[B, T]`` signals.

    Example
    -------
    >>> loss = MultiResolutionSTFTLoss()
    >>> x = torch.randn(2, 8000)
    >>> float(loss(x, x)) < 1e-6
    True
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] = (128, 256, 512),
        win_lengths: Sequence[int] = (512, 1024, 2048),
    ) -> None:
        super().__init__()
        import auraloss

        self.loss = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=list(fft_sizes), hop_sizes=list(hop_sizes), win_lengths=list(win_lengths)
        )

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        """``sig_hat, sig [B, T] -> scalar``."""
        return self.loss(sig_hat.unsqueeze(1), sig.unsqueeze(1))
