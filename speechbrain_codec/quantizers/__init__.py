"""Quantizers: ``lats [B, T, C] -> QuantizerOutput(qlats, toks [B, T, K], losses)``.

| class | method | tokens per frame | bits per frame |
|---|---|---|---|
| ``FSQ`` | finite scalar quantization | ``num_codebooks`` | ``K log2 prod(levels)`` |
| ``ResidualFSQ`` | residual FSQ: ``arrangement="rescaled"`` (default; stage i quantises r_i / s_i, as vector-quantize-pytorch) or ``"siren"`` (SIREN: quantise r_i, then scale; stage losses / (i+1)) | ``num_stages`` | ``stages log2 prod(levels)`` |
| ``EMAVectorQuantizer`` | EMA VQ, k-means/random init, dead-code restart with fresh statistics (Jukebox, LM-loss codec); synchronised under torch.distributed | 1 | ``log2 K`` |
| ``ResidualVQ`` | residual EMA VQ | ``num_stages`` | ``stages log2 K`` |
| ``KMeansQuantizer`` | nearest unit of a fixed k-means codebook | 1 | ``log2 K`` |
| ``BinarySphericalQuantizer`` | BSQ (FocalCodec) | 1 | ``log2 codebook_size`` |
| ``VQVAE`` | one-level Jukebox VQ-VAE (conv encoder, ``EMAVectorQuantizer``, conv decoder; the LM-loss codec's HuBERT / F0 quantizers); ``encode`` / ``quantize`` / ``decode``, not a ``Quantizer`` itself | 1 | ``log2 K`` |
| ``DPDPQuantizer`` | duration-penalised DP over k-means units (DP-SLM; the reference's first-index ties); dedup gives a variable rate | 1 | ``log2 K`` per frame before dedup |
"""

from .base import Quantizer, QuantizerOutput, codebook_stats
from .bsq import BinarySphericalQuantizer
from .dpdp import DPDPQuantizer, dedup, dpdp
from .fsq import FSQ, ResidualFSQ
from .vq import EMAVectorQuantizer, KMeansQuantizer, ResidualVQ
from .vqvae import VQVAE

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
    "VQVAE",
    "dpdp",
    "dedup",
]
