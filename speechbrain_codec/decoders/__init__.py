"""Decoders: ``x [B, T, C] -> sig [B, T * hop_length]``."""

from .base import Decoder
from .vocos import ISTFTHead, VocosDecoder

__all__ = ["Decoder", "VocosDecoder", "ISTFTHead"]
