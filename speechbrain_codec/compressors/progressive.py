"""Progressive compression (FocalCodec-S): grow a trained codec to half its frame rate.

Each stage appends one 2x down-sampling layer at the end of the compressor and inserts one 2x
up-sampling layer at the start of the decompressor (50 -> 25 -> 12.5 Hz). The new pair, together
with the compressor's ``out_proj`` and the decompressor's ``in_proj`` that now read from / feed
it, trains at a higher learning rate than the inherited layers (dual learning rate).
"""

from __future__ import annotations

from torch import nn

from .focalnet import FocalCompressor, FocalDecompressor

__all__ = ["grow_codec", "inherit_weights", "progressive_param_groups"]


def grow_codec(codec: nn.Module, factor: int = 2) -> list[nn.Module]:
    """Halve (for ``factor=2``) the token rate of a codec with Focal compressor/decompressor.

    Returns the modules that count as new for :func:`progressive_param_groups`: the new layer
    pair, ``compressor.out_proj`` and ``decompressor.in_proj``. ``codec.hop_length`` is updated.

    Example
    -------
    >>> import torch
    >>> from speechbrain_codec.compressors import FocalCompressor, FocalDecompressor
    >>> class Tiny(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.compressor = FocalCompressor(8, 4, [8], [1], causal=True)
    ...         self.decompressor = FocalDecompressor(4, 8, [8], [1], causal=True)
    ...         self.hop_length = 320
    >>> codec = Tiny()
    >>> new = grow_codec(codec)
    >>> codec.compressor.downsample, codec.decompressor.upsample, codec.hop_length
    (2, 2, 640)
    >>> codec.decompressor(codec.compressor(torch.randn(1, 8, 8))).shape
    torch.Size([1, 8, 8])
    """
    comp, decomp = codec.compressor, codec.decompressor
    if not isinstance(comp, FocalCompressor) or not isinstance(decomp, FocalDecompressor):
        raise TypeError("grow_codec needs a FocalCompressor and a FocalDecompressor")
    new_down = comp.grow(factor)
    new_up = decomp.grow(factor)
    if hasattr(codec, "hop_length"):
        codec.hop_length *= factor
    return [new_down, new_up, comp.out_proj, decomp.in_proj]


def progressive_param_groups(
    codec: nn.Module, new_modules: list[nn.Module], lr_new: float = 5e-4, lr_old: float = 5e-5
) -> list[dict]:
    """Optimizer parameter groups: ``new_modules`` at ``lr_new``, every other trainable codec
    parameter at ``lr_old`` (group names ``"new"`` and ``"old"``).

    Example
    -------
    >>> import torch
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    >>> groups = progressive_param_groups(net, [net[1]], 1e-3, 1e-4)
    >>> [(g["name"], g["lr"], len(g["params"])) for g in groups]
    [('new', 0.001, 2), ('old', 0.0001, 2)]
    >>> opt = torch.optim.AdamW(groups)
    """
    new_ids = {id(p) for m in new_modules for p in m.parameters()}
    new = [p for p in codec.parameters() if id(p) in new_ids and p.requires_grad]
    old = [p for p in codec.parameters() if id(p) not in new_ids and p.requires_grad]
    return [{"name": "new", "params": new, "lr": lr_new}, {"name": "old", "params": old, "lr": lr_old}]


def inherit_weights(codec: nn.Module, base_state: dict, new_layers: int = 1) -> list[nn.Module]:
    """Load a base checkpoint into ``codec`` built with ``new_layers`` more Focal layer pairs.

    ``codec`` is the grown architecture written as a configuration (compressor
    ``downscale_factors`` and ``hidden_dims`` extended at the end, decompressor ones at the
    start), the form a recipe exports; the base decompressor's layer ``i`` becomes layer
    ``i + new_layers``. Every inherited tensor must be present and fit; only the new layers may
    stay unset. Returns the "new" modules for :func:`progressive_param_groups`.
    """
    import re

    from ..utils import load_state_checked

    state = {}
    for key, value in base_state.items():
        m = re.fullmatch(r"decompressor\.layers\.(\d+)\.(.*)", key)
        state[f"decompressor.layers.{int(m[1]) + new_layers}.{m[2]}" if m else key] = value
    comp, decomp = codec.compressor, codec.decompressor
    n_comp = len(comp.layers)
    new = [*comp.layers[n_comp - new_layers :], *decomp.layers[:new_layers], comp.out_proj, decomp.in_proj]
    new_keys = tuple(f"compressor.layers.{i}." for i in range(n_comp - new_layers, n_comp))
    new_keys += tuple(f"decompressor.layers.{i}." for i in range(new_layers))
    load_state_checked(codec, state, "the base checkpoint", f"The grown codec adds {new_layers} layer pair(s)", new_keys)
    return new
