"""Quantizers: ``lats [B, T, C] -> QuantizerOutput(qlats, toks [B, T, K], losses)``."""

from .base import Quantizer, QuantizerOutput, codebook_stats
from .fsq import FSQ

__all__ = ["Quantizer", "QuantizerOutput", "codebook_stats", "FSQ"]
