"""FocalCodec's WavLM encoder (Chen et al., 2022), with an optional causal, streaming variant.

A self-contained WavLM (convolutional feature extractor, gated relative position bias,
pre-LN transformer, no final LayerNorm) whose parameter names follow FocalCodec v0.0.2
(``feature_extractor.layers.i.{conv,norm}``, ``norm``, ``feature_proj``,
``encoder.positional_embedding.conv``, ``encoder.relative_embedding``,
``encoder.layers.i.{attention.{qkv_proj,out_proj,gru_rel_pos_linear,gru_rel_pos_const},
attention_norm,feed_forward.{in_proj,out_proj},feed_forward_norm}``), so FocalCodec
checkpoints load unchanged. Use :class:`speechbrain_codec.encoders.SSLEncoder` for the
Hugging Face WavLM / HuBERT models.

Causal variant (FocalCodec-Stream): every convolution is left-padded by replicating the first
frame, and frame ``i`` attends to frames ``[end - window_size, end)`` where ``end`` is the end of
its chunk of ``1 + lookahead_size`` frames (3 frames of look-ahead at 50 Hz = 60 ms), so the
encoder streams in chunks of ``hop_length * (1 + lookahead_size)`` samples.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..nn import FeedForward, StreamCache, pad_left, stream_conv1d
from .base import Encoder

__all__ = ["FocalWavLM"]


class _ConvBlock(nn.Module):
    """Bias-free strided conv -> LayerNorm over channels -> GELU."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, causal: bool) -> None:
        super().__init__()
        self.kernel_size, self.causal = kernel_size, causal
        self.conv = nn.Conv1d(cin, cout, kernel_size, stride, bias=False)
        self.norm = nn.LayerNorm(cout)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
        """``x [B, C, T] -> [B, C', T']``."""
        if self.causal:
            x = pad_left(x, self.kernel_size - 1, self, cache)
        elif x.shape[-1] < self.kernel_size:
            x = nn.functional.pad(x, (0, self.kernel_size - x.shape[-1]))
        x = self.conv(x)
        return self.act(self.norm(x.transpose(1, 2))).transpose(1, 2)

    def forward_last(self, x: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
        """Inference path, channels-last: ``x [B, T, C] -> [B, T', C']``, the convolution as one
        matrix product over the unfolded frames (the same sums in another order; no transposes)."""
        k, s = self.kernel_size, self.conv.stride[0]
        if self.causal:
            x = pad_left(x.transpose(1, 2), k - 1, self, cache).transpose(1, 2)
        elif x.shape[1] < k:
            x = nn.functional.pad(x, (0, 0, 0, k - x.shape[1]))
        B, _, C = x.shape
        frames = x.unfold(1, k, s)  # [B, T', C, k], the weight's (C_in, k) order
        w = self.conv.weight.reshape(self.conv.out_channels, C * k)
        x = nn.functional.linear(frames.reshape(B, frames.shape[1], C * k), w)
        return self.act(self.norm(x))


class _FeatureExtractor(nn.Module):
    def __init__(self, dims: Sequence[int], kernels: Sequence[int], strides: Sequence[int], causal: bool) -> None:
        super().__init__()
        cins = [1, *dims[:-1]]
        self.layers = nn.ModuleList(
            _ConvBlock(ci, co, k, s, causal) for ci, co, k, s in zip(cins, dims, kernels, strides)
        )
        self.fast = False  # the inference path (Codec.optimize_for_inference)

    def forward(self, x: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
        """``x [B, 1, T_wav] -> [B, T, C]``."""
        if self.fast:
            x = x.transpose(1, 2)
            if not self.layers[0].causal and cache is None:
                return self._blocked(x)
            for layer in self.layers:
                x = layer.forward_last(x, cache)
            return x
        for layer in self.layers:
            x = layer(x, cache)
        return x.transpose(1, 2)

    def num_frames(self, num_samples: int) -> int:
        """Output frames of the non-causal ("valid") extractor for ``num_samples`` samples."""
        T = num_samples
        for layer in self.layers:
            T = (max(T, layer.kernel_size) - layer.kernel_size) // layer.conv.stride[0] + 1
        return T

    #: output frames per block of :meth:`_blocked` (its first layer's block: ~4k frames x 512, 8 MB)
    block_frames = 64

    def _blocked(self, x: torch.Tensor) -> torch.Tensor:
        """Non-causal inference path over blocks of ``block_frames`` output frames, each through
        all layers from the input samples it needs (the convolutions are "valid": a block's
        frames are the frames of the whole, computed alone, and the receptive field overlaps
        between blocks are recomputed, ~0.5 % more work). The big intermediates (layer 0: 64
        frames x 320 / 5 x 512 channels, 8 MB) stay in the cache, where the whole-signal path
        streams 64-MB tensors (10 s) through memory at every layer and activation."""
        n_out = self.num_frames(x.shape[1])
        step = self.block_frames
        if n_out <= step:
            for layer in self.layers:
                x = layer.forward_last(x, None)
            return x
        out = None
        for a in range(0, n_out, step):
            b = min(a + step, n_out)
            lo, hi = a, b  # frames [lo, hi) of each layer's output, from the last layer back
            for layer in reversed(self.layers):
                s = layer.conv.stride[0]
                lo, hi = lo * s, (hi - 1) * s + layer.kernel_size
            h = x[:, lo:hi]
            for layer in self.layers:
                h = layer.forward_last(h, None)
            if out is None:
                out = h.new_empty(x.shape[0], n_out, h.shape[-1])
            out[:, a:b] = h
        return out


class _PositionalConv(nn.Module):
    """Grouped convolution positional embedding (GELU output, added by the caller)."""

    def __init__(self, dim: int, kernel_size: int, groups: int, causal: bool) -> None:
        super().__init__()
        self.kernel_size, self.causal = kernel_size, causal
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=0 if causal else kernel_size // 2, groups=groups)
        self.act = nn.GELU()
        self.fast = False  # the inference path: streaming chunks by matrix products (stream_conv1d)

    def forward(self, x: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
        """``x [B, T, C] -> [B, T, C]``."""
        x = x.transpose(1, 2)
        if self.causal:
            x = pad_left(x, self.kernel_size - 1, self, cache)
        y = stream_conv1d(self.conv, x) if self.fast and self.causal else self.conv(x)
        if not self.causal and self.kernel_size % 2 == 0:
            y = y[..., :-1]
        return self.act(y).transpose(1, 2)


class _Attention(nn.Module):
    """Multi-head attention with WavLM's gated relative position bias."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        bias: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x [B, T, C]``; ``bias [H, T, S]`` (S = past + T keys); ``mask`` float, broadcast to
        ``[B, H, T, S]``. Returns the output and this call's keys and values ``[B, H, S, hd]``."""
        B, T, _ = x.shape
        q, k, v = self.qkv_proj(x).reshape(B, T, 3 * self.num_heads, self.head_dim).chunk(3, dim=2)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        gate_in = x.reshape(B, T, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        proj = self.gru_rel_pos_linear(gate_in).reshape(B, self.num_heads, T, 2, 4).sum(-1)
        gate_a, gate_b = proj.sigmoid().chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0
        attn_bias = gate * bias
        if mask is not None:
            attn_bias = attn_bias + mask
        out = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.permute(0, 2, 1, 3).reshape(B, T, -1)), (k, v)


class _TransformerLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = _Attention(dim, num_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ffn_dim, dropout)

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None,
        bias: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, kv = self.attention(self.attention_norm(x), past, bias, mask)
        x = x + self.dropout(h)
        return x + self.feed_forward(self.feed_forward_norm(x)), kv


class _TransformerEncoder(nn.Module):
    def __init__(
        self,
        num_layers: int,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        num_buckets: int,
        max_distance: int,
        dropout: float,
        conv_pos: int,
        conv_pos_groups: int,
        causal: bool,
        window_size: int,
        lookahead_size: int,
    ) -> None:
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.causal, self.window_size, self.chunk = causal, window_size, 1 + lookahead_size
        self.positional_embedding = _PositionalConv(dim, conv_pos, conv_pos_groups, causal)
        self.relative_embedding = nn.Embedding(num_buckets, num_heads)
        self.layers = nn.ModuleList(_TransformerLayer(dim, ffn_dim, num_heads, dropout) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.fast = False  # the inference path: cached position bias (Codec.optimize_for_inference)
        self._bias_table = None

    def bucket(self, rel: torch.Tensor) -> torch.Tensor:
        """Relative position (key - query) -> bucket index (T5 / WavLM log buckets)."""
        half = self.num_buckets // 2
        max_exact = half // 2
        buckets = (rel > 0).long() * half
        rel = rel.abs()
        large = (rel.float() / max_exact).log()
        large /= math.log(self.max_distance / max_exact)
        large *= half - max_exact
        large += max_exact
        large = large.long().clamp(max=half - 1)
        return buckets + torch.where(rel < max_exact, rel, large)

    def position_bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """``[H, Tq, Tk]`` bias for absolute query and key positions."""
        if self.fast:
            return self._cached_bias(q_pos, k_pos)
        rel = k_pos[None, :] - q_pos[:, None]
        return self.relative_embedding(self.bucket(rel)).permute(2, 0, 1)

    def _cached_bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """:meth:`position_bias` from a table of the bias per relative position ``[H, 2R + 1]``
        (R: the largest distance seen so far; rebuilt when the embedding's weights change): the
        same values, gathered instead of bucketed and looked up per query-key pair."""
        weight = self.relative_embedding.weight
        span = int(max(q_pos[-1] - k_pos[0], k_pos[-1] - q_pos[0]).abs()) if len(q_pos) and len(k_pos) else 0
        key = (weight._version, weight.data_ptr(), weight.device, weight.dtype)
        table = self._bias_table
        if table is None or table[0] != key or table[1] < span:
            reach = max(span, 1024 if table is None else 2 * table[1])
            rel = torch.arange(-reach, reach + 1, device=weight.device)
            values = nn.functional.embedding(self.bucket(rel), weight).T.contiguous()  # [H, 2R + 1]
            self._bias_table = table = (key, reach, values)
        reach, values = table[1], table[2]
        rel = k_pos[None, :] - q_pos[:, None] + reach
        return values[:, rel]

    def forward(
        self, x: torch.Tensor, lens: torch.Tensor | None, cache: StreamCache | None
    ) -> torch.Tensor:
        B, T, _ = x.shape
        mask = None
        start = 0
        if self.causal:
            state = None if cache is None else cache.get(self)
            start = 0 if state is None else state
            q_pos = torch.arange(start, start + T, device=x.device)
            n_past = 0
            if cache is not None and state is not None:
                n_past = cache[self.layers[0]][0].shape[2]
            k_pos = torch.arange(start - n_past, start + T, device=x.device)
            end = ((q_pos // self.chunk + 1) * self.chunk).clamp(max=start + T)
            allowed = (k_pos[None, :] >= (end - self.window_size)[:, None]) & (k_pos[None, :] < end[:, None])
            if lens is not None and cache is None:  # a padded batch: each chunk end clamped to its utterance's
                n_valid = (lens * T).ceil().clamp(max=T).long()
                end = torch.minimum(end[None, :], n_valid[:, None])[:, None, :, None]  # [B, 1, T, 1]
                allowed = (k_pos >= end - self.window_size) & (k_pos < end)
            mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, float("-inf"))
        else:
            q_pos = k_pos = torch.arange(T, device=x.device)
            if lens is not None:
                n_valid = (lens * T).ceil().clamp(max=T).long()
                valid = torch.arange(T, device=x.device)[None, :] < n_valid[:, None]
                x = x.masked_fill(~valid[..., None], 0.0)
                mask = torch.zeros(B, 1, 1, T, dtype=x.dtype, device=x.device).masked_fill(
                    ~valid[:, None, None, :], float("-inf")
                )
        bias = self.position_bias(q_pos, k_pos).to(x.dtype)
        x = self.dropout(x + self.positional_embedding(x, cache))
        for layer in self.layers:
            past = None if cache is None else cache.get(layer)
            x, kv = layer(x, past, bias, mask)
            if cache is not None and self.causal:
                keep = self.window_size - 1  # the oldest key any later query can still see
                cache[layer] = (kv[0][:, :, -keep:], kv[1][:, :, -keep:])
        if cache is not None and self.causal:
            cache[self] = start + T
        return x


class FocalWavLM(Encoder):
    """WavLM as FocalCodec uses it: ``sig [B, T_wav] -> feats [B, T, dim]`` at 50 Hz.

    Parameters
    ----------
    hidden_dims, kernel_sizes, strides : sequence of int
        Convolutional feature extractor (WavLM: 512 x 7, [10,3,3,3,3,2,2], [5,2,2,2,2,2,2]).
    num_layers, dim, ffn_dim, num_heads : int
        Transformer (FocalCodec keeps WavLM-Large's first 6 layers: 6, 1024, 4096, 16).
    num_buckets, max_distance : int
        Relative position buckets.
    dropout : float
    conv_pos, conv_pos_groups : int
        Convolutional positional embedding.
    causal : bool
        FocalCodec-Stream's causal variant; ``forward(sig, cache=...)`` then streams.
    window_size, lookahead_size : int
        Causal attention: frames of past context and of look-ahead (chunk = 1 + look-ahead).
    max_cached_steps, use_flex_attention :
        Accepted for FocalCodec config compatibility; they affect speed only, not values.

    Non-causal inputs are not padded (WavLM's convolutions are "valid"), so ``T =
    floor((T_wav - 400) / 320) + 1``; causal inputs give ``ceil(T_wav / 320)`` frames.

    Example
    -------
    >>> enc = FocalWavLM(hidden_dims=[8] * 7, num_layers=1, dim=16, ffn_dim=32, num_heads=4,
    ...                  conv_pos=8, conv_pos_groups=4)
    >>> enc(torch.randn(2, 32000)).shape
    torch.Size([2, 99, 16])
    """

    sample_rate = 16000

    def __init__(
        self,
        hidden_dims: Sequence[int] = (512,) * 7,
        kernel_sizes: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        num_layers: int = 6,
        dim: int = 1024,
        ffn_dim: int = 4096,
        num_heads: int = 16,
        num_buckets: int = 320,
        max_distance: int = 800,
        dropout: float = 0.0,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        causal: bool = False,
        window_size: int = 512,
        lookahead_size: int = 3,
        max_cached_steps: int = 2048,
        use_flex_attention: bool = False,
    ) -> None:
        super().__init__()
        self.causal = self.streaming = causal
        self.hop_length = math.prod(strides)
        self.out_channels = dim
        self.chunk_frames = 1 + lookahead_size if causal else 1
        self.feature_extractor = _FeatureExtractor(hidden_dims, kernel_sizes, strides, causal)
        self.norm = nn.LayerNorm(hidden_dims[-1])
        self.feature_proj = nn.Linear(hidden_dims[-1], dim)
        self.dropout = nn.Dropout(dropout)
        self.encoder = _TransformerEncoder(
            num_layers, dim, ffn_dim, num_heads, num_buckets, max_distance, dropout, conv_pos,
            conv_pos_groups, causal, window_size, lookahead_size,
        )

    def forward(
        self, sig: torch.Tensor, lens: torch.Tensor | None = None, cache: StreamCache | None = None
    ) -> torch.Tensor:
        """``sig [B, T_wav]`` -> ``feats [B, T, dim]``.

        ``lens`` (relative lengths of a zero-padded batch) masks the padded frames as keys (and,
        non-causal, zeroes them before the positional convolution, as the reference). ``cache``
        (causal only): pass the same dict with consecutive chunks whose lengths are multiples of
        ``hop_length * chunk_frames`` to stream.
        """
        if cache is not None and not self.causal:
            raise ValueError("FocalWavLM: streaming needs causal=True")
        x = self.feature_extractor(sig[:, None, :], cache)
        x = self.dropout(self.feature_proj(self.norm(x)))
        return self.encoder(x, lens, cache)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for ``num_samples`` input samples (``forward``'s arithmetic)."""
        if self.causal:
            return -(-num_samples // self.hop_length)
        return self.feature_extractor.num_frames(num_samples)
