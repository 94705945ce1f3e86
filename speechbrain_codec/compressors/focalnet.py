"""Focal-modulation compressor and decompressor (FocalNet, Yang et al., 2022) as in FocalCodec.

``FocalCompressor``: per layer a strided convolution (kernel = stride = down-sampling factor) and
Snake, then a FocalNet block; a final linear map to the code dimension and L2 normalisation
(binary spherical quantization expects unit-norm latents). ``FocalDecompressor`` mirrors it:
linear map from the code dimension, per layer a FocalNet block then Snake and a transposed
convolution (kernel = stride = up-sampling factor), and in the causal model a chunk-wise
feed-forward "refiner" over groups of ``1 + lookahead_size`` frames.

Causal variants replace LayerNorm by DynamicTanh, left-pad every convolution by replicating the
first frame, and replace the global average pooling of the modulation by one more depthwise
convolution of ``window_size`` frames; they stream through ``forward(x, cache)``.

Parameter names follow FocalCodec v0.0.2 (``layers.i.downscale.{downscale,activation}``,
``layers.i.focal_block.{modulation_norm,modulation,feed_forward_norm,feed_forward}``,
``layers.i.upscale.{activation,upscale}``, ``out_proj``, ``in_proj``, ``refiner``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..nn import FeedForward, StreamCache, pad_left

__all__ = [
    "DynamicTanh",
    "FocalBlock",
    "FocalCompressor",
    "FocalDecompressor",
    "FocalDownScale",
    "FocalModulation",
    "FocalUpScale",
    "Snake",
]


def frame_mask(lengths: torch.Tensor | None, T: int) -> torch.Tensor | None:
    """``[B, T, 1]`` float mask of the first ``lengths[b]`` frames (``None`` without lengths)."""
    if lengths is None:
        return None
    return (torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(-1)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x.masked_fill(~mask, 0.0)


class DynamicTanh(nn.Module):
    """``tanh(alpha * x)`` with one learned scalar (Zhu et al., 2025), FocalCodec's causal norm."""

    def __init__(self, tanhscale_init: float = 0.5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), tanhscale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha * x).tanh()


class Snake(nn.Module):
    """Snake activation ``x + sin^2(alpha x) / alpha`` with per-channel alpha, on ``[B, T, C]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.T
        return x + (alpha + 1e-9).reciprocal() * (alpha * x).sin() ** 2


class ChunkFeedForward(FeedForward):
    """Residual :class:`FeedForward` over non-overlapping groups of ``chunk_size`` frames,
    flattened (zero-padded at the end)."""

    def __init__(self, chunk_size: int, dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__(chunk_size * dim, ffn_dim, dropout)
        self.chunk_size = chunk_size

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, T, C] -> [B, T, C]``; ``mask [B, T, 1]`` (padded batches): frames past an
        utterance's end count as the zeros its own padding would be."""
        B, T, C = x.shape
        rem = (-T) % self.chunk_size
        x0, x = x, _masked(x, mask)
        h = nn.functional.pad(x, (0, 0, 0, rem)).reshape(B, -1, self.chunk_size * C)
        return x0 + super().forward(h).reshape(B, -1, C)[:, :T]


