"""The encoder interface."""

from __future__ import annotations

import abc

import torch
from torch import nn

__all__ = ["Encoder"]


class Encoder(nn.Module, abc.ABC):
    """Maps a waveform to a frame sequence.

    Subclasses set ``sample_rate`` (Hz of the input), ``hop_length`` (input samples per
    output frame) and ``out_channels`` (C).
    """

    sample_rate: int
    hop_length: int
    out_channels: int

    @property
    def frame_rate(self) -> float:
        """Output frames per second."""
        return self.sample_rate / self.hop_length

    @abc.abstractmethod
    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """``sig [B, T_wav]`` (``lens [B]`` relative lengths in (0, 1]) -> ``feats [B, T, C]``.

        ``T_wav`` is a multiple of ``hop_length`` and ``T = T_wav / hop_length``.
        """
