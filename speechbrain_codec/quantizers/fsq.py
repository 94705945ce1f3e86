"""Finite scalar quantization (Mentzer et al., 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Each of ``len(levels)`` channels is bounded with ``tanh`` and rounded to ``levels[i]`` values;
the token is the mixed-radix number of the per-channel digits, so a codebook holds
``prod(levels)`` codes. With ``num_codebooks > 1`` the projected latent is split into groups,
one token per group. Conventions (bounding, offsets, index order) follow
vector-quantize-pytorch's ``FSQ`` so that tokens are interchangeable (tested).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Quantizer, QuantizerOutput

__all__ = ["FSQ", "ResidualFSQ"]


def _round_ste(z: torch.Tensor) -> torch.Tensor:
    return z + (z.round() - z).detach()


class FSQ(Quantizer):
    """Finite scalar quantizer with optional input/output projections.

    Parameters
    ----------
    levels : list of int
        Quantization levels per channel, e.g. ``[8, 5, 5, 5]`` (1000 codes, 9.97 bits).
    dim : int, optional
        Latent size C; a linear projection maps C to ``len(levels) * num_codebooks`` and back
        when they differ. Defaults to ``len(levels) * num_codebooks``.
    num_codebooks : int
        Tokens per frame K.

    Example
    -------
    >>> q = FSQ([8, 5, 5, 5], dim=16)
    >>> out = q(torch.randn(2, 7, 16))
    >>> out.toks.shape, round(q.bits_per_frame, 3)
    (torch.Size([2, 7, 1]), 9.966)
    >>> torch.allclose(q.toks_to_qlats(out.toks), out.qlats)
    True
    """

    def __init__(self, levels: list[int], dim: int | None = None, num_codebooks: int = 1) -> None:
        super().__init__()
        if not levels or any(int(l) < 2 for l in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels = [int(l) for l in levels]
        self.codebook_dim = len(self.levels)
        inner = self.codebook_dim * num_codebooks
        self.dim = dim if dim is not None else inner
        self.codebook_sizes = [math.prod(self.levels)] * num_codebooks
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.int64), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1], dtype=torch.int64), dim=0)
        self.register_buffer("_basis", basis, persistent=False)
        self.project_in = nn.Linear(self.dim, inner) if self.dim != inner else nn.Identity()
        self.project_out = nn.Linear(inner, self.dim) if self.dim != inner else nn.Identity()

    def bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """Squash ``z`` so that rounding yields ``levels[i]`` values per channel."""
        levels = self._levels.to(z.dtype)
        half_l = (levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Bound and round (straight-through), normalised to [-1, 1]."""
        half_width = (self._levels // 2).to(z.dtype)
        return _round_ste(self.bound(z)) / half_width

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [..., G, d]`` in [-1, 1] -> indices ``[..., G]``."""
        half_width = self._levels // 2
        digits = (codes * half_width + half_width).round().long()
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, toks: torch.Tensor) -> torch.Tensor:
        """indices ``[..., G]`` -> codes ``[..., G, d]`` in [-1, 1]."""
        digits = (toks.long().unsqueeze(-1) // self._basis) % self._levels
        half_width = self._levels // 2
        return ((digits - half_width).float() / half_width.float())

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        """``lats [B, T, C] -> QuantizerOutput(qlats [B, T, C], toks [B, T, K], {})``."""
        self.check_lats(lats)
        z = self.project_in(lats)
        z = z.unflatten(-1, (self.num_codebooks, self.codebook_dim))
        codes = self.quantize(z)
        toks = self.codes_to_indices(codes)
        qlats = self.project_out(codes.flatten(-2))
        return QuantizerOutput(qlats, toks, {})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        """``toks [B, T, K] -> qlats [B, T, C]``."""
        self.check_toks(toks)
        codes = self.indices_to_codes(toks).to(self._dtype())
        return self.project_out(codes.flatten(-2))

    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.float32


class ResidualFSQ(Quantizer):
    """Residual FSQ: stage i quantizes what stages 0..i-1 left, ``r_{i+1} = r_i - s_i q_i``;
    qlats = ``project_out(sum_i s_i q_i)``, tokens ``[B, T, num_stages]``.

    Two arrangements, named by ``arrangement``:

    * ``"rescaled"`` (the default, unchanged; vector-quantize-pytorch's ``ResidualFSQ``
      arrangement with scales ``scale_decay ** i``): stage i quantizes the *rescaled* residual
      ``r_i / s_i`` (bound, round), so every stage uses the full FSQ grid on a finer scale, and
      contributes ``s_i q_i``. No auxiliary loss unless ``stage_weights`` is given.
    * ``"siren"`` (SIREN's ``ResidualFSQ``, its spec §2.3): stage i quantizes the current,
      unbounded residual ``r_i`` itself (the bound is applied inside the stage), adds
      ``s_i q_i`` to the running sum and sets ``r_{i+1} = r_i - s_i q_i`` ("quantise the
      residual, then scale"). Loss ``commit = sum_i w_i mean((sg(q_i) - z'_i)^2)`` with
      ``z'_i`` the bounded (pre-rounding) stage input and ``w_i = 1 / (i + 1)`` by default.
      SIREN P1: ``scale_decay=0.5, learnable_scales=True``; HEAD: ``scale_decay=1.0``.

    Input ``Linear(dim -> len(levels))`` and output ``Linear(len(levels) -> dim)`` projections
    exist when ``dim`` differs from ``len(levels)``. Gradients: the rounding is straight-through
    inside each stage, so the reconstruction gradient reaches both projections (and learnable
    scales). This deliberately fixes the SIREN reference, whose straight-through wraps the input
    of the projections (``z + sg(out_proj(sum) - z)``) so that the output projection never gets a
    gradient and the input projection gets none from the reconstruction (its spec, bug 7).
    The per-stage FSQ is :class:`FSQ` (vector-quantize-pytorch's grid, e.g. 8 levels at
    {-4..3}/4); SIREN's own stage grid (``index / (L - 1) * 2 - 1``) differs for even L, so
    SIREN checkpoints' tokens are not interchangeable with these.
    ``bits_per_frame`` is what the levels can carry: ``num_stages * log2 prod(levels)``.

    Parameters
    ----------
    levels : list of int
        FSQ levels of every stage.
    num_stages : int
        Residual stages (tokens per frame).
    dim : int, optional
        Latent size; projections to and from ``len(levels)`` when it differs.
    scale_decay : float
        Stage i uses the scale ``s_i = scale_decay ** i``.
    learnable_scales : bool
        Make the stage scales parameters.
    arrangement : str
        ``"rescaled"`` or ``"siren"`` (above).
    stage_weights : list of float, optional
        Weights ``w_i`` of the per-stage losses; default ``1 / (i + 1)`` for ``"siren"`` and
        no loss for ``"rescaled"``.

    Example
    -------
    >>> q = ResidualFSQ([8, 5, 5, 5], num_stages=2, dim=16)
    >>> out = q(torch.randn(2, 7, 16))
    >>> out.toks.shape, round(q.bits_per_frame, 2), sorted(out.losses)
    (torch.Size([2, 7, 2]), 19.93, [])
    >>> torch.allclose(q.toks_to_qlats(out.toks), out.qlats, atol=1e-6)
    True
    >>> s = ResidualFSQ([8, 5, 5, 5], num_stages=2, dim=16, arrangement="siren", learnable_scales=True)
    >>> out = s(torch.randn(2, 7, 16))
    >>> sorted(out.losses), s.stage_weights
    (['commit'], [1.0, 0.5])
    >>> torch.allclose(s.toks_to_qlats(out.toks), out.qlats, atol=1e-6)
    True
    """

    ARRANGEMENTS = ("rescaled", "siren")

    def __init__(
        self,
        levels: list[int],
        num_stages: int = 2,
        dim: int | None = None,
        scale_decay: float = 0.5,
        learnable_scales: bool = False,
        arrangement: str = "rescaled",
        stage_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        if arrangement not in self.ARRANGEMENTS:
            raise ValueError(f"arrangement must be one of {self.ARRANGEMENTS}, got {arrangement!r}")
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        if stage_weights is None and arrangement == "siren":
            stage_weights = [1.0 / (i + 1) for i in range(num_stages)]
        if stage_weights is not None:
            stage_weights = [float(w) for w in stage_weights]
            if len(stage_weights) != num_stages:
                raise ValueError(f"stage_weights needs {num_stages} values, got {len(stage_weights)}")
        self.arrangement, self.stage_weights = arrangement, stage_weights
        self.fsq = FSQ(levels)
        inner = len(self.fsq.levels)
        self.dim = dim if dim is not None else inner
        self.codebook_sizes = [self.fsq.codebook_sizes[0]] * num_stages
        scales = torch.tensor([scale_decay**i for i in range(num_stages)])
        if learnable_scales:
            self.scales = nn.Parameter(scales)
        else:
            self.register_buffer("scales", scales)
        self.project_in = nn.Linear(self.dim, inner) if self.dim != inner else nn.Identity()
        self.project_out = nn.Linear(inner, self.dim) if self.dim != inner else nn.Identity()

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        residual = self.project_in(lats)
        half_width = (self.fsq._levels // 2).to(residual.dtype)
        total, toks, loss = torch.zeros_like(residual), [], residual.new_zeros(())
        for i in range(self.num_codebooks):
            stage_in = residual / self.scales[i] if self.arrangement == "rescaled" else residual
            bounded = self.fsq.bound(stage_in)
            codes = _round_ste(bounded) / half_width  # q_i (= FSQ.quantize), in [-1, 1]
            bounded = bounded / half_width  # z'_i on the same scale
            toks.append(self.fsq.codes_to_indices(codes.detach()))
            if self.stage_weights is not None:
                loss = loss + self.stage_weights[i] * torch.mean((codes.detach() - bounded) ** 2)
            step = codes * self.scales[i]
            total = total + step
            residual = residual - step.detach()
        losses = {} if self.stage_weights is None else {"commit": loss}
        return QuantizerOutput(self.project_out(total), torch.stack(toks, dim=-1), losses)

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        codes = self.fsq.indices_to_codes(toks)  # [B, T, K, d]
        total = (codes * self.scales.to(codes.dtype)[:, None]).sum(-2)
        return self.project_out(total.to(self.scales.dtype))
