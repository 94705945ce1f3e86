"""Streaming support for causal lobes: left contexts carried between chunks.

A causal lobe takes an optional ``cache`` dict in ``forward``. Offline (``cache=None``) the lobe
pads its input on the left; when streaming, the same dict is passed to every call and each
module keeps under its own key what it needs from the past (the last input frames of a
convolution, the keys and values of an attention layer). The first chunk of a stream is padded
exactly as the offline input is, so a stream of whole chunks reproduces the offline output.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["StreamCache", "pad_left", "stream_conv1d"]

StreamCache = dict


def pad_left(
    x: torch.Tensor,
    pad: int,
    owner: nn.Module,
    cache: StreamCache | None = None,
    mode: str = "replicate",
) -> torch.Tensor:
    """Give ``x [B, C, T]`` ``pad`` frames of left context.

    Offline, and on the first chunk of a stream, the context is padding (``mode`` as in
    :func:`torch.nn.functional.pad`: ``"replicate"`` or ``"constant"`` for zeros); later chunks
    get the last ``pad`` input frames of the previous chunk, stored in ``cache[owner]``.

    Example
    -------
    >>> conv = nn.Conv1d(1, 1, 3)
    >>> x = torch.arange(6.0).view(1, 1, 6)
    >>> cache = {}
    >>> a = pad_left(x[..., :3], 2, conv, cache)
    >>> b = pad_left(x[..., 3:], 2, conv, cache)
    >>> a.tolist(), b.tolist()
    ([[[0.0, 0.0, 0.0, 1.0, 2.0]]], [[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    """
    if pad <= 0:
        return x
    prev = None if cache is None else cache.get(owner)
    if prev is None:
        x = nn.functional.pad(x, (pad, 0), mode=mode)
    else:
        x = torch.cat([prev, x], dim=-1)
    if cache is not None:
        cache[owner] = x[..., -pad:]
    return x


#: output frames up to which :func:`stream_conv1d` computes by matrix products
SMALL_FRAMES = 16


def stream_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an unpadded, stride-1, undilated ``conv`` and ``x [B, C, T]`` already
    left-padded: for a streaming chunk (at most :data:`SMALL_FRAMES` output frames) the
    convolution is computed as matrix products over the unfolded input frames (the same sums in
    another order) where the convolution kernels are slow on a few frames (grouped, as WavLM's
    128-tap positional convolution, ~10x; dense, in bfloat16); otherwise (depthwise, longer
    inputs) it calls ``conv``.

    Example
    -------
    >>> x = torch.randn(2, 8, 7)
    >>> all(torch.allclose(stream_conv1d(conv, x), conv(x), atol=1e-6)
    ...     for conv in (nn.Conv1d(8, 8, 5, groups=4), nn.Conv1d(8, 6, 3), nn.Conv1d(8, 8, 3, groups=8)))
    True
    """
    k = conv.kernel_size[0]
    n_out = x.shape[-1] - k + 1
    B, C = x.shape[:2]
    w, g = conv.weight, conv.groups
    out_c = w.shape[0]
    if (n_out > SMALL_FRAMES or n_out < 1 or conv.stride[0] != 1 or conv.dilation[0] != 1
            or conv.padding not in ((0,), "valid") or conv.padding_mode != "zeros" or g == C):
        return conv(x)  # depthwise kernels are quick on a few frames too
    frames = x.unfold(-1, k, 1)  # [B, C, T', k]
    if g == 1:
        y = frames.transpose(1, 2).reshape(B * n_out, C * k) @ w.reshape(out_c, C * k).T  # [B T', out]
        y = y.reshape(B, n_out, out_c).transpose(1, 2)
    else:
        cg, og = C // g, out_c // g
        y = torch.einsum("bgctk,gock->bgot", frames.reshape(B, g, cg, n_out, k), w.reshape(g, og, cg, k))
        y = y.reshape(B, out_c, n_out)
    return y if conv.bias is None else y + conv.bias[:, None]
