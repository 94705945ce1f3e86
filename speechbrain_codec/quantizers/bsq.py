"""Binary spherical quantization as FocalCodec defines it (Zhao et al., 2024; Della Libera et al., 2025).

With ``L = log2(codebook_size)`` latent dimensions (8192 codes -> 13, 2048 -> 11), each
dimension is binarised to ``+v`` if the latent is strictly positive and ``-v`` otherwise,
``v = 1 / sqrt(L)``, so every code lies on the unit sphere. The token is the bits read with
latent dimension 0 as the most significant bit. FocalCodec's compressor L2-normalises the
latents before (``normalize=True`` does it here for other encoders; the signs, hence the
tokens, do not change). Verified against ``shared/golden/focalcodec`` (tokens and codes).
"""

from __future__ import annotations

import math

import torch

from .base import Quantizer, QuantizerOutput

__all__ = ["BinarySphericalQuantizer"]


class BinarySphericalQuantizer(Quantizer):
    """BSQ with ``codebook_size = 2^L`` codes on ``L``-dimensional latents.

    Parameters
    ----------
    codebook_size : int
        A power of two.
    normalize : bool
        L2-normalise the input latents first (the straight-through gradient then includes the
        normalisation).

    Example
    -------
    >>> q = BinarySphericalQuantizer(8)
    >>> out = q(torch.tensor([[[0.5, -0.1, 0.2]]]))
    >>> out.toks.item(), (out.qlats * 3 ** 0.5).round().tolist()
    (5, [[[1.0, -1.0, 1.0]]])
    """

    def __init__(self, codebook_size: int = 8192, normalize: bool = False) -> None:
        super().__init__()
        bits = int(round(math.log2(codebook_size)))
        if 2**bits != codebook_size:
            raise ValueError(f"BSQ codebook_size must be a power of two, got {codebook_size}")
        self.dim, self.codebook_sizes, self.normalize = bits, [codebook_size], normalize
        self.register_buffer("_weights", 2 ** torch.arange(bits - 1, -1, -1), persistent=False)
        self.value = 1.0 / math.sqrt(bits)

    def lats_to_codes(self, lats: torch.Tensor) -> torch.Tensor:
        """``[..., L] -> [..., L]`` in {+v, -v}."""
        return torch.where(lats > 0, self.value, -self.value).to(lats.dtype)

    def codes_to_toks(self, codes: torch.Tensor) -> torch.Tensor:
        return ((codes > 0).long() * self._weights).sum(-1)

    def toks_to_codes(self, toks: torch.Tensor) -> torch.Tensor:
        bits = (toks.unsqueeze(-1) // self._weights) % 2
        return (bits * 2 - 1).float() * self.value

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        if self.normalize:
            lats = torch.nn.functional.normalize(lats, dim=-1)
        codes = self.lats_to_codes(lats)
        qlats = lats + (codes - lats).detach()
        return QuantizerOutput(qlats, self.codes_to_toks(codes).unsqueeze(-1), {})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        return self.toks_to_codes(toks[..., 0])
