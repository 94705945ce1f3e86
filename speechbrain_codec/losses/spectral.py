"""Spectral reconstruction losses.

``MelLoss`` is one log-mel L1 term with every choice that published recipes differ on exposed
(mel scale and filter normalisation, padding, centring, magnitude epsilon, log floor);
``MultiResolutionMelLoss`` averages several of them. The defaults are torchaudio's
``MelSpectrogram`` (HTK mels, no filter normalisation, centred reflect-padded STFT, ``|X|``,
``log(mel + 1e-5)``). The LM-loss codec's mel loss (lmloss.md §3.2, HiFi-GAN's ``mel_spectrogram``
with librosa Slaney filters) is, in HyperPyYAML::

    mel: !new:speechbrain_codec.losses.MelLoss
        sample_rate: 16000
        n_fft: 1024
        hop_length: 256
        n_mels: 80
        f_max: 8000
        mel_scale: slaney
        mel_norm: slaney
        center: False
        pad: 384          # (n_fft - hop) / 2, reflect
        mag_eps: 1.0e-9   # sqrt(re^2 + im^2 + 1e-9)
        log_mode: clamp   # log(max(mel, 1e-5))
        log_eps: 1.0e-5

(weight 45 in ``loss_weights``); it equals a NumPy/librosa computation to 1e-4
(``tests/unit/test_loss_mel.py``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
from torch import nn

__all__ = ["MelLoss", "MultiResolutionMelLoss", "MultiResolutionSTFTLoss"]


class MelLoss(nn.Module):
    """``mean |log_mel(sig_hat) - log_mel(sig)|`` for one STFT resolution.

    ``log_mel(x) = log(floor(M @ mag(STFT(pad(x)))))`` with

    * ``pad``: ``pad`` samples on each side, mode ``pad_mode`` (before the STFT; 0 = none),
      then, if ``center``, ``torch.stft``'s own centring (``n_fft // 2``, same mode);
    * ``mag = sqrt(re^2 + im^2 + mag_eps)`` (``mag_eps = 0``: ``|X|``);
    * ``M``: ``n_mels`` triangular filters on ``[f_min, f_max]`` (``f_max=None``: Nyquist),
      ``mel_scale`` ``"htk"`` or ``"slaney"``, ``mel_norm`` ``None`` or ``"slaney"`` (area
      normalisation; ``slaney`` + ``slaney`` = ``librosa.filters.mel``'s defaults);
    * ``floor``: ``log_mode="add"``: ``mel + log_eps``; ``"clamp"``: ``max(mel, log_eps)``.

    Window: periodic Hann of ``win_length`` (default ``n_fft``); hop default ``n_fft // 4``.
    Filterbank and window are buffers (they follow ``.to(device / dtype)``).

    Example
    -------
    >>> loss = MelLoss(16000, n_fft=1024, hop_length=256, n_mels=80, f_max=8000, mel_scale="slaney",
    ...                mel_norm="slaney", center=False, pad=384, mag_eps=1e-9, log_mode="clamp")
    >>> x = torch.randn(2, 16000)
    >>> loss.log_mel(x).shape  # (16000 + 2 * 384 - 1024) // 256 + 1 frames
    torch.Size([2, 80, 62])
    >>> float(loss(x, x))
    0.0
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "htk",
        mel_norm: str | None = None,
        center: bool = True,
        pad_mode: str = "reflect",
        pad: int = 0,
        mag_eps: float = 0.0,
        log_mode: str = "add",
        log_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if mel_scale not in ("htk", "slaney"):
            raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {mel_scale!r}")
        if mel_norm not in (None, "slaney"):
            raise ValueError(f"mel_norm must be None or 'slaney', got {mel_norm!r}")
        if log_mode not in ("add", "clamp"):
            raise ValueError(f"log_mode must be 'add' or 'clamp', got {log_mode!r}")
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        self.win_length = win_length or n_fft
        self.center, self.pad_mode, self.pad = center, pad_mode, pad
        self.mag_eps, self.log_mode, self.log_eps = mag_eps, log_mode, log_eps
        fb = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, float(f_min), float(f_max if f_max is not None else sample_rate / 2), n_mels,
            sample_rate, norm=mel_norm, mel_scale=mel_scale,
        )  # [freqs, mels]
        self.register_buffer("mel_fb", fb.T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def log_mel(self, sig: torch.Tensor) -> torch.Tensor:
        """``sig [B, T] -> [B, n_mels, frames]``."""
        if self.pad:
            sig = nn.functional.pad(sig[:, None], (self.pad, self.pad), mode=self.pad_mode)[:, 0]
        spec = torch.stft(sig, self.n_fft, self.hop_length, self.win_length, window=self.window,
                          center=self.center, pad_mode=self.pad_mode, return_complex=True)
        if self.mag_eps:
            mag = torch.sqrt(spec.real**2 + spec.imag**2 + self.mag_eps)
        else:
            mag = spec.abs()
        mel = self.mel_fb @ mag
        floored = mel + self.log_eps if self.log_mode == "add" else mel.clamp(min=self.log_eps)
        return torch.log(floored)

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        """``sig_hat, sig [B, T] -> scalar``."""
        return (self.log_mel(sig_hat) - self.log_mel(sig)).abs().mean()


class MultiResolutionMelLoss(nn.Module):
    """Mean of :class:`MelLoss` over several resolutions.

    ``L = 1/R sum_r mean |log(mel_r(sig_hat) + eps) - log(mel_r(sig) + eps)|``
    (as in HiFi-GAN's mel loss, extended to several FFT sizes as in DAC / Vocos). Resolution
    ``r`` has FFT size ``n_ffts[r]``, ``n_mels[r]`` bands, hop ``hop_lengths[r]`` (default
    ``n_fft // 4``), window ``win_lengths[r]`` (default ``n_fft``) and padding ``pads[r]`` (default
    0); the other options are :class:`MelLoss`'s, shared by all resolutions (``eps`` is its
    ``log_eps``).

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
        hop_lengths: Sequence[int] | None = None,
        win_lengths: Sequence[int] | None = None,
        pads: Sequence[int] | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "htk",
        mel_norm: str | None = None,
        center: bool = True,
        pad_mode: str = "reflect",
        mag_eps: float = 0.0,
        log_mode: str = "add",
    ) -> None:
        super().__init__()
        R = len(n_ffts)
        for name, value in (("n_mels", n_mels), ("hop_lengths", hop_lengths), ("win_lengths", win_lengths),
                            ("pads", pads)):
            if value is not None and len(value) != R:
                raise ValueError(f"n_ffts and {name} must have the same length")
        self.mels = nn.ModuleList(
            MelLoss(sample_rate, n, hop_lengths[r] if hop_lengths else None, win_lengths[r] if win_lengths else None,
                    n_mels[r], f_min, f_max, mel_scale, mel_norm, center, pad_mode, pads[r] if pads else 0,
                    mag_eps, log_mode, eps)
            for r, n in enumerate(n_ffts)
        )

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        """``sig_hat, sig [B, T] -> scalar``."""
        return torch.stack([mel(sig_hat, sig) for mel in self.mels]).mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 over several STFTs (Yamamoto et al., 2020).

    A thin wrapper over ``auraloss.freq.MultiResolutionSTFTLoss`` taking ``[B, T]`` signals (its
    windows made buffers).

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
        for stft in self.loss.stft_losses:  # auraloss keeps its windows as plain attributes:
            window = stft.window  # make them buffers, so .to(device / dtype) moves them
            del stft.window
            stft.register_buffer("window", window, persistent=False)

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        """``sig_hat, sig [B, T] -> scalar``."""
        return self.loss(sig_hat.unsqueeze(1), sig.unsqueeze(1))
