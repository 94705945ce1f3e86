"""Quantizers: ``lats [B, T, C] -> QuantizerOutput(qlats, toks [B, T, K], losses)``.

| class | method | tokens per frame | bits per frame |
|---|---|---|---|
| ``FSQ`` | finite scalar quantization | ``num_codebooks`` | ``K log2 prod(levels)`` |
| ``ResidualFSQ`` | residual FSQ (SIREN) | ``num_stages`` | ``stages log2 prod(levels)`` |
| ``EMAVectorQuantizer`` | EMA VQ, k-means/random init, dead-code restart (Jukebox, LM-loss codec) | 1 | ``log2 K`` |
| ``ResidualVQ`` | residual EMA VQ | ``num_stages`` | ``stages log2 K`` |
| ``KMeansQuantizer`` | nearest unit of a fixed k-means codebook | 1 | ``log2 K`` |
| ``BinarySphericalQuantizer`` | BSQ (FocalCodec) | 1 | ``log2 codebook_size`` |
| ``DPDPQuantizer`` | duration-penalised DP over k-means units (DP-SLM); dedup gives a variable rate | 1 | ``log2 K`` per frame before dedup |
"""

from .base import Quantizer, QuantizerOutput, codebook_stats
from .bsq import BinarySphericalQuantizer
from .dpdp import DPDPQuantizer, dedup, dpdp
from .fsq import FSQ, ResidualFSQ
from .vq import EMAVectorQuantizer, KMeansQuantizer, ResidualVQ

__all__ = [
    "Quantizer",
    "QuantizerOutput",
    "codebook_stats",
    "FSQ",
    "ResidualFSQ",
    "EMAVectorQuantizer",
    "ResidualVQ",
    "KMeansQuantizer",
    "BinarySphericalQuantizer",
    "DPDPQuantizer",
    "dpdp",
    "dedup",
]
