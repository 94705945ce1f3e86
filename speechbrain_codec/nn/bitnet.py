"""BitNet b1.58 ternary layers (SIREN P2, siren.md §2.5 "BitNet layers"), as an option.

* Weights ternarised per tensor: ``scale = mean |W|``, ``W_q = clamp(round(W / scale), -1, 1)
  * scale``; activations quantised to 8 bits per tensor (absmax: ``round(x * 127 / max |x|)``,
  clamped to [-128, 127], rescaled); straight-through estimators for both.
* An RMSNorm on the input inside every :class:`BitLinear` / :class:`BitConv1d` (over the
  features; over the channels of a conv).
* :func:`bitnet_convert` swaps every ``nn.Linear`` and every non-depthwise ``nn.Conv1d`` of a
  module for its ternary twin (same shapes; the float weights are kept and trained), except the
  modules named in ``exclude`` (SIREN keeps depthwise convs and final projections in full
  precision).

This covers P2's ternary layers; P2's other changes (BitSnakeBeta, RMSNorm instead of LayerNorm,
3 Conformer blocks, cross-modal fusion, its vocoder's phase head) are not reproduced.
"""

from __future__ import annotations

import fnmatch

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BitConv1d", "BitLinear", "bitnet_convert", "quantize_activations", "ternarize"]


def ternarize(w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``w`` -> ``clamp(round(w / s), -1, 1) * s`` with ``s = mean |w|``, straight-through.

    Example
    -------
    >>> ternarize(torch.tensor([0.1, -2.0, 0.9, 0.0])).tolist()
    [0.0, -0.75, 0.75, 0.0]
    """
    scale = w.abs().mean().clamp(min=eps)
    q = (w / scale).round().clamp(-1, 1) * scale
    return w + (q - w).detach()


def quantize_activations(x: torch.Tensor, bits: int = 8, eps: float = 1e-5) -> torch.Tensor:
    """Per-tensor absmax quantization to ``bits`` bits, straight-through."""
    qmax = 2 ** (bits - 1) - 1
    scale = qmax / x.abs().max().clamp(min=eps)
    q = (x * scale).round().clamp(-qmax - 1, qmax) / scale
    return x + (q - x).detach()


def _rms_norm(x: torch.Tensor, dim: int, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim, keepdim=True) + eps) * weight


class BitLinear(nn.Linear):
    """``nn.Linear`` with an input RMSNorm, 8-bit activations and ternary weights.

    Example
    -------
    >>> layer = BitLinear(8, 4)
    >>> layer(torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 4])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.norm_weight = nn.Parameter(torch.ones(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_activations(_rms_norm(x, -1, self.norm_weight))
        return F.linear(x, ternarize(self.weight), self.bias)


class BitConv1d(nn.Conv1d):
    """``nn.Conv1d`` (``[B, C, T]``) with an input RMSNorm over channels, 8-bit activations and
    ternary weights."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm_weight = nn.Parameter(torch.ones(self.in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = quantize_activations(_rms_norm(x, 1, self.norm_weight[:, None]))
        return self._conv_forward(x, ternarize(self.weight), self.bias)


def bitnet_convert(module: nn.Module, exclude: tuple[str, ...] = ()) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` by :class:`BitLinear` and every ``nn.Conv1d`` with
    ``groups == 1`` by :class:`BitConv1d`, except sub-modules whose dotted name matches a pattern
    of ``exclude`` (``fnmatch``) and the layers inside ``nn.MultiheadAttention`` (whose output
    projection PyTorch calls through its functional path). Returns ``module``.

    Example
    -------
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(4, 4, 3, groups=4), nn.Linear(4, 2))
    >>> [type(m).__name__ for m in bitnet_convert(net, exclude=("2",))]
    ['BitLinear', 'Conv1d', 'Linear']
    """
    def excluded(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in exclude)

    for name, child in list(module.named_modules()):
        if isinstance(child, nn.MultiheadAttention):
            continue
        for attr, sub in list(child.named_children()):
            full = f"{name}.{attr}" if name else attr
            if excluded(full) or isinstance(child, nn.MultiheadAttention):
                continue
            new = None
            if type(sub) is nn.Linear:
                new = BitLinear(sub.in_features, sub.out_features, sub.bias is not None)
            elif type(sub) is nn.Conv1d and sub.groups == 1:
                new = BitConv1d(sub.in_channels, sub.out_channels, sub.kernel_size, sub.stride, sub.padding,
                                sub.dilation, 1, sub.bias is not None, sub.padding_mode)
            if new is not None:
                new.load_state_dict(sub.state_dict(), strict=False)
                setattr(child, attr, new)
    return module
