"""SIREN's quantizers (siren.md §2.3): the residual FSQ of the semantic and prosody streams on
SIREN's own FSQ grid, and the product-quantised speaker code.

**SIREN FSQ stage** (:class:`SirenFSQ`): ``z' = tanh(z)`` (P1; ``bound="sigmoid"``:
``2 sigmoid(z) - 1``, HEAD), ``index_d = round((z'_d + 1) / 2 (L_d - 1))``,
``value_d = index_d / (L_d - 1) * 2 - 1`` (so ``L`` levels evenly spaced on ``[-1, 1]``, both ends
included, unlike vector-quantize-pytorch's grid of :class:`~speechbrain_codec.quantizers.FSQ`),
straight-through estimator, flat index ``sum_d index_d prod_{j<d} L_j``, stage loss
``mean((sg(value) - z')^2)``.

**Residual arrangement** (:class:`SirenResidualFSQ`): input ``Linear(dim -> len(levels))`` and
output ``Linear(len(levels) -> dim)`` when ``dim != len(levels)``; stage ``i`` quantises the
current unbounded residual ``r_i`` (the bound is inside the stage), adds ``s_i q_i`` to the
running sum and sets ``r_{i+1} = r_i - s_i q_i``; ``s_i`` learnable, initialised ``0.5 ** i``
(P1; ``scale_decay=1, learnable_scales=False``: HEAD). Loss
``commit = sum_i stage_loss_i / (i + 1)``. Bits per frame ``stages x log2 prod L``.
Deliberate difference from the reference (its bug, spec §7 item 7): the reference wraps the
*pre-projection* input in the straight-through estimator (``z + sg(out_proj(sum) - z)``), so its
output projection never learns and the reconstruction gradient skips its input projection; here
the straight-through estimator sits inside each stage and both projections learn.

**Speaker product quantiser** (:class:`ProductQuantizer`): the 256-d speaker vector split into
``num_groups`` = 8 groups of 32, each with ``codes_per_group`` = 256 codes (initialised
``U(-1/256, 1/256)``), nearest code by squared distance, loss
``sum_g [MSE(sg(q_g), x_g) + MSE(q_g, sg(x_g))]``, straight-through; 8 x 8 = 64 bits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Quantizer, QuantizerOutput

__all__ = ["SirenFSQ", "SirenResidualFSQ", "ProductQuantizer"]


class SirenFSQ(nn.Module):
    """One SIREN FSQ stage on ``len(levels)`` channels (module docstring); not a
    :class:`Quantizer` by itself (no projections): :class:`SirenResidualFSQ` uses it.

    Example
    -------
    >>> q = SirenFSQ([3, 4])
    >>> codes, value, loss = q(torch.tensor([[[-10.0, 10.0], [0.0, 0.1]]]))
    >>> codes.tolist(), [[round(v, 4) for v in row] for row in value[0].tolist()]
    ([[9, 7]], [[-1.0, 1.0], [0.0, 0.3333]])
    """

    def __init__(self, levels: list[int], bound: str = "tanh") -> None:
        super().__init__()
        if not levels or any(int(l) < 2 for l in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        if bound not in ("tanh", "sigmoid"):
            raise ValueError(f"bound must be tanh (P1) or sigmoid (HEAD), got {bound!r}")
        self.levels = [int(l) for l in levels]
        self.bound_kind = bound
        self.register_buffer("_levels", torch.tensor(self.levels, dtype=torch.int64), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1], dtype=torch.int64), dim=0)
        self.register_buffer("_basis", basis, persistent=False)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def bits(self) -> float:
        return math.log2(self.codebook_size)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z) if self.bound_kind == "tanh" else 2 * torch.sigmoid(z) - 1

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z [..., d] -> (toks [...], value [..., d] (straight-through), stage loss)``."""
        zb = self.bound(z)
        top = (self._levels - 1).to(zb.dtype)
        digits = torch.round((zb + 1) / 2 * top)
        value = digits / top * 2 - 1
        toks = (digits.detach().long() * self._basis).sum(-1)
        loss = torch.mean((value.detach() - zb) ** 2)
        return toks, zb + (value - zb).detach(), loss

    def indices_to_values(self, toks: torch.Tensor) -> torch.Tensor:
        """``toks [...] -> value [..., d]``."""
        digits = (toks.long().unsqueeze(-1) // self._basis) % self._levels
        return digits.float() / (self._levels - 1).float() * 2 - 1


class SirenResidualFSQ(Quantizer):
    """SIREN's residual FSQ (module docstring): ``lats [B, T, dim] -> toks [B, T, num_stages]``.

    Parameters
    ----------
    levels : list of int
        Levels of every stage (P1 default.yaml ``[8, 5, 5, 5]``; improved ``[3] * 8``).
    num_stages : int
        Residual stages (tokens per frame).
    dim : int, optional
        Branch output size; projections to and from ``len(levels)`` when it differs.
    scale_decay : float
        ``s_i`` initialised ``scale_decay ** i`` (P1 0.5; HEAD 1.0).
    learnable_scales : bool
        P1 True; HEAD False.
    bound : str
        ``"tanh"`` (P1) or ``"sigmoid"`` (HEAD).

    Example
    -------
    >>> q = SirenResidualFSQ([8, 5, 5, 5], num_stages=1, dim=8)
    >>> out = q(torch.randn(2, 6, 8))
    >>> out.toks.shape, round(q.bits_per_frame, 3), sorted(out.losses)
    (torch.Size([2, 6, 1]), 9.966, ['commit'])
    >>> torch.allclose(q.toks_to_qlats(out.toks), out.qlats, atol=1e-6)
    True
    """

    def __init__(self, levels: list[int], num_stages: int = 1, dim: int | None = None, scale_decay: float = 0.5,
                 learnable_scales: bool = True, bound: str = "tanh") -> None:
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        self.fsq = SirenFSQ(levels, bound)
        inner = len(self.fsq.levels)
        self.levels = self.fsq.levels
        self.dim = dim if dim is not None else inner
        self.codebook_sizes = [self.fsq.codebook_size] * num_stages
        scales = torch.tensor([float(scale_decay) ** i for i in range(num_stages)])
        if learnable_scales:
            self.scales = nn.Parameter(scales)
        else:
            self.register_buffer("scales", scales)
        self.project_in = nn.Linear(self.dim, inner) if self.dim != inner else nn.Identity()
        self.project_out = nn.Linear(inner, self.dim) if self.dim != inner else nn.Identity()

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        residual = self.project_in(lats)
        total = torch.zeros_like(residual)
        toks, loss = [], residual.new_zeros(())
        for i in range(self.num_codebooks):
            t, value, stage_loss = self.fsq(residual)
            toks.append(t)
            loss = loss + stage_loss / (i + 1)
            step = self.scales[i] * value
            total = total + step
            residual = residual - step.detach()
        return QuantizerOutput(self.project_out(total), torch.stack(toks, dim=-1), {"commit": loss})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        values = self.fsq.indices_to_values(toks)  # [B, T, K, d]
        total = (values * self.scales.to(values.dtype)[:, None]).sum(-2)
        return self.project_out(total.to(self.scales.dtype))


class ProductQuantizer(Quantizer):
    """SIREN's speaker product quantiser (module docstring): ``[B, T, dim] -> toks [B, T, G]``.

    Example
    -------
    >>> pq = ProductQuantizer(dim=256, num_groups=8, codes_per_group=256)
    >>> out = pq(torch.randn(3, 1, 256))
    >>> out.toks.shape, pq.bits_per_frame, sorted(out.losses)
    (torch.Size([3, 1, 8]), 64.0, ['commit'])
    >>> torch.allclose(pq.toks_to_qlats(out.toks), out.qlats, atol=1e-6)
    True
    """

    def __init__(self, dim: int = 256, num_groups: int = 8, codes_per_group: int = 256) -> None:
        super().__init__()
        if dim % num_groups:
            raise ValueError(f"dim {dim} is not a multiple of num_groups {num_groups}")
        self.dim, self.num_groups, self.group_dim = dim, num_groups, dim // num_groups
        self.codebook_sizes = [int(codes_per_group)] * num_groups
        self.codebooks = nn.Parameter(
            torch.empty(num_groups, codes_per_group, self.group_dim).uniform_(-1 / codes_per_group, 1 / codes_per_group))

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        x = lats.unflatten(-1, (self.num_groups, self.group_dim))  # [B, T, G, d]
        cb = self.codebooks.to(x.dtype)
        # squared distance of every group vector to every code of its group: [B, T, G, N]
        dist = (x.pow(2).sum(-1, keepdim=True) - 2 * torch.einsum("btgd,gnd->btgn", x, cb)
                + cb.pow(2).sum(-1)[None, None])
        toks = dist.argmin(-1)
        q = self._lookup(toks).to(x.dtype)
        loss = x.new_zeros(())
        for g in range(self.num_groups):
            xg, qg = x[..., g, :], q[..., g, :]
            loss = loss + torch.mean((qg.detach() - xg) ** 2) + torch.mean((qg - xg.detach()) ** 2)
        qlats = (x + (q - x).detach()).flatten(-2)
        return QuantizerOutput(qlats, toks, {"commit": loss})

    def _lookup(self, toks: torch.Tensor) -> torch.Tensor:
        groups = torch.arange(self.num_groups, device=toks.device)
        return self.codebooks[groups, toks.long()]  # [B, T, G, d]

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        return self._lookup(toks).flatten(-2)
