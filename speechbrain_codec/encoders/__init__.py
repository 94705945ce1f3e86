"""Encoders: ``sig [B, T_wav], lens [B] -> feats [B, T, C]``."""

from .base import Encoder
from .f0 import YAAPTF0Encoder
from .mel import LogMelFeatures, MelEncoder
from .ssl import SSLEncoder
from .wavlm import FocalWavLM
from .whisper_frontend import WhisperLogMel

__all__ = ["Encoder", "MelEncoder", "LogMelFeatures", "FocalWavLM", "SSLEncoder", "WhisperLogMel", "YAAPTF0Encoder"]
