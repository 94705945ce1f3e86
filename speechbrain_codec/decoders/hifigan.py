"""HiFi-GAN generator (Kong et al., 2020), V1 layout, as used by speech-resynthesis and the
LM-loss codec (its spec, §2.4).

Parameter names follow the reference implementations (``conv_pre``, ``ups.{i}``,
``resblocks.{j}.convs1.{k}`` / ``convs2.{k}`` (type "1") or ``convs.{k}`` (type "2"),
``conv_post``), and every convolution is weight-normalised with the legacy
``torch.nn.utils.weight_norm`` parameter names ``weight_g`` / ``weight_v`` (``dim=0``), so the
reference's state dicts load unchanged. The weight norm is implemented here
(:class:`WeightNormConv1d`, :class:`WeightNormConvTranspose1d`: ``weight = g * v / ||v||``,
recomputed at every call), which avoids the deprecated legacy API and needs no state-dict
renaming.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .base import Decoder

__all__ = [
    "HiFiGANGenerator",
    "HiFiGANResBlock1",
    "HiFiGANResBlock2",
    "WeightNormConv1d",
    "WeightNormConvTranspose1d",
    "get_padding",
]

LRELU_SLOPE = 0.1


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """"Same" padding of a stride-1 convolution: ``(kernel_size - 1) * dilation // 2``.

    Example
    -------
    >>> get_padding(3), get_padding(7, 3), get_padding(11, 5)
    (1, 9, 25)
    """
    return (kernel_size * dilation - dilation) // 2


class _WeightNormConv(nn.Module):
    """Shared part of the weight-normalised convolutions: parameters ``weight_g``
    (``[weight.shape[0], 1, 1]``), ``weight_v`` (the direction, shaped as the convolution's
    weight) and ``bias``; ``weight = g * v / ||v||`` with the norm over all dims but 0
    (``torch.nn.utils.weight_norm(module, dim=0)``)."""

    transposed: bool = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        shape = ((in_channels, out_channels, kernel_size) if self.transposed
                 else (out_channels, in_channels, kernel_size))
        self.weight_g = nn.Parameter(torch.empty(shape[0], 1, 1))
        self.weight_v = nn.Parameter(torch.empty(*shape))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, std: float | None = None) -> None:
        """PyTorch's default convolution init of the effective weight (``std=None``) or
        ``weight ~ N(0, std)``; then ``g = ||v||`` so that ``weight == v``. The bias gets
        PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` either way."""
        v = self.weight_v
        if std is None:
            nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        else:
            v.normal_(0.0, std)
        self.weight_g.copy_(torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True))
        if self.bias is not None:
            fan_in = v.shape[1] * v.shape[2]
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight ``g * v / ||v||``."""
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}"
        )


class WeightNormConv1d(_WeightNormConv):
    """Weight-normalised ``Conv1d``; ``x [B, C_in, T] -> [B, C_out, T']``.

    Example
    -------
    >>> conv = WeightNormConv1d(4, 6, 3, padding=1)
    >>> sorted(name for name, _ in conv.named_parameters())
    ['bias', 'weight_g', 'weight_v']
    >>> conv(torch.randn(2, 4, 10)).shape
    torch.Size([2, 6, 10])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class WeightNormConvTranspose1d(_WeightNormConv):
    """Weight-normalised ``ConvTranspose1d`` (weight ``[C_in, C_out, k]``, ``g`` per input
    channel, as ``weight_norm(ConvTranspose1d, dim=0)``).

    Example
    -------
    >>> up = WeightNormConvTranspose1d(8, 4, 8, stride=4, padding=2)
    >>> up.weight_g.shape, up(torch.randn(1, 8, 5)).shape
    (torch.Size([8, 1, 1]), torch.Size([1, 4, 20]))
    """

    transposed = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding, 0, 1, self.dilation)


class HiFiGANResBlock1(nn.Module):
    """HiFi-GAN residual block type "1": for each dilation d, ``x += c2(lrelu(c1_d(lrelu(x))))``
    with ``c1_d`` dilated by d and ``c2`` undilated (LeakyReLU slope 0.1).

    Example
    -------
    >>> block = HiFiGANResBlock1(8, 3, (1, 3, 5))
    >>> block(torch.randn(1, 8, 20)).shape
    torch.Size([1, 8, 20])
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5),
                 init_std: float | None = 0.01) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, padding=get_padding(kernel_size, d), dilation=d)
            for d in dilation
        )
        self.convs2 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, padding=get_padding(kernel_size, 1))
            for _ in dilation
        )
        for conv in (*self.convs1, *self.convs2):
            conv.reset_parameters(init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = xt + x
        return x


class HiFiGANResBlock2(nn.Module):
    """HiFi-GAN residual block type "2": for each dilation d, ``x += c_d(lrelu(x))``.

    As in the reference, only the first two dilations are used (its ``ResBlock2`` has two
    convolutions whatever the configured dilation list).

    Example
    -------
    >>> block = HiFiGANResBlock2(8, 3, (1, 3))
    >>> len(block.convs), block(torch.randn(1, 8, 20)).shape
    (2, torch.Size([1, 8, 20]))
    """

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3),
                 init_std: float | None = 0.01) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, padding=get_padding(kernel_size, d), dilation=d)
            for d in list(dilation)[:2]
        )
        for conv in self.convs:
            conv.reset_parameters(init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = c(F.leaky_relu(x, LRELU_SLOPE)) + x
        return x


class HiFiGANGenerator(Decoder):
    """HiFi-GAN generator: ``conv_pre`` (k7), per stage LeakyReLU(0.1) + transposed-conv
    upsampling + the average of the multi-receptive-field residual blocks, then
    LeakyReLU(0.01), ``conv_post`` (k7, 1 channel) and tanh. Channels halve at every stage.

    Defaults: the LM-loss codec's decoder (spec §2.4; rates 5·4·4·4·2 = 640 samples per
    frame, 25 Hz frames -> 16 kHz).

    Parameters
    ----------
    in_channels : int
        Input frame size C (``conv_pre``'s input channels; the LM-loss codec: 384).
    upsample_rates, upsample_kernel_sizes : sequence of int
        Per-stage stride and kernel of the transposed convolutions (padding ``(k - u) // 2``).
    upsample_initial_channel : int
        ``conv_pre``'s output channels; stage i outputs ``upsample_initial_channel // 2**(i+1)``.
    resblock : str
        ``"1"`` or ``"2"`` (HiFi-GAN's residual block types).
    resblock_kernel_sizes, resblock_dilation_sizes : sequences
        One residual block per (kernel, dilations) pair in every stage.
    sample_rate : int
        Output sample rate.
    init_std : float or None
        Initial ``weight ~ N(0, init_std)`` of the up-convs, residual-block convs and
        ``conv_post`` (HiFi-GAN's ``init_weights``; the spec's 0.01). ``conv_pre`` keeps
        PyTorch's default. ``None``: PyTorch's default for all, which is what the reference
        code actually ends up with (it applies ``init_weights`` *after* the legacy weight norm,
        to the recomputed ``weight`` attribute, which the next forward overwrites from the
        untouched ``weight_g`` / ``weight_v``).

    Example
    -------
    >>> gen = HiFiGANGenerator(16, upsample_initial_channel=32)
    >>> gen.hop_length, gen.sample_rate
    (640, 16000)
    >>> gen(torch.randn(2, 3, 16)).shape
    torch.Size([2, 1920])
    >>> gen.channels_first(torch.randn(2, 16, 3)).shape
    torch.Size([2, 1, 1920])
    """

    def __init__(
        self,
        in_channels: int,
        upsample_rates: Sequence[int] = (5, 4, 4, 4, 2),
        upsample_kernel_sizes: Sequence[int] = (11, 8, 8, 8, 4),
        upsample_initial_channel: int = 512,
        resblock: str = "1",
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5),) * 3,
        sample_rate: int = 16000,
        init_std: float | None = 0.01,
    ) -> None:
        super().__init__()
        resblock = str(resblock)
        if resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {resblock!r}")
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        for u, k in zip(upsample_rates, upsample_kernel_sizes):
            if (k - u) % 2:
                raise ValueError(f"upsample kernel - rate must be even (exact x{u} output), got k={k}, u={u}")
        if upsample_initial_channel % 2 ** len(upsample_rates):
            raise ValueError(
                f"upsample_initial_channel {upsample_initial_channel} is not divisible by "
                f"2**{len(upsample_rates)}"
            )
        self.in_channels = in_channels
        self.hop_length = math.prod(upsample_rates)
        self.sample_rate = sample_rate
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)

        self.conv_pre = WeightNormConv1d(in_channels, upsample_initial_channel, 7, padding=3)
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            up = WeightNormConvTranspose1d(
                upsample_initial_channel // 2**i, upsample_initial_channel // 2 ** (i + 1), k,
                stride=u, padding=(k - u) // 2,
            )
            up.reset_parameters(init_std)
            self.ups.append(up)
        block_cls = HiFiGANResBlock1 if resblock == "1" else HiFiGANResBlock2
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i in range(self.num_upsamples):
            ch = upsample_initial_channel // 2 ** (i + 1)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block_cls(ch, k, tuple(d), init_std=init_std))
        self.conv_post = WeightNormConv1d(ch, 1, 7, padding=3)
        self.conv_post.reset_parameters(init_std)

    def channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """The reference's call: ``x [B, C, T] -> sig [B, 1, T * hop_length]``."""
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects x [B, {self.in_channels}, T], got {list(x.shape)}")
        x = self.conv_pre(x.to(next(self.conv_pre.parameters()).dtype))  # bf16 inference: the weights' dtype
        for i in range(self.num_upsamples):
            x = self.ups[i](F.leaky_relu(x, LRELU_SLOPE))
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # slope 0.01 (PyTorch's default), as the reference
        return torch.tanh(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C] -> sig [B, T * hop_length]``."""
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects x [B, T, {self.in_channels}], got {list(x.shape)}")
        return self.channels_first(x.transpose(1, 2)).squeeze(1)
