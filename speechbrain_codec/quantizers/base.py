"""The quantizer interface and codebook statistics."""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["Quantizer", "QuantizerOutput", "codebook_stats"]


class QuantizerOutput(NamedTuple):
    """What every quantizer returns.

    Attributes
    ----------
    qlats : torch.Tensor
        ``[B, T, C]`` quantized latents (straight-through gradients where training).
    toks : torch.Tensor
        ``[B, T, K]`` integer tokens, ``0 <= toks[..., k] < codebook_sizes[k]``.
    losses : dict
        Auxiliary losses the method defines (e.g. ``commit``); empty when none.
    """

    qlats: torch.Tensor
    toks: torch.Tensor
    losses: dict[str, torch.Tensor]


class Quantizer(nn.Module, abc.ABC):
    """Base class. Subclasses set ``dim`` (C) and ``codebook_sizes`` (one entry per codebook)."""

    dim: int
    codebook_sizes: list[int]

    @property
    def num_codebooks(self) -> int:
        """K, the number of token streams per frame."""
        return len(self.codebook_sizes)

    @property
    def bits_per_frame(self) -> float:
        """``sum_k log2(codebook_sizes[k])``: the information per frame at a uniform prior."""
        return float(sum(math.log2(n) for n in self.codebook_sizes))

    @abc.abstractmethod
    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        """Quantize ``lats [B, T, C]``."""

    @abc.abstractmethod
    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        """``toks [B, T, K] -> qlats [B, T, C]``; equals ``forward(lats).qlats`` for those tokens."""

    def check_lats(self, lats: torch.Tensor) -> None:
        """Raise a clear error for wrong shapes, empty or non-finite input."""
        if lats.dim() != 3 or lats.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} expects lats [B, T, {self.dim}], got {list(lats.shape)}"
            )
        if lats.numel() == 0:
            raise ValueError(f"{type(self).__name__} got an empty input {list(lats.shape)}")
        if not torch.isfinite(lats).all():
            raise ValueError(f"{type(self).__name__} got NaN or infinite latents")

    def check_toks(self, toks: torch.Tensor) -> None:
        """Raise a clear error for tokens of the wrong shape or range."""
        if toks.dim() != 3 or toks.shape[-1] != self.num_codebooks:
            raise ValueError(
                f"{type(self).__name__} expects toks [B, T, {self.num_codebooks}], "
                f"got {list(toks.shape)}"
            )
        sizes = torch.tensor(self.codebook_sizes, device=toks.device)
        if toks.numel() and ((toks < 0).any() or (toks >= sizes).any()):
            raise ValueError(f"tokens out of range for codebook sizes {self.codebook_sizes}")


def codebook_stats(toks: torch.Tensor, codebook_sizes: list[int]) -> dict[str, list[float]]:
    """Usage (fraction of codes used) and perplexity per codebook.

    Example
    -------
    >>> s = codebook_stats(torch.tensor([[[0], [1], [2], [3]]]), [8])
    >>> s["usage"], s["perplexity"]
    ([0.5], [4.0])
    """
    usage, ppl = [], []
    flat = toks.reshape(-1, toks.shape[-1])
    for k, n in enumerate(codebook_sizes):
        counts = torch.bincount(flat[:, k].long(), minlength=n).double()
        p = counts / counts.sum().clamp(min=1)
        nz = p[p > 0]
        usage.append(float((counts > 0).double().mean()))
        ppl.append(float(torch.exp(-(nz * nz.log()).sum())))
    return {"usage": usage, "perplexity": ppl}
