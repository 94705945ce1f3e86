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

__all__ = ["StreamCache", "pad_left"]

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
