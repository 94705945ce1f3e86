"""Encoders: ``sig [B, T_wav], lens [B] -> feats [B, T, C]``."""

from .base import Encoder
from .mel import LogMelFeatures, MelEncoder

__all__ = ["Encoder", "MelEncoder", "LogMelFeatures"]
