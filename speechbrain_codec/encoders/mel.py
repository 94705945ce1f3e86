"""A log-mel front end followed by a ConvNeXt stack and strided downsampling."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from ..nn import ConvNeXtStack
from .base import Encoder

__all__ = ["MelEncoder", "LogMel", "LogMelFeatures"]


class LogMel(nn.Module):
    """Log-mel spectrogram with exactly ``T_wav / hop_length`` frames ("same" padding).

    Example
    -------
    >>> LogMel(16000, 80, 1024, 320)(torch.randn(2, 3200)).shape
    torch.Size([2, 80, 10])
    """

    #: signal processing: stays fp32 in a bf16 codec (``Codec.optimize_for_inference``)
    fp32_inference = True

    def __init__(self, sample_rate: int, n_mels: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=hop_length,
            n_mels=n_mels,
            center=False,
            power=1.0,
        )

    def forward(self, sig: torch.Tensor) -> torch.Tensor:
        """``sig [B, T_wav] -> [B, n_mels, T_wav // hop_length]`` (computed in fp32, returned in
        ``sig``'s dtype)."""
        extra = self.n_fft - self.hop_length
        x = nn.functional.pad(sig.float(), (extra // 2, extra - extra // 2), mode="reflect")
        return torch.log(self.mel(x).clamp(min=1e-5)).to(sig.dtype)


class MelEncoder(Encoder):
    """Log-mel -> ConvNeXt stack -> strided conv downsampling -> linear projection.

    Parameters
    ----------
    sample_rate : int
        Input sample rate.
    out_channels : int
        Output feature size C.
    n_mels, n_fft, mel_hop : int
        Mel front end; ``mel_hop`` samples per mel frame.
    dim, intermediate_dim, num_layers : int
        ConvNeXt stack size.
    downsample : int
        Extra temporal downsampling after the stack (1 = none); the frame rate is
        ``sample_rate / (mel_hop * downsample)``.

    Example
    -------
    >>> enc = MelEncoder(16000, 4, dim=32, intermediate_dim=64, num_layers=1, downsample=2)
    >>> enc(torch.randn(2, 6400)).shape, enc.frame_rate
    (torch.Size([2, 10, 4]), 25.0)
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        out_channels: int = 256,
        n_mels: int = 80,
        n_fft: int = 1024,
        mel_hop: int = 320,
        dim: int = 256,
        intermediate_dim: int = 768,
        num_layers: int = 4,
        downsample: int = 1,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.hop_length = mel_hop * downsample
        self.out_channels = out_channels
        self.logmel = LogMel(sample_rate, n_mels, n_fft, mel_hop)
        self.backbone = ConvNeXtStack(n_mels, dim, intermediate_dim, num_layers)
        self.down = (
            nn.Conv1d(dim, dim, 2 * downsample, stride=downsample, padding=downsample // 2)
            if downsample > 1
            else nn.Identity()
        )
        self.proj = nn.Linear(dim, out_channels)

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """``sig [B, T_wav] -> feats [B, T_wav // hop_length, out_channels]``."""
        n_frames = sig.shape[-1] // self.hop_length
        x = self.backbone(self.logmel(sig)).transpose(1, 2)
        x = self.down(x)[..., :n_frames].transpose(1, 2)
        return self.proj(x)


class LogMelFeatures(Encoder):
    """Parameter-free log-mel features ``[B, T, n_mels]`` (for fixed-codebook quantizers such as
    k-means units or DPDP, whose input must not change during training).

    Example
    -------
    >>> enc = LogMelFeatures(16000, n_mels=40)
    >>> enc(torch.randn(1, 3200)).shape, enc.out_channels
    (torch.Size([1, 10, 40]), 40)
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, n_fft: int = 1024, hop_length: int = 320) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.out_channels = sample_rate, hop_length, n_mels
        self.logmel = LogMel(sample_rate, n_mels, n_fft, hop_length)

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        return self.logmel(sig).transpose(1, 2)
