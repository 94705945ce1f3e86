"""Jukebox-style VQ-VAE convolution stacks (Dhariwal et al., 2020), as adapted by
speech-resynthesis and the LM-loss codec (its spec, §2.3).

Channels-first throughout (``[B, C, T]``). Module and parameter names follow the reference
code (``level_blocks.{l}.model.{i}...``, the decoder's ``out``), so its state dicts load
unchanged. With the LM-loss codec's settings (stride 2, width 32, depth 4, growth 3, m_conv 1):

* residual stack ``Resnet1D``: ``depth`` blocks ``x + res_scale * conv1x1(relu(conv3_d(relu(x))))``
  with dilation ``d = growth**j`` (1, 3, 9, 27) and "same" padding;
* down block = ``Conv1d(k=2s, stride=s, pad=s//2)`` + residual stack (``T -> T // s`` for even s);
* up block = residual stack + ``ConvTranspose1d(k=2s, stride=s, pad=s//2)`` (``T -> s T``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ResConv1DBlock",
    "Resnet1D",
    "EncoderConvBlock",
    "DecoderConvBlock",
    "JukeboxEncoder",
    "JukeboxDecoder",
]


def _filter_pad(stride: int, per_level_list: bool) -> tuple[int, int]:
    """Kernel and padding of a stride-``stride`` down/up convolution (the reference's rule:
    ``2s, s//2``; per-level stride lists use ``2s+1, s//2+1`` for odd s)."""
    if per_level_list and stride % 2:
        return stride * 2 + 1, stride // 2 + 1
    return stride * 2, stride // 2


class ResConv1DBlock(nn.Module):
    """``x + res_scale * Conv1d_1x1(ReLU(Conv1d_k3_dilated(ReLU(x))))``.

    Example
    -------
    >>> block = ResConv1DBlock(8, 8, dilation=3)
    >>> block(torch.randn(2, 8, 20)).shape
    torch.Size([2, 8, 20])
    """

    def __init__(self, n_in: int, n_state: int, dilation: int = 1, zero_out: bool = False,
                 res_scale: float = 1.0) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(n_in, n_state, 3, 1, dilation, dilation),
            nn.ReLU(),
            nn.Conv1d(n_state, n_in, 1, 1, 0),
        )
        if zero_out:
            nn.init.zeros_(self.model[-1].weight)
            nn.init.zeros_(self.model[-1].bias)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.model(x)


