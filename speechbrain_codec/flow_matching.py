"""Conditional flow matching: the CosyVoice 2 style flow decoder of Learnable-Speech.

Three layers, each usable alone (spec ``learnable_speech.md`` §2.2-§2.4, §5):

* :class:`ConditionalFlowMatching` - the OT-CFM objective and sampler around a *pluggable*
  estimator. The estimator is any module ``estimator(x [B, C_in, T], mask [B, 1, T], t [B])
  -> v [B, C, T]``; the CFM builds ``x`` as the channel concatenation ``[x_t, cond_1, cond_2, ...]``
  (2-D conditions ``[B, C_i]`` are broadcast over time), which is exactly CosyVoice's
  ``[x, mu, spks, cond]`` layout. Training: cosine time warp ``t' = 1 - cos(pi t / 2)``,
  immiscible noise (per-sample nearest of ``k`` draws, §2.3), contrastive flow matching
  (``lambda = 0.05``, §2.4), CFG dropout of all conditions together (p = 0.2). Inference: Euler
  on the cosine grid ``t_k = 1 - cos(pi k / (2 n))`` with classifier-free guidance
  ``v = (1 + w) v_cond - w v_uncond`` (w = 0.7, n = 10).
* :class:`ConditionalDecoder` - the Matcha/CosyVoice U-Net estimator (causal ResNet blocks with
  time injection + transformer blocks; published size: channels 256, 1 down, 12 mid, 1 up stage,
  4 transformer blocks each = 56 blocks, 8 heads x 64).
* :class:`FlowDecoder` - tokens + speaker vector (+ optional prompt latents) -> latents: token
  embedding, :class:`UpsampleTokenEncoder` (look-ahead layer, 6 blocks, x r upsampling, 4 blocks),
  speaker projection, and the CFM above.

Axis convention here is channels-first, as in the reference: latents ``[B, C, T]``, masks
``[B, 1, T]`` (1 = valid frame).

Example
-------
>>> est = ConditionalDecoder(in_channels=4 * 8, out_channels=8, channels=16, n_mid=1, n_blocks=1, heads=2, head_dim=8)
>>> cfm = ConditionalFlowMatching(est)
>>> x1 = torch.randn(2, 8, 12); mask = torch.ones(2, 1, 12)
>>> conds = [torch.randn(2, 8, 12), torch.randn(2, 8), torch.zeros(2, 8, 12)]
>>> cfm.compute_loss(x1, mask, conds).loss.dim()
0
>>> cfm.sample(conds, mask, n_steps=2).shape
torch.Size([2, 8, 12])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "cosine_time",
    "cosine_schedule",
    "immiscible_noise",
    "contrastive_permutation",
    "fixed_noise",
    "FlowLoss",
    "ConditionalFlowMatching",
    "SinusoidalTimeEmbedding",
    "ConditionalDecoder",
    "UpsampleTokenEncoder",
    "FlowDecoder",
    "lengths_to_mask",
    "prompt_condition",
]


# ---------------------------------------------------------------------------------------------
# Schedules, noise assignment, negatives
# ---------------------------------------------------------------------------------------------


def cosine_time(t: torch.Tensor) -> torch.Tensor:
    """The cosine time warp ``t' = 1 - cos(pi t / 2)`` (maps [0, 1] onto [0, 1])."""
    return 1.0 - torch.cos(t * 0.5 * math.pi)


