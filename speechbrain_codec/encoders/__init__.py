"""Encoders: ``sig [B, T_wav], lens [B] -> feats [B, T, C]``."""

from .base import Encoder
from .mel import LogMelFeatures, MelEncoder
from .wavlm import FocalWavLM

__all__ = ["Encoder", "MelEncoder", "LogMelFeatures", "FocalWavLM"]