class Resnet1D(nn.Module):
    """``n_depth`` :class:`ResConv1DBlock` s on ``n_in`` channels, block j dilated by
    ``dilation_growth_rate ** (j % dilation_cycle)``.

    Parameters
    ----------
    n_in : int
        Channels.
    n_depth : int
        Number of blocks.
    m_conv : float
        Inner width multiplier (inner channels ``int(m_conv * n_in)``).
    dilation_growth_rate : int
        Dilation base.
    dilation_cycle : int, optional
        Restart the dilations every ``dilation_cycle`` blocks.
    zero_out : bool
        Zero-initialise each block's last convolution.
    res_scale : bool
        Scale the residual branches by ``1 / sqrt(n_depth)`` (else 1).
    reverse_dilation : bool
        Blocks in reverse order (largest dilation first).

    Example
    -------
    >>> res = Resnet1D(8, 4, dilation_growth_rate=3)
    >>> [block.model[1].dilation[0] for block in res.model]
    [1, 3, 9, 27]
    """

    def __init__(self, n_in: int, n_depth: int, m_conv: float = 1.0, dilation_growth_rate: int = 1,
                 dilation_cycle: int | None = None, zero_out: bool = False, res_scale: bool = False,
                 reverse_dilation: bool = False) -> None:
        super().__init__()
        scale = 1.0 / math.sqrt(n_depth) if res_scale else 1.0
        blocks = [
            ResConv1DBlock(
                n_in, int(m_conv * n_in),
                dilation=dilation_growth_rate ** (j if dilation_cycle is None else j % dilation_cycle),
                zero_out=zero_out, res_scale=scale,
            )
            for j in range(n_depth)
        ]
        if reverse_dilation:
            blocks = blocks[::-1]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class EncoderConvBlock(nn.Module):
    """One encoder level: ``down_t`` down blocks (strided conv + :class:`Resnet1D`), then
    ``Conv1d(width, output_emb_width, 3, 1, 1)``: ``[B, C_in, T] -> [B, C_out, T / stride**down_t]``.

    ``stride_t`` / ``down_t`` may be per-level sequences (several strides in one level).

    Example
    -------
    >>> block = EncoderConvBlock(1, 16, down_t=4, stride_t=2, width=8, depth=2, m_conv=1.0,
    ...                          dilation_growth_rate=3)
    >>> block(torch.randn(2, 1, 64)).shape
    torch.Size([2, 16, 4])
    """

    def __init__(self, input_emb_width: int, output_emb_width: int, down_t: int | Sequence[int],
                 stride_t: int | Sequence[int], width: int, depth: int, m_conv: float,
                 dilation_growth_rate: int = 1, dilation_cycle: int | None = None,
                 zero_out: bool = False, res_scale: bool = False) -> None:
        super().__init__()
        per_level_list = isinstance(stride_t, (list, tuple))
        strides = list(stride_t) if per_level_list else [stride_t]
        downs = list(down_t) if per_level_list else [down_t]
        blocks: list[nn.Module] = []
        first = True
        for s, d in zip(strides, downs):
            filter_t, pad_t = _filter_pad(s, per_level_list)
            for _ in range(d):
                blocks.append(nn.Sequential(
                    nn.Conv1d(input_emb_width if first else width, width, filter_t, s, pad_t),
                    Resnet1D(width, depth, m_conv, dilation_growth_rate, dilation_cycle, zero_out, res_scale),
                ))
                first = False
        if per_level_list or downs[0] > 0:  # the reference: an int down_t of 0 gives an empty block
            blocks.append(nn.Conv1d(width, output_emb_width, 3, 1, 1))
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DecoderConvBlock(nn.Module):
    """One decoder level: ``Conv1d(output_emb_width, width, 3, 1, 1)``, then ``down_t`` up
    blocks (:class:`Resnet1D` + transposed conv), the last one to ``input_emb_width``
    channels: ``[B, C_out, T] -> [B, C_in, T * stride**down_t]``.

    Example
    -------
    >>> block = DecoderConvBlock(16, 16, down_t=2, stride_t=2, width=8, depth=2, m_conv=1.0)
    >>> block(torch.randn(2, 16, 5)).shape
    torch.Size([2, 16, 20])
    """

    def __init__(self, input_emb_width: int, output_emb_width: int, down_t: int | Sequence[int],
                 stride_t: int | Sequence[int], width: int, depth: int, m_conv: float,
                 dilation_growth_rate: int = 1, dilation_cycle: int | None = None,
                 zero_out: bool = False, res_scale: bool = False,
                 reverse_decoder_dilation: bool = False) -> None:
        super().__init__()
        per_level_list = isinstance(stride_t, (list, tuple))
        strides = list(stride_t) if per_level_list else [stride_t]
        downs = list(down_t) if per_level_list else [down_t]
        blocks: list[nn.Module] = []
        if per_level_list or downs[0] > 0:
            blocks.append(nn.Conv1d(output_emb_width, width, 3, 1, 1))
        for k, (s, d) in enumerate(zip(strides, downs)):
            filter_t, pad_t = _filter_pad(s, per_level_list)
            last_stride = k == len(strides) - 1
            for i in range(d):
                out = input_emb_width if (i == d - 1 and last_stride) else width
                blocks.append(nn.Sequential(
                    Resnet1D(width, depth, m_conv, dilation_growth_rate, dilation_cycle, zero_out, res_scale,
                             reverse_dilation=reverse_decoder_dilation),
                    nn.ConvTranspose1d(width, out, filter_t, s, pad_t),
                ))
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _level_factor(down_t: int | Sequence[int], stride_t: int | Sequence[int]) -> int:
    if isinstance(stride_t, (list, tuple)):
        return math.prod(s**d for s, d in zip(stride_t, down_t))
    return stride_t**down_t


