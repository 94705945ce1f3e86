"""Decoders: ``x [B, T, C] -> sig [B, T * hop_length]``."""

from .base import Decoder
from .hifigan import HiFiGANGenerator
from .vocos import ISTFTHead, VocosDecoder
from .wavenext import WaveNeXtDecoder, WaveNeXtHead

__all__ = ["Decoder", "HiFiGANGenerator", "VocosDecoder", "ISTFTHead", "WaveNeXtDecoder", "WaveNeXtHead"]
