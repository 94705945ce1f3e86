"""The decoder interface."""

from __future__ import annotations

import abc

import torch
from torch import nn

__all__ = ["Decoder"]


class Decoder(nn.Module, abc.ABC):
    """Maps a frame sequence to a waveform.

    Subclasses set ``in_channels`` (C), ``hop_length`` (output samples per input frame) and
    ``sample_rate``.
    """

    in_channels: int
    hop_length: int
    sample_rate: int

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C] -> sig [B, T * hop_length]``."""