class JukeboxEncoder(nn.Module):
    """Multi-level encoder: level l applies ``level_blocks[l]`` to the previous level's
    output; ``x [B, input_emb_width, T] -> [x_0 [B, D, T / r_0], x_1 [B, D, T / (r_0 r_1)], ...]``.

    Parameters
    ----------
    input_emb_width, output_emb_width : int
        Input channels and latent size D.
    levels : int
        Number of levels.
    downs_t, strides_t : sequence
        Per level: number of down blocks and their stride.
    **block_kwargs
        ``width``, ``depth``, ``m_conv``, ``dilation_growth_rate``, ... of
        :class:`EncoderConvBlock` (``reverse_decoder_dilation`` is ignored).

    Example
    -------
    >>> enc = JukeboxEncoder(768, 128, 1, [1], [2], width=32, depth=4, m_conv=1.0,
    ...                      dilation_growth_rate=3)
    >>> [x.shape for x in enc(torch.randn(1, 768, 100))]
    [torch.Size([1, 128, 50])]
    """

    def __init__(self, input_emb_width: int, output_emb_width: int, levels: int,
                 downs_t: Sequence, strides_t: Sequence, **block_kwargs) -> None:
        super().__init__()
        if len(downs_t) != levels or len(strides_t) != levels:
            raise ValueError(f"downs_t and strides_t need {levels} entries, got {downs_t}, {strides_t}")
        block_kwargs.pop("reverse_decoder_dilation", None)
        self.input_emb_width, self.output_emb_width, self.levels = input_emb_width, output_emb_width, levels
        self.downs_t, self.strides_t = list(downs_t), list(strides_t)
        self.level_blocks = nn.ModuleList(
            EncoderConvBlock(input_emb_width if level == 0 else output_emb_width, output_emb_width,
                             down_t, stride_t, **block_kwargs)
            for level, (down_t, stride_t) in enumerate(zip(downs_t, strides_t))
        )

    @property
    def downsample_factors(self) -> list[int]:
        """Cumulative time reduction at each level's output."""
        out, f = [], 1
        for d, s in zip(self.downs_t, self.strides_t):
            f *= _level_factor(d, s)
            out.append(f)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 3 or x.shape[1] != self.input_emb_width:
            raise ValueError(f"{type(self).__name__} expects x [B, {self.input_emb_width}, T], got {list(x.shape)}")
        xs = []
        for block in self.level_blocks:
            x = block(x)
            xs.append(x)
        return xs


class JukeboxDecoder(nn.Module):
    """Multi-level decoder: from the deepest level down, ``level_blocks[l]`` upsamples and
    (with ``all_levels``) adds the next shallower level's latent; then
    ``out = Conv1d(output_emb_width, input_emb_width, 3, 1, 1)``.
    ``[x_0, ..., x_{L-1}] -> [B, input_emb_width, T]``.

    Example
    -------
    >>> dec = JukeboxDecoder(1, 128, 1, [4], [2], width=32, depth=4, m_conv=1.0,
    ...                      dilation_growth_rate=3)
    >>> dec([torch.randn(2, 128, 25)]).shape
    torch.Size([2, 1, 400])
    """

    def __init__(self, input_emb_width: int, output_emb_width: int, levels: int,
                 downs_t: Sequence, strides_t: Sequence, **block_kwargs) -> None:
        super().__init__()
        if len(downs_t) != levels or len(strides_t) != levels:
            raise ValueError(f"downs_t and strides_t need {levels} entries, got {downs_t}, {strides_t}")
        self.input_emb_width, self.output_emb_width, self.levels = input_emb_width, output_emb_width, levels
        self.downs_t, self.strides_t = list(downs_t), list(strides_t)
        self.level_blocks = nn.ModuleList(
            DecoderConvBlock(output_emb_width, output_emb_width, down_t, stride_t, **block_kwargs)
            for down_t, stride_t in zip(downs_t, strides_t)
        )
        self.out = nn.Conv1d(output_emb_width, input_emb_width, 3, 1, 1)

    def forward(self, xs: Sequence[torch.Tensor], all_levels: bool = True) -> torch.Tensor:
        if len(xs) != (self.levels if all_levels else 1):
            raise ValueError(f"expected {self.levels if all_levels else 1} latents, got {len(xs)}")
        x = xs[-1]
        if x.dim() != 3 or x.shape[1] != self.output_emb_width:
            raise ValueError(f"{type(self).__name__} expects x [B, {self.output_emb_width}, T], got {list(x.shape)}")
        for level in reversed(range(self.levels)):
            x = self.level_blocks[level](x)
            if level != 0 and all_levels:
                x = x + xs[level - 1]
        return self.out(x)
