"""The LM-loss codec's decoder model (Yi & Kim, ICASSP 2026; spec ``lmloss.md`` §2): two
VQ-VAE token streams (HuBERT layer-6 features ÷2 -> 25 Hz, F0 ÷16 -> 12.5 Hz), their
embeddings and a learned speaker vector, and a HiFi-GAN generator (×640 -> 16 kHz).

:class:`LMLossDecoder` has the reference ``LJSpeechDecoder``'s state-dict keys: the
generator's parameters at the top level (``conv_pre``, ``ups``, ``resblocks``,
``conv_post``), ``spkr``, ``f0_quantizer``, ``f0_dict``, ``hubert_quantizer``, ``hubert_dict``.
Our interfaces are channels-last; the reference's tensors are channels-first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .decoders.hifigan import HiFiGANGenerator
from .quantizers.vqvae import VQVAE

__all__ = ["LMLossDecoder", "LMLossStreams", "load_reference_checkpoint"]

FEEDS = ("dict", "codes")

#: Top-level names of the reference decoder's state dict.
REFERENCE_ROOTS = ("conv_pre.", "ups.", "resblocks.", "conv_post.", "spkr", "f0_quantizer.", "f0_dict.",
                   "hubert_quantizer.", "hubert_dict.")


class LMLossStreams(NamedTuple):
    """The two token streams of :meth:`LMLossDecoder.quantize_streams`.

    Attributes
    ----------
    content_toks : torch.Tensor
        ``[B, T25]`` HuBERT-stream tokens.
    content_qlats : torch.Tensor
        ``[B, T25, D]`` the HuBERT VQ's code vectors (straight-through when the quantizer is
        in training mode; detached otherwise).
    f0_toks : torch.Tensor
        ``[B, T12.5]`` F0 tokens.
    losses : dict
        ``commit``: the HuBERT VQ's commitment loss (phase 3's 1.0 · commitment; no gradient
        in ``feed="dict"``).
    """

    content_toks: torch.Tensor
    content_qlats: torch.Tensor
    f0_toks: torch.Tensor
    losses: dict[str, torch.Tensor]


def _default_quantizer(input_emb_width: int, downs: int, l_bins: int, embedding_dim: int) -> VQVAE:
    return VQVAE(input_emb_width, embedding_dim, downs_t=[downs], strides_t=[2], width=32, depth=4,
                 m_conv=1.0, dilation_growth_rate=3, l_bins=l_bins, mu=0.99)


class LMLossDecoder(HiFiGANGenerator):
    """HuBERT-feature and F0 VQ-VAE streams + speaker vector -> HiFi-GAN -> 16 kHz.

    Decoder input at 25 Hz (spec §2.5): ``[HuBERT stream 128 ; F0 embedding 128 (each 12.5 Hz
    frame repeated ×2) ; spkr 128]`` = 384 channels, where the HuBERT stream is

    * ``feed="dict"`` (phase 2, and the reference's inference model ``LJSpeechDecoder``):
      ``hubert_dict[content tokens]``; both quantizers frozen: they always run in eval mode
      and their outputs are detached (computed without gradient);
    * ``feed="codes"`` (phase 3): the HuBERT VQ's code vectors (straight-through output; the
      HuBERT quantizer follows the model's train/eval mode, so in training its codebook keeps
      its EMA updates and its encoder gets gradients). ``hubert_dict`` is kept but unused.
      The F0 quantizer stays frozen.

    Which parameters are trained is the trainer's business (spec §3.7). Our quantizers save
    their "initialised" flag, so, unlike the reference, phase 3 does not re-initialise the
    HuBERT codebook; call ``hubert_quantizer.reset_codebook()`` to reproduce that (§6.2).

    ``hop_length`` (640) is counted in decoder-input (25 Hz) frames: one 1280-sample chunk per
    F0 token, per 2 content tokens, per 4 HuBERT (50 Hz) frames, per 16 F0 (200 Hz) frames.

    Parameters
    ----------
    content_codes, f0_codes : int
        Codebook sizes (2_5: 32, 2_6: 64; F0: 32). Used for the default quantizers and the
        embedding tables.
    embedding_dim : int
        Size of each of the three decoder-input parts (128).
    feed : str
        ``"dict"`` or ``"codes"`` (see above); can be changed later (``model.feed = "codes"``).
    hubert_quantizer, f0_quantizer : VQVAE, optional
        The quantizers; default: the spec's (768 -> ÷2, 1 -> ÷16, width 32, depth 4).
    hubert_dim : int
        HuBERT feature size (768) for the default quantizer.
    **generator_kwargs
        :class:`~speechbrain_codec.decoders.hifigan.HiFiGANGenerator` arguments
        (``upsample_initial_channel`` 512, ...); ``in_channels`` is ``3 * embedding_dim``.

    Example
    -------
    >>> model = LMLossDecoder(upsample_initial_channel=32).eval()
    >>> feats, f0 = torch.randn(1, 8, 768), torch.randn(1, 32)  # 2 F0 tokens' worth
    >>> content, f0_toks, losses = model.encode(feats, f0)
    >>> content.shape, f0_toks.shape, model.decoder_input(content, f0_toks).shape
    (torch.Size([1, 4]), torch.Size([1, 2]), torch.Size([1, 4, 384]))
    >>> sig = model(feats, f0)
    >>> sig.shape, torch.equal(sig, model.decode(content, f0_toks))
    (torch.Size([1, 2560]), True)
    """

    def __init__(
        self,
        content_codes: int = 32,
        f0_codes: int = 32,
        embedding_dim: int = 128,
        feed: str = "dict",
        hubert_quantizer: VQVAE | None = None,
        f0_quantizer: VQVAE | None = None,
        hubert_dim: int = 768,
        **generator_kwargs: Any,
    ) -> None:
        if "in_channels" in generator_kwargs and generator_kwargs["in_channels"] != 3 * embedding_dim:
            raise ValueError(f"in_channels must be 3 * embedding_dim = {3 * embedding_dim}")
        generator_kwargs["in_channels"] = 3 * embedding_dim
        super().__init__(**generator_kwargs)
        self.embedding_dim = embedding_dim
        self.spkr = nn.Parameter(torch.randn(1, embedding_dim, 1))
        self.f0_quantizer = (f0_quantizer if f0_quantizer is not None
                             else _default_quantizer(1, 4, f0_codes, embedding_dim))
        self.f0_dict = nn.Embedding(self.f0_quantizer.codebook_size, embedding_dim)
        self.hubert_quantizer = (hubert_quantizer if hubert_quantizer is not None
                                 else _default_quantizer(hubert_dim, 1, content_codes, embedding_dim))
        self.hubert_dict = nn.Embedding(self.hubert_quantizer.codebook_size, embedding_dim)
        for q in (self.f0_quantizer, self.hubert_quantizer):
            if q.output_emb_width != embedding_dim:
                raise ValueError(f"quantizer latent size {q.output_emb_width} != embedding_dim {embedding_dim}")
        self._feed = "dict"
        self.feed = feed

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_reference_config(cls, config: Mapping[str, Any] | str | os.PathLike, feed: str = "dict",
                              **vq_kwargs: Any) -> LMLossDecoder:
        """Build from a reference inference / training config (a dict or a JSON file such as
        ``configs/inference/2_5.json``); file paths in it are ignored. ``vq_kwargs`` go to both
        quantizers' :class:`~speechbrain_codec.quantizers.vq.EMAVectorQuantizer`."""
        if not isinstance(config, Mapping):
            config = json.loads(Path(config).read_text())
        emb = int(config.get("embedding_dim", 128))
        if int(config.get("model_in_dim", 3 * emb)) != 3 * emb:
            raise ValueError(f"model_in_dim {config['model_in_dim']} != 3 * embedding_dim {3 * emb}")
        gen = dict(
            upsample_rates=tuple(config["upsample_rates"]),
            upsample_kernel_sizes=tuple(config["upsample_kernel_sizes"]),
            upsample_initial_channel=int(config["upsample_initial_channel"]),
            resblock=str(config.get("resblock", "1")),
            resblock_kernel_sizes=tuple(config["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(tuple(d) for d in config["resblock_dilation_sizes"]),
            sample_rate=int(config.get("sampling_rate", 16000)),
        )
        return cls(
            embedding_dim=emb,
            feed=feed,
            hubert_quantizer=VQVAE.from_reference_config(config["code_quantizer"], "code", **vq_kwargs),
            f0_quantizer=VQVAE.from_reference_config(config["f0_quantizer"], "f0", **vq_kwargs),
            **gen,
        )

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict with the reference's keys only: each quantizer's ``codebook`` as
        ``vq.level_blocks.0.k`` and no EMA statistics (what the reference saves)."""
        out = {}
        for key, value in self.state_dict().items():
            head, _, leaf = key.rpartition(".")
            if head.endswith("vq.level_blocks.0"):
                if leaf == "codebook":
                    out[f"{head}.k"] = value
                continue
            out[key] = value
        return out

    # ---------------------------------------------------------------- modes
    @property
    def feed(self) -> str:
        """``"dict"`` (token embeddings, frozen quantizers) or ``"codes"`` (code vectors)."""
        return self._feed

    @feed.setter
    def feed(self, value: str) -> None:
        if value not in FEEDS:
            raise ValueError(f"feed must be one of {FEEDS}, got {value!r}")
        self._feed = value
        self.train(self.training)

    def train(self, mode: bool = True) -> LMLossDecoder:
        """As ``nn.Module.train``, but the frozen quantizers stay in eval mode (F0 always, the
        HuBERT one with ``feed="dict"``)."""
        super().train(mode)
        self.f0_quantizer.eval()
        if self._feed == "dict":
            self.hubert_quantizer.eval()
        return self

    # ---------------------------------------------------------------- streams
    @staticmethod
    def _check_inputs(code_feats: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        if code_feats.dim() != 3:
            raise ValueError(f"code_feats must be [B, T50, C], got {list(code_feats.shape)}")
        if f0.dim() == 3 and f0.shape[-1] == 1:
            f0 = f0[..., 0]
        if f0.dim() != 2 or f0.shape[0] != code_feats.shape[0]:
            raise ValueError(f"f0 must be [B, T200] with B = {code_feats.shape[0]}, got {list(f0.shape)}")
        return f0

    def _frozen(self, quantizer: VQVAE, x: torch.Tensor):
        if quantizer.training:  # as the reference, whoever switched it to training mode
            quantizer.eval()
        with torch.no_grad():
            return quantizer.quantize(quantizer.encode(x))

    def quantize_streams(self, code_feats: torch.Tensor, f0: torch.Tensor) -> LMLossStreams:
        """Both token streams: ``code_feats [B, T50, 768]``, ``f0 [B, T200]`` (z-normalised,
        unvoiced 0) -> :class:`LMLossStreams`."""
        f0 = self._check_inputs(code_feats, f0)
        if self._feed == "dict":
            content = self._frozen(self.hubert_quantizer, code_feats)
        else:
            content = self.hubert_quantizer.quantize(self.hubert_quantizer.encode(code_feats))
        f0_out = self._frozen(self.f0_quantizer, f0.unsqueeze(-1))
        return LMLossStreams(content.toks[..., 0], content.qlats, f0_out.toks[..., 0],
                             {"commit": content.losses["commit"]})

    def encode(self, code_feats: torch.Tensor, f0: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """``code_feats [B, T50, 768]``, ``f0 [B, T200]`` -> ``(content_toks [B, T25],
        f0_toks [B, T12.5], losses {"commit"})``."""
        s = self.quantize_streams(code_feats, f0)
        return s.content_toks, s.f0_toks, s.losses

    @staticmethod
    def _toks(toks: torch.Tensor) -> torch.Tensor:
        if toks.dim() == 3 and toks.shape[-1] == 1:
            toks = toks[..., 0]
        if toks.dim() != 2:
            raise ValueError(f"tokens must be [B, T], got {list(toks.shape)}")
        return toks.long()

    def decoder_input(self, content: torch.Tensor, f0_toks: torch.Tensor) -> torch.Tensor:
        """``[B, T25, 3 * embedding_dim]`` = ``[HuBERT stream ; F0 embedding repeated ; spkr]``.

        ``content``: tokens ``[B, T25]`` (embedded by ``hubert_dict`` with ``feed="dict"``, by
        the HuBERT codebook with ``feed="codes"``) or vectors ``[B, T25, embedding_dim]``
        (used as they are, e.g. the straight-through code vectors). ``f0_toks [B, T12.5]``.
        The shorter stream is repeated to the longer one's length, which must be a multiple.
        """
        if content.is_floating_point():
            if content.dim() != 3 or content.shape[-1] != self.embedding_dim:
                raise ValueError(f"content vectors must be [B, T, {self.embedding_dim}], got {list(content.shape)}")
            x = content
        else:
            toks = self._toks(content)
            if self._feed == "dict":
                x = self.hubert_dict(toks)
            else:
                x = self.hubert_quantizer.toks_to_qlats(toks[..., None])
        f = self.f0_dict(self._toks(f0_toks))
        if x.shape[0] != f.shape[0]:
            raise ValueError(f"batch sizes differ: content {x.shape[0]}, f0 {f.shape[0]}")
        t_x, t_f = x.shape[1], f.shape[1]
        if t_x < t_f:
            x, t_x = self._repeat(x, t_f), t_f
        elif t_f < t_x:
            f = self._repeat(f, t_x)
        spkr = self.spkr.transpose(1, 2).to(x.dtype).expand(x.shape[0], t_x, -1)
        return torch.cat([x, f.to(x.dtype), spkr], dim=-1)

    @staticmethod
    def _repeat(x: torch.Tensor, length: int) -> torch.Tensor:
        if x.shape[1] == 0 or length % x.shape[1]:
            raise ValueError(f"stream lengths do not align: {x.shape[1]} frames cannot be repeated to {length}")
        return x.repeat_interleave(length // x.shape[1], dim=1)

    # ---------------------------------------------------------------- waveform
    def forward(self, code_feats: torch.Tensor, f0: torch.Tensor, return_losses: bool = False):
        """``code_feats [B, T50, 768]``, ``f0 [B, T200]`` -> ``sig [B, 320 T50]`` (= 1280 per
        F0 token); with ``return_losses``, ``(sig, {"commit"})``."""
        s = self.quantize_streams(code_feats, f0)
        content = s.content_qlats if self._feed == "codes" else s.content_toks
        sig = self.channels_first(self.decoder_input(content, s.f0_toks).transpose(1, 2)).squeeze(1)
        return (sig, s.losses) if return_losses else sig

    def decode(self, content_toks: torch.Tensor, f0_toks: torch.Tensor) -> torch.Tensor:
        """Tokens -> ``sig [B, 640 T25]`` (see :meth:`decoder_input`)."""
        return self.channels_first(self.decoder_input(content_toks, f0_toks).transpose(1, 2)).squeeze(1)


def _strip(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_reference_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any],
                              weights_only: bool = True) -> dict[str, torch.Tensor]:
    """The reference decoder's state dict from a checkpoint, ready for
    ``LMLossDecoder.load_state_dict``.

    Accepts a path (``.ckpt`` / ``.pt`` via ``torch.load`` on CPU, or ``.safetensors``) or a
    loaded object. Descends into a Lightning ``"state_dict"`` entry, drops ``torch.compile``'s
    ``_orig_mod.``, and when the keys are not at the top level finds the prefix under which the
    generator lives (``generator.``, ``model.``, ...) and keeps only its keys (the reference's
    Lightning checkpoints also hold the discriminators). A plain reference state dict comes
    back unchanged.

    Parameters
    ----------
    checkpoint : path or mapping
        The checkpoint.
    weights_only : bool
        Passed to ``torch.load``; a Lightning checkpoint whose hyper-parameters hold custom
        objects may need ``False`` (only for files you trust).

    Example
    -------
    >>> sd = {"conv_pre.bias": torch.zeros(2), "spkr": torch.zeros(1, 2, 1)}
    >>> ckpt = {"state_dict": {"generator._orig_mod." + k: v for k, v in sd.items()} | {"mpd.w": 1}}
    >>> sorted(load_reference_checkpoint(ckpt)) == sorted(sd)
    True
    >>> load_reference_checkpoint(sd) == sd
    True
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path))
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    sd: Mapping[str, Any] = checkpoint
    while isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise TypeError(f"no state dict found in {type(checkpoint).__name__}")
    if any("_orig_mod." in k for k in sd):
        sd = {k.replace("_orig_mod.", ""): v for k, v in sd.items()}
    if any(k.startswith(REFERENCE_ROOTS) for k in sd):
        return dict(sd)
    anchors = {k[: k.rindex(".conv_pre.") + 1] for k in sd if ".conv_pre." in k}
    if len(anchors) != 1:
        raise KeyError(
            "cannot find the decoder's keys (one '<prefix>conv_pre.*' prefix); "
            f"found prefixes {sorted(anchors)} among {len(sd)} keys"
        )
    return _strip(sd, anchors.pop())
