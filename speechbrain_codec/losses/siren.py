"""SIREN P1's generator losses (``train_multispeaker.py`` at v0.1.0; siren.md §3)::

    L_G = 2.0 (SC + logmag)_MR-STFT + 45 L1(log-mel(y_hat), log-mel(y))
          + 0.25 (L_q,sem + L_q,pro + L_q,spk) + 1.0 sum_D mean((1 - D(y_hat))^2)  (after step 5000)
    L_D = sum_D [mean((1 - D(y))^2) + mean(D(y_hat)^2)]                        (from step 5000)

* :class:`SirenMRSTFTLoss`: resolutions (n_fft, hop, win) = (1024, 120, 600), (2048, 240, 1200),
  (512, 50, 240), Hann; ``SC = ||Y| - |Y_hat||_F / ||Y||_F`` over the whole batch,
  ``logmag = L1(log|Y|, log|Y_hat|)``, magnitudes clamped at 1e-7, each averaged over the
  resolutions; returns ``SC + logmag``.
* :class:`SirenMelLoss`: L1 of natural-log mel spectrograms (torchaudio ``MelSpectrogram``
  defaults: n_fft 1024, hop 256, 80 mels, 0-8 kHz, power 2, centred), clamped at 1e-5 (§1.4,
  first row).
* The quantizer losses are the codec's ``commit`` (sum over the three quantizers), the GAN terms
  :class:`~speechbrain_codec.training.GANCodecBrain`'s ``adv`` (LSGAN, summed over the
  sub-discriminators, as the reference) and ``fm`` (weight 0 in P1's multi-speaker trainer).

:data:`P1_LOSS_WEIGHTS` holds the weights (``stft`` 2, ``mel`` 45, ``commit`` 0.25, ``adv`` 1,
``fm`` 0, ``entropy`` 0.01: the bit-estimation LM's NLL, which trains only the LM, its inputs
being detached indices; the reference registers the LM with the optimiser without adding its loss).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
from torch import nn

__all__ = ["P1_LOSS_WEIGHTS", "SirenMelLoss", "SirenMRSTFTLoss"]

P1_LOSS_WEIGHTS = {"stft": 2.0, "mel": 45.0, "commit": 0.25, "adv": 1.0, "fm": 0.0, "entropy": 0.01}
RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


class SirenMRSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over resolutions (module docstring).

    Example
    -------
    >>> loss = SirenMRSTFTLoss()
    >>> x = torch.randn(2, 8000)
    >>> float(loss(x, x)), float(loss(torch.zeros_like(x), x)) > 1
    (0.0, True)
    """

    def __init__(self, resolutions: Sequence[Sequence[int]] = RESOLUTIONS, eps: float = 1e-7) -> None:
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.eps = eps
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def magnitude(self, sig: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop, win = self.resolutions[i]
        spec = torch.stft(sig, n_fft, hop, win, window=getattr(self, f"window{i}"), return_complex=True)
        return spec.abs().clamp(min=self.eps)

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        sc, logmag = 0.0, 0.0
        for i in range(len(self.resolutions)):
            y_hat, y = self.magnitude(sig_hat, i), self.magnitude(sig, i)
            sc = sc + torch.linalg.norm(y - y_hat) / torch.linalg.norm(y)
            logmag = logmag + (y.log() - y_hat.log()).abs().mean()
        n = len(self.resolutions)
        return sc / n + logmag / n


class SirenMelLoss(nn.Module):
    """``mean |log(clamp(mel(y_hat), 1e-5)) - log(clamp(mel(y), 1e-5))|`` (module docstring).

    Example
    -------
    >>> loss = SirenMelLoss()
    >>> x = torch.randn(2, 16000)
    >>> loss.log_mel(x).shape, float(loss(x, x))
    (torch.Size([2, 80, 63]), 0.0)
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 80,
                 power: float = 2.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length,
                                                        n_mels=n_mels, power=power)
        self.eps = eps

    def log_mel(self, sig: torch.Tensor) -> torch.Tensor:
        return self.mel(sig).clamp(min=self.eps).log()

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(sig_hat) - self.log_mel(sig)).abs().mean()
