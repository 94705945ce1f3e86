"""One-level Jukebox VQ-VAE (encoder, EMA vector quantizer, decoder): the LM-loss codec's
HuBERT-feature and F0 quantizers (its spec, §2.3).

Module names follow the reference (``encoder.level_blocks.0...``, ``vq.level_blocks.0``,
``decoder.level_blocks.0...``, ``decoder.out``). The quantizer is our
:class:`~speechbrain_codec.quantizers.vq.EMAVectorQuantizer` (buffers ``codebook``,
``ema_count``, ``ema_sum``, ``initialized``); a load-state-dict pre-hook maps the reference's
only codebook buffer ``vq.level_blocks.0.k`` onto them (``codebook = ema_sum = k``,
``ema_count = 1``, ``initialized = True``, as the reference's ``restore_k``), so a reference
state dict loads with ``strict=True``, and so do our own full state dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..nn.jukebox import JukeboxDecoder, JukeboxEncoder
from .base import QuantizerOutput
from .vq import EMAVectorQuantizer

__all__ = ["VQVAE", "VQBottleneck", "reference_codebook_pre_hook"]


def reference_codebook_pre_hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict,
                                strict: bool, missing_keys: list, unexpected_keys: list,
                                error_msgs: list) -> None:
    """Load-state-dict pre-hook of an :class:`EMAVectorQuantizer`: a reference (Jukebox)
    state dict's ``{prefix}k`` becomes ``codebook`` and ``ema_sum`` (count 1, initialised).

    Applies only when ``{prefix}k`` is there and ``{prefix}codebook`` is not; otherwise the
    state dict is left alone (so ``strict`` reports a stray ``k``).
    """
    key = prefix + "k"
    if key not in state_dict or prefix + "codebook" in state_dict:
        return
    k = state_dict.pop(key)
    state_dict[prefix + "codebook"] = k
    state_dict[prefix + "ema_sum"] = k.clone()
    state_dict[prefix + "ema_count"] = torch.ones(k.shape[0], dtype=k.dtype, device=k.device)
    state_dict[prefix + "initialized"] = torch.tensor(True, device=k.device)


class VQBottleneck(nn.Module):
    """Container with the reference's name ``level_blocks`` for the per-level quantizers
    (one level here). ``forward(lats [B, T, D]) -> QuantizerOutput`` of level 0."""

    def __init__(self, quantizer: EMAVectorQuantizer) -> None:
        super().__init__()
        self.level_blocks = nn.ModuleList([quantizer])
        quantizer.register_load_state_dict_pre_hook(reference_codebook_pre_hook)

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        return self.level_blocks[0](lats)


def _as_levels(value: int | Sequence) -> list:
    return [value] if isinstance(value, int) else list(value)


class VQVAE(nn.Module):
    """Jukebox VQ-VAE with one level: ``x [B, T, C] -> lats [B, T / r, D] -> toks -> recon [B, T, C]``
    with ``r = prod(stride ** down)`` (the LM-loss codec: ÷2 for HuBERT features, ÷16 for F0).

    Constructor arguments mirror the reference's JSON (``*_encoder_params`` / ``*_vq_params``);
    :meth:`from_reference_config` builds from those dicts.

    Parameters
    ----------
    input_emb_width : int
        Input channels C (768 HuBERT features, 1 for F0).
    output_emb_width : int
        Latent / code size D.
    downs_t, strides_t : sequence of int (one entry, one level)
        Number of down blocks and their stride.
    width, depth, m_conv, dilation_growth_rate : int, int, float, int
        Convolution stack (spec: 32, 4, 1.0, 3).
    l_bins : int
        Codebook size K.
    mu : float
        EMA decay.
    levels : int
        Must be 1 (the LM-loss codec; the quantizer is one :class:`EMAVectorQuantizer`).
    dilation_cycle, zero_out, res_scale, reverse_decoder_dilation
        Jukebox options, off in the LM-loss codec.
    **vq_kwargs
        More :class:`EMAVectorQuantizer` options (``dead_code_threshold`` 1.0, ``init``
        "random", ``restart_stats``; our defaults unless given).

    Example
    -------
    >>> vqvae = VQVAE(1, 16, downs_t=[4], strides_t=[2], width=8, depth=2, l_bins=8)
    >>> recon, toks, qlats, losses = vqvae(torch.randn(2, 64, 1))
    >>> recon.shape, toks.shape, qlats.shape, sorted(losses)
    (torch.Size([2, 64, 1]), torch.Size([2, 4, 1]), torch.Size([2, 4, 16]), ['commit'])
    >>> vqvae.downsample_factor, vqvae.bits_per_frame
    (16, 3.0)
    """

    def __init__(
        self,
        input_emb_width: int,
        output_emb_width: int = 128,
        downs_t: int | Sequence[int] = (1,),
        strides_t: int | Sequence[int] = (2,),
        width: int = 32,
        depth: int = 4,
        m_conv: float = 1.0,
        dilation_growth_rate: int = 3,
        l_bins: int = 32,
        mu: float = 0.99,
        levels: int = 1,
        dilation_cycle: int | None = None,
        zero_out: bool = False,
        res_scale: bool = False,
        reverse_decoder_dilation: bool = False,
        **vq_kwargs: Any,
    ) -> None:
        super().__init__()
        downs, strides = _as_levels(downs_t), _as_levels(strides_t)
        if levels != 1 or len(downs) != 1 or len(strides) != 1:
            raise ValueError(f"VQVAE has one level; got levels={levels}, downs_t={downs_t}, strides_t={strides_t}")
        block = dict(width=width, depth=depth, m_conv=m_conv, dilation_growth_rate=dilation_growth_rate,
                     dilation_cycle=dilation_cycle, zero_out=zero_out, res_scale=res_scale)
        self.input_emb_width, self.output_emb_width = input_emb_width, output_emb_width
        self.encoder = JukeboxEncoder(input_emb_width, output_emb_width, 1, downs, strides, **block)
        self.vq = VQBottleneck(EMAVectorQuantizer(l_bins, output_emb_width, decay=mu, **vq_kwargs))
        self.decoder = JukeboxDecoder(input_emb_width, output_emb_width, 1, downs, strides,
                                      reverse_decoder_dilation=reverse_decoder_dilation, **block)

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_reference_config(cls, config: Mapping[str, Any], prefix: str | None = None,
                              **vq_kwargs: Any) -> VQVAE:
        """Build from a reference quantizer config: a dict with ``{prefix}_encoder_params``,
        ``{prefix}_vq_params`` and optionally ``{prefix}_decoder_params`` (``prefix`` "code" for
        the HuBERT quantizer, "f0" for F0; found from the keys when not given).

        Example
        -------
        >>> enc = dict(input_emb_width=1, output_emb_width=128, levels=1, downs_t=[4], strides_t=[2],
        ...            width=32, depth=4, m_conv=1.0, dilation_growth_rate=3)
        >>> cfg = {"f0_vq_params": dict(l_bins=32, emb_width=128, mu=0.99, levels=1),
        ...        "f0_encoder_params": enc, "f0_decoder_params": enc}
        >>> VQVAE.from_reference_config(cfg).downsample_factor
        16
        """
        if prefix is None:
            found = [k[: -len("_encoder_params")] for k in config if k.endswith("_encoder_params")]
            if len(found) != 1:
                raise ValueError(f"cannot tell the quantizer's key prefix from {sorted(config)}")
            prefix = found[0]
        enc = dict(config[f"{prefix}_encoder_params"])
        vq = dict(config[f"{prefix}_vq_params"])
        dec = config.get(f"{prefix}_decoder_params")
        if dec is not None and dict(dec) != enc:
            raise ValueError(f"{prefix}_decoder_params differ from {prefix}_encoder_params; not supported")
        if vq.get("emb_width", enc["output_emb_width"]) != enc["output_emb_width"]:
            raise ValueError(f"vq emb_width {vq['emb_width']} != encoder output_emb_width {enc['output_emb_width']}")
        if vq.get("levels", 1) != enc.get("levels", 1):
            raise ValueError("vq and encoder levels differ")
        return cls(**enc, l_bins=vq["l_bins"], mu=vq.get("mu", 0.99), **vq_kwargs)

    # ---------------------------------------------------------------- properties
    @property
    def quantizer(self) -> EMAVectorQuantizer:
        """The level-0 quantizer (``vq.level_blocks[0]``)."""
        return self.vq.level_blocks[0]

    @property
    def downsample_factor(self) -> int:
        """Input frames per latent frame."""
        return self.encoder.downsample_factors[-1]

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_sizes[0]

    @property
    def bits_per_frame(self) -> float:
        return self.quantizer.bits_per_frame

    def reset_codebook(self) -> None:
        """Mark the codebook uninitialised: the next training forward re-initialises it from
        that batch, as the reference does at the start of every run (spec §6.2, item 2)."""
        self.quantizer.initialized.fill_(False)

    # ---------------------------------------------------------------- interface
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C] -> lats [B, T / downsample_factor, D]`` (the encoder's output)."""
        if x.dim() != 3 or x.shape[-1] != self.input_emb_width:
            raise ValueError(f"{type(self).__name__} expects x [B, T, {self.input_emb_width}], got {list(x.shape)}")
        return self.encoder(x.transpose(1, 2))[-1].transpose(1, 2)

    def quantize(self, lats: torch.Tensor) -> QuantizerOutput:
        """``lats [B, T', D] -> QuantizerOutput(qlats [B, T', D], toks [B, T', 1], {"commit"})``
        (training mode: EMA update, straight-through; eval: nearest code, detached)."""
        return self.vq(lats)

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        """``toks [B, T', 1] -> qlats [B, T', D]`` (codebook vectors)."""
        return self.quantizer.toks_to_qlats(toks)

    def decode(self, qlats: torch.Tensor) -> torch.Tensor:
        """``qlats [B, T', D] -> recon [B, T' * downsample_factor, C]``."""
        if qlats.dim() != 3 or qlats.shape[-1] != self.output_emb_width:
            raise ValueError(
                f"{type(self).__name__} expects qlats [B, T, {self.output_emb_width}], got {list(qlats.shape)}")
        return self.decoder([qlats.transpose(1, 2)]).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``x [B, T, C] -> (recon [B, T, C], toks [B, T', 1], qlats [B, T', D], {"commit"})``."""
        out = self.quantize(self.encode(x))
        return self.decode(out.qlats), out.toks, out.qlats, out.losses