def cosine_schedule(n_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Euler time grid ``t_k = 1 - cos(pi k / (2 n))``, ``k = 0..n`` (``n + 1`` points, 0 -> 1).

    >>> [round(float(v), 4) for v in cosine_schedule(2)]
    [0.0, 0.2929, 1.0]
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    return cosine_time(torch.linspace(0, 1, n_steps + 1, device=device))


def immiscible_noise(
    x1: torch.Tensor,
    k: int = 8,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample nearest of ``k`` Gaussian draws (Learnable-Speech's immiscible assignment, §2.3).

    For each sample ``i`` draw ``z_{i,1..k} ~ N(0, I)`` with the shape of ``x1[i]`` and keep the
    one with the smallest Euclidean distance to ``x1[i]`` (flattened over channels and time).
    As implemented in the original, padded frames count in the distance (``mask=None``); pass
    ``mask [B, 1, T]`` to measure on valid frames only. Distances are computed in float32 (the
    original uses float16, which can overflow for long utterances).

    Parameters
    ----------
    x1 : torch.Tensor
        Targets ``[B, ...]``.
    k : int
        Candidates per sample; ``k = 1`` is plain Gaussian noise.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    b = x1.shape[0]
    cand = _randn((b, k) + tuple(x1.shape[1:]), x1, generator)
    if k == 1:
        return cand[:, 0]
    diff = (cand - x1.unsqueeze(1)).float()
    if mask is not None:
        diff = diff * mask.unsqueeze(1).float()
    dist = diff.flatten(2).pow(2).sum(-1)  # [B, k]
    best = dist.argmin(dim=1)
    return cand[torch.arange(b, device=x1.device), best]


def contrastive_permutation(batch: int, device: torch.device | str | None = None,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Negative index for each sample: a random permutation whose fixed points ``i`` are moved to
    ``(i + 1) mod B`` (as in the original; two samples may share a negative). ``B = 1`` -> ``[0]``.
    """
    perm = torch.randperm(batch, generator=generator, device=generator.device if generator is not None else "cpu").to(device)
    idx = torch.arange(batch, device=device)
    if batch > 1:
        perm = torch.where(perm == idx, (idx + 1) % batch, perm)
    return perm


def fixed_noise(channels: int, length: int, seed: int = 0, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32, block: int = 1024) -> torch.Tensor:
    """The fixed inference noise of the reference (§5): ``N(0, I)`` of shape ``[1, C, length]``
    from seeded generators, so that a shorter request is a prefix of a longer one (drawn in
    blocks of ``block`` frames, block ``j`` from seed ``seed * 1_000_003 + j``)."""
    parts = []
    for j in range(-(-length // block)):
        g = torch.Generator().manual_seed(seed * 1_000_003 + j)
        parts.append(torch.randn(channels, block, generator=g))
    z = torch.cat(parts, dim=1)[:, :length] if parts else torch.zeros(channels, 0)
    return z.unsqueeze(0).to(device=device, dtype=dtype)


def _randn(shape: tuple, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Normal draws on ``like``'s device/dtype; a generator draws on its own device first."""
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=generator.device).to(like.device, like.dtype)


def _rand(shape: tuple, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device, like.dtype)


def lengths_to_mask(lens: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Integer lengths ``[B]`` -> float mask ``[B, 1, T]`` (1 on valid frames)."""
    max_len = int(lens.max()) if max_len is None else max_len
    ar = torch.arange(max_len, device=lens.device)
    return (ar.unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(1).float()


def prompt_condition(x1: torch.Tensor, lens: torch.Tensor, prob: float = 0.5, max_frac: float = 0.3,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Training prompt condition (§2.2): with probability ``prob`` per sample, a prefix of random
    length in ``[0, max_frac * T_i]`` of the target latents, zeros elsewhere; else all zeros."""
    cond = torch.zeros_like(x1)
    for i in range(x1.shape[0]):
        if float(torch.rand((), generator=generator)) < prob:
            n = int(torch.randint(0, int(max_frac * int(lens[i])) + 1, (), generator=generator))
            cond[i, :, :n] = x1[i, :, :n]
    return cond


# ---------------------------------------------------------------------------------------------
# The CFM objective and sampler
# ---------------------------------------------------------------------------------------------


@dataclass
class FlowLoss:
    """Output of :meth:`ConditionalFlowMatching.compute_loss`.

    ``loss = fm - contrastive_weight * contrastive`` (scalars); ``v`` and ``u`` ``[B, C, T]``.
    """

    loss: torch.Tensor
    fm: torch.Tensor
    contrastive: torch.Tensor
    v: torch.Tensor
    u: torch.Tensor


def _masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # sum m (a-b)^2 / (d * sum m): a frame-weighted mean over the whole batch (§2.4)
    return ((a - b).pow(2) * mask).sum() / (mask.sum().clamp_min(1) * a.shape[1])


class ConditionalFlowMatching(nn.Module):
    """OT-CFM training loss and Euler/CFG sampler around a pluggable estimator.

    Parameters
    ----------
    estimator : nn.Module
        ``estimator(x [B, C + sum C_i, T], mask [B, 1, T], t [B]) -> v [B, C, T]``.
    sigma_min : float
        ``1e-6`` (spec §2.2).
    training_cfg_rate : float
        Probability per sample of zeroing every condition during training (0.2).
    inference_cfg_rate : float
        Guidance weight ``w`` at inference (0.7); ``w = 0`` is the plain conditional estimate.
    immiscible_k : int
        Noise candidates per sample (8); ``1`` or ``use_immiscible=False`` disables it.
    contrastive_weight : float
        ``lambda`` of contrastive flow matching (0.05); 0 disables it.
    n_steps : int
        Default Euler steps (10).
    """

    def __init__(
        self,
        estimator: nn.Module,
        sigma_min: float = 1e-6,
        training_cfg_rate: float = 0.2,
        inference_cfg_rate: float = 0.7,
        use_immiscible: bool = True,
        immiscible_k: int = 8,
        use_contrastive: bool = True,
        contrastive_weight: float = 0.05,
        n_steps: int = 10,
    ) -> None:
        super().__init__()
        self.estimator = estimator
        self.sigma_min = sigma_min
        self.training_cfg_rate = training_cfg_rate
        self.inference_cfg_rate = inference_cfg_rate
        self.use_immiscible = use_immiscible
        self.immiscible_k = immiscible_k
        self.use_contrastive = use_contrastive
        self.contrastive_weight = contrastive_weight
        self.n_steps = n_steps

    @staticmethod
    def _stack(x: torch.Tensor, conds: Sequence[torch.Tensor | None]) -> torch.Tensor:
        parts = [x]
        for c in conds:
            if c is None:
                continue
            if c.dim() == 2:
                c = c.unsqueeze(-1).expand(-1, -1, x.shape[-1])
            parts.append(c.to(x.dtype))
        return torch.cat(parts, dim=1)

    def velocity(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor,
                 conds: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """The estimator's velocity at ``x [B, C, T]``, time ``t [B]`` (or a scalar)."""
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.estimator(self._stack(x, conds), mask, t)

    def compute_loss(
        self,
        x1: torch.Tensor,
        mask: torch.Tensor,
        conds: Sequence[torch.Tensor | None] = (),
        generator: torch.Generator | None = None,
    ) -> FlowLoss:
        """Contrastive OT-CFM loss on targets ``x1 [B, C, T]`` with valid-frame ``mask [B, 1, T]``.

        ``conds``: the conditions in estimator order (CosyVoice: ``mu [B, C, T]``, speaker
        ``[B, C]``, prompt ``[B, C, T]``); all of a sample's conditions are zeroed together with
        probability ``training_cfg_rate`` (only in training mode).
        """
        b = x1.shape[0]
        t = cosine_time(_rand((b,), x1, generator))
        if self.use_immiscible and self.immiscible_k > 1:
            z = immiscible_noise(x1, self.immiscible_k, generator=generator)
        else:
            z = immiscible_noise(x1, 1, generator=generator)
        tt = t.view(b, 1, 1)
        x_t = (1 - (1 - self.sigma_min) * tt) * z + tt * x1
        u = x1 - (1 - self.sigma_min) * z
        conds = list(conds)
        if self.training and self.training_cfg_rate > 0:
            keep = (_rand((b,), x1, generator) > self.training_cfg_rate).to(x1.dtype)
            conds = [None if c is None else c * keep.view((b,) + (1,) * (c.dim() - 1)) for c in conds]
        v = self.velocity(x_t, mask, t, conds)
        fm = _masked_mse(v, u, mask)
        if self.use_contrastive and self.contrastive_weight > 0 and b > 1:
            neg = contrastive_permutation(b, x1.device, generator)
            con = _masked_mse(v, u[neg], mask)
        else:
            con = v.new_zeros(())
        return FlowLoss(fm - self.contrastive_weight * con, fm, con, v, u)

    def guided_velocity(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor,
                        conds: Sequence[torch.Tensor | None], cfg_rate: float) -> torch.Tensor:
        """``(1 + w) v(x | c) - w v(x | 0)``; ``w = 0`` is the conditional estimate alone."""
        v = self.velocity(x, mask, t, conds)
        if cfg_rate == 0:
            return v
        null = [None if c is None else torch.zeros_like(c) for c in conds]
        v_u = self.velocity(x, mask, t, null)
        return (1 + cfg_rate) * v - cfg_rate * v_u

    @torch.no_grad()
    def sample(
        self,
        conds: Sequence[torch.Tensor | None],
        mask: torch.Tensor,
        n_steps: int | None = None,
        cfg_rate: float | None = None,
        noise: torch.Tensor | None = None,
        out_channels: int | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Euler integration on the cosine grid from ``noise`` (default: :func:`fixed_noise`).

        Returns ``x1 [B, C, T]`` (masked). With one step the result is ``x0 + v(x0, 0)``.
        """
        n_steps = self.n_steps if n_steps is None else n_steps
        cfg_rate = self.inference_cfg_rate if cfg_rate is None else cfg_rate
        b, _, length = mask.shape
        if noise is None:
            c = out_channels
            if c is None:
                c = next(x for x in conds if x is not None).shape[1]
            noise = fixed_noise(c, length, device=mask.device).expand(b, -1, -1) * temperature
        x = noise.clone()
        grid = cosine_schedule(n_steps, device=mask.device)
        for k in range(n_steps):
            t, dt = grid[k], grid[k + 1] - grid[k]
            x = x + dt * self.guided_velocity(x, mask, t.to(x.dtype), conds, cfg_rate)
        return x * mask


# ---------------------------------------------------------------------------------------------
# The U-Net estimator (Matcha / CosyVoice 2 CausalConditionalDecoder)
# ---------------------------------------------------------------------------------------------


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoid of ``scale * t`` with ``dim`` channels (Matcha's ``SinusoidalPosEmb``, scale 1000)."""

    def __init__(self, dim: int, scale: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        self.dim, self.scale = dim, scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freq = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
        arg = self.scale * t.float().unsqueeze(1) * freq.unsqueeze(0)
        return torch.cat([arg.sin(), arg.cos()], dim=-1).to(t.dtype)


class CausalConv1d(nn.Conv1d):
    """Conv1d with left padding ``kernel - 1`` (or symmetric padding when ``causal=False``)."""

    def __init__(self, cin: int, cout: int, kernel: int, causal: bool = True) -> None:
        super().__init__(cin, cout, kernel)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0] - 1
        x = F.pad(x, (k, 0) if self.causal else (k // 2, k - k // 2))
        return super().forward(x)


class _Block1D(nn.Module):
    def __init__(self, cin: int, cout: int, causal: bool) -> None:
        super().__init__()
        self.conv = CausalConv1d(cin, cout, 3, causal)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv(x * mask)
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return F.mish(h) * mask


class _ResnetBlock1D(nn.Module):
    def __init__(self, cin: int, cout: int, time_dim: int, causal: bool) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_dim, cout))
        self.block1 = _Block1D(cin, cout, causal)
        self.block2 = _Block1D(cout, cout, causal)
        self.res_conv = nn.Conv1d(cin, cout, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, mask) + self.mlp(temb).unsqueeze(-1)
        h = self.block2(h, mask)
        return h + self.res_conv(x * mask)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(o.transpose(1, 2).reshape(b, t, -1))


class _TransformerBlock(nn.Module):
    """Pre-norm self-attention + GELU feed-forward (diffusers ``BasicTransformerBlock`` layout)."""

    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, head_dim, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim * ff_mult), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(dim * ff_mult, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.ff(self.norm3(x))


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, time_dim: int, n_blocks: int, heads: int, head_dim: int,
                 causal: bool, tail_conv: bool) -> None:
        super().__init__()
        self.resnet = _ResnetBlock1D(cin, cout, time_dim, causal)
        self.blocks = nn.ModuleList([_TransformerBlock(cout, heads, head_dim) for _ in range(n_blocks)])
        self.tail = CausalConv1d(cout, cout, 3, causal) if tail_conv else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        x = self.resnet(x, mask, temb)
        key_mask = mask[:, 0].bool()
        h = x.transpose(1, 2)
        for blk in self.blocks:
            h = blk(h, key_mask)
        x = h.transpose(1, 2)
        if self.tail is not None:
            x = self.tail(x * mask)
        return x


class ConditionalDecoder(nn.Module):
    """U-Net estimator with transformer blocks (CosyVoice 2 ``CausalConditionalDecoder``, §2.2).

    ``forward(x [B, in_channels, T], mask [B, 1, T], t [B]) -> v [B, out_channels, T]``.
    Defaults are the published size: ``in_channels = 4 * 80`` (``[x_t, mu, spk, cond]``),
    channels 256, 1 down / 12 mid / 1 up stage of 4 transformer blocks (56 in total), 8 heads
    x 64, time embedding MLP to ``4 * channels`` = 1024, causal convolutions. Attention is full
    (with the padding mask), as in the reference's non-streaming training.
    """

    def __init__(self, in_channels: int = 320, out_channels: int = 80, channels: int = 256, n_mid: int = 12,
                 n_blocks: int = 4, heads: int = 8, head_dim: int = 64, causal: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        time_dim = 4 * channels
        self.time_emb = SinusoidalTimeEmbedding(in_channels + (in_channels % 2))
        self.time_mlp = nn.Sequential(nn.Linear(in_channels + (in_channels % 2), time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim))
        self.down = _Stage(in_channels, channels, time_dim, n_blocks, heads, head_dim, causal, tail_conv=True)
        self.mid = nn.ModuleList([_Stage(channels, channels, time_dim, n_blocks, heads, head_dim, causal, False)
                                  for _ in range(n_mid)])
        self.up = _Stage(2 * channels, channels, time_dim, n_blocks, heads, head_dim, causal, tail_conv=True)
        self.final_block = _Block1D(channels, channels, causal)
        self.final_proj = nn.Conv1d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"estimator expects {self.in_channels} input channels, got {x.shape[1]}")
        temb = self.time_mlp(self.time_emb(t.to(x.dtype)))
        skip = self.down(x, mask, temb)
        h = skip
        for stage in self.mid:
            h = stage(h, mask, temb)
        h = self.up(torch.cat([h, skip], dim=1), mask, temb)
        h = self.final_block(h, mask)
        return self.final_proj(h * mask) * mask


# ---------------------------------------------------------------------------------------------
# Token encoder with upsampling and the full flow decoder
# ---------------------------------------------------------------------------------------------


def _sinusoid_positions(length: int, dim: int, device, dtype) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe.to(dtype)


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ffn), nn.SiLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])
        return x + self.drop(self.ff(self.norm2(x)))


class _InputLayer(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.linear(x)) * math.sqrt(self.dim)
        x = x + _sinusoid_positions(x.shape[1], self.dim, x.device, x.dtype)
        return self.drop(x)


class UpsampleTokenEncoder(nn.Module):
    """Token embeddings ``[B, N, D]`` -> upsampled features ``[B, r N, D]`` (§2.2 encoder).

    Input layer (linear + LayerNorm + dropout + positions), pre-look-ahead layer (each position
    sees itself and ``lookahead`` future tokens), ``n_pre`` pre-norm self-attention blocks,
    nearest ``x upsample`` repeat + causal conv (kernel 5), a second input layer, ``n_post``
    blocks, final LayerNorm. Published: D 512, 8 heads, FFN 2048, 6 + 4 blocks, r = 2
    (variant A; 3 for variant B), look-ahead 3.
    """

    def __init__(self, dim: int = 512, heads: int = 8, ffn: int = 2048, n_pre: int = 6, n_post: int = 4,
                 upsample: int = 2, lookahead: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.upsample, self.lookahead = upsample, lookahead
        self.embed1 = _InputLayer(dim, dropout)
        self.la_conv1 = nn.Conv1d(dim, dim, lookahead + 1)
        self.la_conv2 = nn.Conv1d(dim, dim, 3)
        self.pre = nn.ModuleList([_EncoderLayer(dim, heads, ffn, dropout) for _ in range(n_pre)])
        self.up_conv = nn.Conv1d(dim, dim, 5)
        self.embed2 = _InputLayer(dim, dropout)
        self.post = nn.ModuleList([_EncoderLayer(dim, heads, ffn, dropout) for _ in range(n_post)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, N, D]``, ``lens [B]`` -> ``(h [B, r N, D], r * lens)``."""
        pad = ~lengths_to_mask(lens, x.shape[1])[:, 0].bool()
        x = self.embed1(x)
        # pre-look-ahead: right pad (zeros) then kernel lookahead+1, LeakyReLU, causal kernel 3, residual
        h = x.masked_fill(pad.unsqueeze(-1), 0).transpose(1, 2)
        h = F.leaky_relu(self.la_conv1(F.pad(h, (0, self.lookahead))))
        h = self.la_conv2(F.pad(h, (2, 0)))
        x = x + h.transpose(1, 2)
        for layer in self.pre:
            x = layer(x, pad)
        x = x.masked_fill(pad.unsqueeze(-1), 0).repeat_interleave(self.upsample, dim=1)
        x = self.up_conv(F.pad(x.transpose(1, 2), (4, 0))).transpose(1, 2)
        lens = lens * self.upsample
        pad = ~lengths_to_mask(lens, x.shape[1])[:, 0].bool()
        x = self.embed2(x)
        for layer in self.post:
            x = layer(x, pad)
        return self.norm(x), lens


class FlowDecoder(nn.Module):
    """Speech tokens + speaker vector (+ prompt latents) -> continuous latents (§2.2, §5).

    Parameters
    ----------
    vocab_size : int
        Token vocabulary (6561 for S3Tokenizer v2).
    latent_dim : int
        Target latent channels C (80 for variant A, 64 for variant B).
    upsample : int
        Latent frames per token (2 for variant A, 3 for variant B).
    spk_dim : int
        Speaker vector size (192); the vector is L2-normalised then projected to C.
    estimator : nn.Module, optional
        Defaults to the published :class:`ConditionalDecoder` with ``in_channels = 4 C``.

    Example
    -------
    >>> enc = UpsampleTokenEncoder(dim=16, heads=2, ffn=32, n_pre=1, n_post=1, upsample=2)
    >>> est = ConditionalDecoder(32, 8, channels=16, n_mid=1, n_blocks=1, heads=2, head_dim=8)
    >>> fd = FlowDecoder(vocab_size=50, latent_dim=8, upsample=2, spk_dim=4, embed_dim=16, encoder=enc, estimator=est)
    >>> toks = torch.randint(0, 50, (2, 5)); lens = torch.tensor([5, 3])
    >>> out = fd.compute_loss(toks, lens, torch.randn(2, 8, 10), torch.tensor([10, 6]), torch.randn(2, 4))
    >>> fd.inference(toks[:1], lens[:1], torch.randn(1, 4), n_steps=2).shape
    torch.Size([1, 8, 10])
    """

    def __init__(self, vocab_size: int = 6561, latent_dim: int = 80, upsample: int = 2, spk_dim: int = 192,
                 embed_dim: int = 512, encoder: nn.Module | None = None, estimator: nn.Module | None = None,
                 cfm_kwargs: dict | None = None, prompt_prob: float = 0.5, prompt_max_frac: float = 0.3) -> None:
        super().__init__()
        self.vocab_size, self.latent_dim, self.upsample = vocab_size, latent_dim, upsample
        self.input_embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = encoder if encoder is not None else UpsampleTokenEncoder(embed_dim, upsample=upsample)
        if getattr(self.encoder, "upsample", upsample) != upsample:
            raise ValueError(f"encoder upsamples x{self.encoder.upsample} but the flow decoder expects x{upsample} "
                             "(variant A: 2 with 50 Hz latents; variant B: 3 with 75 Hz latents)")
        self.encoder_proj = nn.Linear(embed_dim, latent_dim)
        self.spk_embed_affine_layer = nn.Linear(spk_dim, latent_dim)
        estimator = estimator if estimator is not None else ConditionalDecoder(4 * latent_dim, latent_dim)
        self.decoder = ConditionalFlowMatching(estimator, **(cfm_kwargs or {}))
        self.prompt_prob, self.prompt_max_frac = prompt_prob, prompt_max_frac

    def encode(self, toks: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``toks [B, N]`` -> ``(mu [B, C, r N], latent lengths [B])``; padding tokens embed to 0."""
        tmask = lengths_to_mask(lens, toks.shape[1])[:, 0]
        emb = self.input_embedding(toks.clamp(0, self.vocab_size - 1)) * tmask.unsqueeze(-1)
        h, hlens = self.encoder(emb, lens)
        return self.encoder_proj(h).transpose(1, 2), hlens

    def speaker(self, spk: torch.Tensor) -> torch.Tensor:
        return self.spk_embed_affine_layer(F.normalize(spk, dim=1))

    def compute_loss(self, toks: torch.Tensor, tok_lens: torch.Tensor, lats: torch.Tensor, lat_lens: torch.Tensor,
                     spk: torch.Tensor, generator: torch.Generator | None = None) -> FlowLoss:
        """Training loss. ``lats [B, C, T]`` with ``T >= r N``; latents are cut to ``r * tok_lens``."""
        mu, hlens = self.encode(toks, tok_lens)
        t = mu.shape[-1]
        if lats.shape[-1] < t:
            lats = F.pad(lats, (0, t - lats.shape[-1]))
        lats = lats[..., :t]
        lens = torch.minimum(hlens, lat_lens)
        mask = lengths_to_mask(lens, t)
        cond = prompt_condition(lats, lens, self.prompt_prob, self.prompt_max_frac, generator) if self.training \
            else torch.zeros_like(lats)
        return self.decoder.compute_loss(lats * mask, mask, [mu, self.speaker(spk), cond], generator)

    @torch.no_grad()
    def inference(self, toks: torch.Tensor, tok_lens: torch.Tensor, spk: torch.Tensor,
                  prompt_toks: torch.Tensor | None = None, prompt_lats: torch.Tensor | None = None,
                  n_steps: int | None = None, cfg_rate: float | None = None,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """Latents ``[B, C, r N]`` for ``toks``; with a prompt (tokens ``[B, P]`` and their latents
        ``[B, C, r P]``) the prompt tokens are prepended, the prompt latents copied into the
        condition and cut from the output (§5). Batched prompts must share one length."""
        p = 0
        if prompt_toks is not None and prompt_toks.shape[1] > 0:
            p = prompt_toks.shape[1]
            toks = torch.cat([prompt_toks, toks], dim=1)
            tok_lens = tok_lens + p
        mu, hlens = self.encode(toks, tok_lens)
        mask = lengths_to_mask(hlens, mu.shape[-1])
        cond = torch.zeros_like(mu)
        if p:
            if prompt_lats is None:
                raise ValueError("prompt_toks given without prompt_lats")
            n = min(prompt_lats.shape[-1], p * self.upsample)
            cond[..., :n] = prompt_lats[..., :n]
        out = self.decoder.sample([mu, self.speaker(spk), cond], mask, n_steps, cfg_rate, noise,
                                  out_channels=self.latent_dim)
        return out[..., p * self.upsample:]