class FocalModulation(nn.Module):
    """Focal modulation: ``out_proj(query * context_proj(sum_l gate_l * context_l))``.

    ``focal_level`` chained depthwise conv + GELU levels with kernels ``focal_factor * l +
    focal_window``, plus a global level: GELU of the time average of the last level
    (non-causal) or one more depthwise convolution of ``window_size`` frames (causal).
    """

    def __init__(
        self,
        dim: int,
        focal_window: int = 7,
        focal_level: int = 2,
        focal_factor: int = 2,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
    ) -> None:
        super().__init__()
        self.dim, self.focal_level, self.causal = dim, focal_level, causal
        self.normalize_modulator, self.use_post_norm = normalize_modulator, use_post_norm
        self.in_proj = nn.Linear(dim, 2 * dim + focal_level + 1)
        kernels = [focal_factor * k + focal_window for k in range(focal_level)]
        if causal:
            kernels.append(window_size)
        self.kernels = kernels
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, k, groups=dim, padding=0 if causal else "same"), nn.GELU())
            for k in kernels
        )
        self.act = nn.GELU()
        self.context_proj = nn.Conv1d(dim, dim, kernel_size=1)
        self.fast = False  # the inference path: the 1x1 convolution as a matrix product
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        if use_post_norm:
            self.norm = DynamicTanh(tanhscale_init) if causal else nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, T, C] -> [B, T, C]``. ``mask [B, T, 1]`` (non-causal padded batches): each
        utterance's convolutions and global average see zeros past its end, as when it is
        coded alone (causal outputs never depend on later frames)."""
        query, context, gates = self.in_proj(x).transpose(1, 2).split([self.dim, self.dim, self.focal_level + 1], 1)
        mask_cf = None if mask is None or self.causal else mask.transpose(1, 2)
        context_all = 0.0
        for level, (layer, k) in enumerate(zip(self.layers, self.kernels)):
            if self.causal:
                context = pad_left(context, k - 1, layer, cache)
            context = layer(_masked(context, mask_cf))
            context_all = context_all + context * gates[:, level : level + 1]
        if not self.causal:
            if mask_cf is None:
                context_global = self.act(context.mean(dim=-1, keepdim=True))
            else:
                n = mask_cf.sum(-1, keepdim=True).clamp(min=1)
                context_global = self.act(_masked(context, mask_cf).sum(-1, keepdim=True) / n)
            context_all = context_all + context_global * gates[:, self.focal_level :]
        if self.normalize_modulator:
            context_all = context_all / (self.focal_level + 1)
        if self.fast:  # the 1x1 convolution as a matrix product, channels-last
            proj = self.context_proj
            out = query.transpose(1, 2) * nn.functional.linear(context_all.transpose(1, 2), proj.weight[..., 0], proj.bias)
        else:
            out = (query * self.context_proj(context_all)).transpose(1, 2)
        if self.use_post_norm:
            out = self.norm(out)
        return self.dropout(self.out_proj(out))


class FocalBlock(nn.Module):
    """Pre-norm residual focal modulation, then a pre-norm residual 4x feed-forward."""

    def __init__(
        self,
        dim: int,
        focal_window: int = 7,
        focal_level: int = 2,
        focal_factor: int = 2,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
    ) -> None:
        super().__init__()
        self.use_post_norm = use_post_norm

        def norm() -> nn.Module:
            return DynamicTanh(tanhscale_init) if causal else nn.LayerNorm(dim)

        self.fast = False  # the inference path (Codec.optimize_for_inference)
        self.modulation_norm = norm()
        self.modulation = FocalModulation(
            dim, focal_window, focal_level, focal_factor, dropout, use_post_norm, tanhscale_init,
            normalize_modulator, causal, window_size,
        )
        self.feed_forward_norm = norm()
        self.feed_forward = FeedForward(dim, 4 * dim, dropout)
        if use_layerscale:
            self.modulation_gamma = nn.Parameter(torch.full((dim,), layerscale_init))
            self.feed_forward_gamma = nn.Parameter(torch.full((dim,), layerscale_init))
        else:
            self.modulation_gamma = self.feed_forward_gamma = None

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, T, C] -> [B, T, C]`` (``mask``: see :class:`FocalModulation`)."""
        if self.fast:  # channels-last memory for the matrix products (inputs come transposed)
            x = x.contiguous()
        if self.use_post_norm:
            h = self.modulation_norm(self.modulation(x, cache, mask))
        else:
            h = self.modulation(self.modulation_norm(x), cache, mask)
        if self.modulation_gamma is not None:
            h = h * self.modulation_gamma
        x = x + h
        if self.use_post_norm:
            h = self.feed_forward_norm(self.feed_forward(x))
        else:
            h = self.feed_forward(self.feed_forward_norm(x))
        if self.feed_forward_gamma is not None:
            h = h * self.feed_forward_gamma
        return x + h


class _DownScale(nn.Module):
    def __init__(self, cin: int, cout: int, factor: int, causal: bool) -> None:
        super().__init__()
        self.factor, self.causal = factor, causal
        self.downscale = nn.Conv1d(cin, cout, factor, factor)
        self.activation = Snake(cout)

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, T, C] -> [B, ceil(T / factor), C']``."""
        if not self.causal:
            x = _masked(x, mask)
        x = x.transpose(1, 2)
        if self.causal:
            x = pad_left(x, self.factor - 1, self, cache)
        else:
            rem = (x.shape[-1] - self.factor) % self.factor
            if rem:
                x = nn.functional.pad(x, (0, rem))
        return self.activation(self.downscale(x).transpose(1, 2))


class _UpScale(nn.Module):
    def __init__(self, cin: int, cout: int, factor: int) -> None:
        super().__init__()
        self.activation = Snake(cin)
        self.upscale = nn.ConvTranspose1d(cin, cout, factor, factor)
        self.fast = False  # the inference path: one matrix product (Codec.optimize_for_inference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C] -> [B, T * factor, C']`` (kernel = stride: each output frame depends on
        one input frame, so the causal model needs no context here)."""
        if self.fast:  # frame t's `factor` outputs = x_t @ W[:, :, j] for each j, channels-last
            w = self.upscale.weight  # [C, C', factor]
            B, T, C = x.shape
            y = self.activation(x).reshape(B * T, C) @ w.permute(0, 2, 1).reshape(C, -1)  # [B T, factor C']
            y = y.reshape(B, T * w.shape[2], w.shape[1])
            return y if self.upscale.bias is None else y + self.upscale.bias
        return self.upscale(self.activation(x).transpose(1, 2)).transpose(1, 2)


class FocalDownScale(nn.Module):
    """Strided conv + Snake (``downscale``), then a :class:`FocalBlock` (``focal_block``)."""

    def __init__(self, input_dim: int, output_dim: int, downscale_factor: int = 1, **block_kwargs) -> None:
        super().__init__()
        self.factor = downscale_factor
        self.downscale = _DownScale(input_dim, output_dim, downscale_factor, block_kwargs.get("causal", False))
        self.focal_block = FocalBlock(output_dim, **block_kwargs)

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None = None, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``lengths`` (frames of each utterance of a padded batch, at the input rate): coded as
        if alone; the output's lengths are ``ceil(lengths / factor)``."""
        if lengths is None:
            return self.focal_block(self.downscale(x, cache), cache)
        x = self.downscale(x, cache, frame_mask(lengths, x.shape[1]))
        return self.focal_block(x, cache, frame_mask(-(-lengths // self.factor), x.shape[1]))


class FocalUpScale(nn.Module):
    """A :class:`FocalBlock` (``focal_block``), then Snake + transposed conv (``upscale``)."""

    def __init__(self, input_dim: int, output_dim: int, upscale_factor: int = 1, **block_kwargs) -> None:
        super().__init__()
        self.factor = upscale_factor
        self.focal_block = FocalBlock(input_dim, **block_kwargs)
        self.upscale = _UpScale(input_dim, output_dim, upscale_factor)

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None = None, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``lengths``: see :class:`FocalDownScale` (output lengths ``lengths * factor``)."""
        return self.upscale(self.focal_block(x, cache, frame_mask(lengths, x.shape[1])))


def _block_kwargs(
    focal_window: int,
    focal_level: int,
    focal_factor: int,
    dropout: float,
    use_post_norm: bool,
    use_layerscale: bool,
    layerscale_init: float,
    tanhscale_init: float,
    normalize_modulator: bool,
    causal: bool,
) -> dict:
    return dict(
        focal_window=focal_window, focal_level=focal_level, focal_factor=focal_factor, dropout=dropout,
        use_post_norm=use_post_norm, use_layerscale=use_layerscale, layerscale_init=layerscale_init,
        tanhscale_init=tanhscale_init, normalize_modulator=normalize_modulator, causal=causal,
    )


class FocalCompressor(nn.Module):
    """``feats [B, T, input_dim] -> lats [B, T / prod(downscale_factors), output_dim]``.

    Parameters
    ----------
    input_dim, output_dim : int
        Encoder width and code dimension (``log2`` of the BSQ codebook size).
    hidden_dims : sequence of int
        Width of each layer.
    downscale_factors : sequence of int
        Frame-rate reduction per layer (FocalCodec 25 Hz: ``[2, 1, 1]``).
    focal_window, focal_level, focal_factor : int
        Focal modulation (FocalCodec: 7/2/2; causal: 14/2/4).
    dropout, use_post_norm, use_layerscale, layerscale_init, tanhscale_init, normalize_modulator :
        FocalNet options (FocalCodec: 0, False, False, 1e-4, 0.5, False).
    causal : bool
        Causal, streaming variant.
    window_size : int
        Causal global-context window in frames.
    normalize : bool
        L2-normalise the output latents (FocalCodec's ``feats_to_lats``).

    Example
    -------
    >>> comp = FocalCompressor(16, 5, hidden_dims=[16, 8], downscale_factors=[2, 1])
    >>> lats = comp(torch.randn(2, 9, 16))
    >>> lats.shape, comp.downsample, torch.allclose(lats.norm(dim=-1), torch.ones(2, 5))
    (torch.Size([2, 5, 5]), 2, True)
    """

    def __init__(
        self,
        input_dim: int = 1024,
        output_dim: int = 13,
        hidden_dims: Sequence[int] = (1024, 512, 256),
        downscale_factors: Sequence[int] = (1, 1, 1),
        focal_window: int = 7,
        focal_level: int = 2,
        focal_factor: int = 2,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.causal = self.streaming = causal
        self.normalize = normalize
        self.block_kwargs = _block_kwargs(
            focal_window, focal_level, focal_factor, dropout, use_post_norm, use_layerscale,
            layerscale_init, tanhscale_init, normalize_modulator, causal,
        )
        self.block_kwargs["window_size"] = window_size
        self.layers = nn.ModuleList()
        cin = input_dim
        for hidden, factor in zip(hidden_dims, downscale_factors):
            self.layers.append(FocalDownScale(cin, hidden, factor, **self.block_kwargs))
            cin = hidden
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(cin, output_dim)

    @property
    def downsample(self) -> int:
        """Total frame-rate reduction."""
        return math.prod(layer.factor for layer in self.layers)

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None = None, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, T, C] -> [B, ceil(T / downsample), output_dim]``; ``cache`` streams (causal).
        ``lengths [B]`` (frames per utterance of a zero-padded batch): every utterance gets the
        latents it gets alone (``ceil(lengths / downsample)`` valid frames)."""
        for layer in self.layers:
            x = layer(x, cache) if lengths is None else layer(x, cache, lengths)
            if lengths is not None:
                lengths = -(-lengths // layer.factor)
        x = self.out_proj(self.dropout(x))
        return nn.functional.normalize(x, dim=-1) if self.normalize else x

    def grow(self, factor: int = 2, dim: int | None = None) -> FocalDownScale:
        """Append a ``factor``-times down-sampling layer after the last one (FocalCodec-S).

        The new layer maps the last hidden width to ``dim`` (default: the same width, which
        ``out_proj`` then keeps reading) with PyTorch's default initialisation and the focal
        settings of the existing layers. Returns the new layer, e.g. for a separate
        learning rate (:func:`speechbrain_codec.compressors.progressive_param_groups`).
        """
        cin = self.out_proj.in_features
        dim = cin if dim is None else dim
        if dim != cin:
            raise ValueError(f"grow: out_proj reads {cin} channels; a {dim}-wide layer would not fit it")
        layer = FocalDownScale(cin, dim, factor, **self.block_kwargs).to(self.out_proj.weight.device)
        self.layers.append(layer)
        return layer


class FocalDecompressor(nn.Module):
    """``codes [B, T, input_dim] -> feats [B, T * prod(upscale_factors), output_dim]``.

    Parameters as :class:`FocalCompressor`; ``hidden_dims`` run from the code side to the
    decoder side (FocalCodec: ``[256, 512, 1024]``, output 1024), ``last_window_size`` is the
    causal window of the last layer, and ``lookahead_size`` > 0 adds the chunk-wise refiner in
    the causal model.

    Example
    -------
    >>> dec = FocalDecompressor(5, 16, hidden_dims=[8, 16], upscale_factors=[2, 1])
    >>> dec(torch.randn(2, 5, 5)).shape, dec.upsample
    (torch.Size([2, 10, 16]), 2)
    """

    def __init__(
        self,
        input_dim: int = 13,
        output_dim: int = 1024,
        hidden_dims: Sequence[int] = (256, 512, 1024),
        upscale_factors: Sequence[int] = (1, 1, 1),
        focal_window: int = 7,
        focal_level: int = 2,
        focal_factor: int = 2,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
        last_window_size: int = 512,
        lookahead_size: int = 3,
    ) -> None:
        super().__init__()
        self.causal = self.streaming = causal
        self.block_kwargs = _block_kwargs(
            focal_window, focal_level, focal_factor, dropout, use_post_norm, use_layerscale,
            layerscale_init, tanhscale_init, normalize_modulator, causal,
        )
        self.window_size = window_size
        dims = [*hidden_dims, output_dim]
        self.in_proj = nn.Linear(input_dim, dims[0])
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            FocalUpScale(
                dims[i], dims[i + 1], factor, **self.block_kwargs,
                window_size=window_size if i < len(dims) - 2 else last_window_size,
            )
            for i, factor in enumerate(upscale_factors)
        )
        self.chunk_frames = 1 + lookahead_size if causal and lookahead_size > 0 else 1
        if causal and lookahead_size > 0:
            self.refiner = ChunkFeedForward(self.chunk_frames, output_dim, self.chunk_frames * output_dim, dropout)
        else:
            self.refiner = None

    @property
    def upsample(self) -> int:
        """Total frame-rate increase."""
        return math.prod(layer.factor for layer in self.layers)

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None = None, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, T, C] -> [B, T * upsample, output_dim]``; ``cache`` streams (causal; feed
        ``chunk_frames / upsample`` frames or a multiple per call when there is a refiner).
        ``lengths [B]``: see :class:`FocalCompressor` (output lengths ``lengths * upsample``)."""
        x = self.dropout(self.in_proj(x))
        for layer in self.layers:
            x = layer(x, cache) if lengths is None else layer(x, cache, lengths)
            if lengths is not None:
                lengths = lengths * layer.factor
        if self.refiner is None:
            return x
        return self.refiner(x) if lengths is None else self.refiner(x, frame_mask(lengths, x.shape[1]))

    def grow(self, factor: int = 2, dim: int | None = None) -> FocalUpScale:
        """Insert a ``factor``-times up-sampling layer at position 0, right after ``in_proj``
        (FocalCodec-S); same width as ``in_proj``'s output. Returns the new layer."""
        cin = self.in_proj.out_features
        dim = cin if dim is None else dim
        if dim != cin:
            raise ValueError(f"grow: in_proj writes {cin} channels; a {dim}-wide layer would not fit it")
        layer = FocalUpScale(cin, cin, factor, **self.block_kwargs, window_size=self.window_size)
        self.layers.insert(0, layer.to(self.in_proj.weight.device))
        return layer
