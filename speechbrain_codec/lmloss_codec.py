"""The LM-loss codec as a :class:`~speechbrain_codec.codec.Codec` (two streams in one ``.sbc``), and
its phase-1 quantizers as codecs of cached features.

:class:`LMLossCodec`: 16 kHz audio -> HuBERT-base layer 6 (frozen, 50 Hz) -> HuBERT VQ-VAE (÷2:
25 Hz, 32 or 64 codes) -> stream ``content``; -> YAAPT F0 (200 Hz, z-normalised) -> F0 VQ-VAE
(÷16: 12.5 Hz, 32 codes) -> stream ``f0``; both streams + the learned speaker vector -> HiFi-GAN
(:class:`~speechbrain_codec.lmloss.LMLossDecoder`, the reference's inference model with its
parameter names, under ``model.``). Inputs are zero-padded to a multiple of 1280 samples (one F0
token, two content tokens: the spec's padding rule); the bitrate is derived from the
configuration (2_5: 25 x 5 + 12.5 x 5 = 187.5 b/s; 2_6: 212.5 b/s; the speaker vector is learned,
not sent).

In training (:mod:`speechbrain_codec.bin.train_codec` with ``codec_features: {content: <HuBERT
cache>, f0: <F0 cache>}``) the cached features replace the two encoders, which are frozen anyway.

:class:`VQVAEFeatureCodec`: phase 1, one VQ-VAE trained on cached features (``codec_input``): its
"signal" is the feature sequence, its reconstruction the VQ-VAE decoder's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .codec import Codec, CodecOutput, coding
from .encoders import Encoder
from .lmloss import LMLossDecoder
from .quantizers import Quantizer, VQVAE
from .streams import SINGLE_STREAM, StreamLayout, StreamSpec
from .utils import CodecError

__all__ = ["ChannelsLastDecoder", "LMLossCodec", "VQVAEFeatureCodec", "distill_loss", "ttr_loss"]


def _fit_frames(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x [B, T, ...]`` cut or zero-padded to ``n`` frames."""
    if x.shape[1] >= n:
        return x[:, :n]
    pad = [0, 0] * (x.dim() - 2) + [0, n - x.shape[1]]
    return nn.functional.pad(x, pad)


class LMLossCodec(Codec):
    """The LM-loss codec (module docstring).

    Parameters
    ----------
    model : LMLossDecoder
        Quantizers, embeddings, speaker vector and generator (``model.feed``: ``"dict"`` in
        phase 2 and at the reference's inference, ``"codes"`` in phase 3).
    encoder : Encoder
        HuBERT layer 6 (:class:`~speechbrain_codec.encoders.SSLEncoder`, ``padding="center"``:
        ``floor(N / 320)`` frames, exactly 4 per 1280 samples).
    f0_encoder : Encoder
        :class:`~speechbrain_codec.encoders.YAAPTF0Encoder` (200 Hz, z-normalised).

    Example
    -------
    >>> from speechbrain_codec.encoders import YAAPTF0Encoder
    >>> class Feats(Encoder):  # a stand-in for HuBERT: 768 channels at 50 Hz
    ...     sample_rate, hop_length, out_channels = 16000, 320, 768
    ...     def forward(self, sig, lens=None):
    ...         return sig.unfold(-1, 320, 320)[..., :1].expand(-1, -1, 768) * 10
    >>> codec = LMLossCodec(LMLossDecoder(upsample_initial_channel=32), Feats(), YAAPTF0Encoder()).eval()
    >>> codec.bitrate, codec.hop_length, [s.name for s in codec.layout]
    (187.5, 1280, ['content', 'f0'])
    >>> toks = codec.sig_to_toks(torch.randn(1, 3000))
    >>> {k: list(v.shape) for k, v in toks.items()}, codec.toks_to_sig(toks).shape
    ({'content': [1, 5, 1], 'f0': [1, 3, 1]}, torch.Size([1, 3200]))
    """

    def __init__(self, model: LMLossDecoder, encoder: Encoder, f0_encoder: Encoder) -> None:
        nn.Module.__init__(self)
        self.model, self.encoder, self.f0_encoder = model, encoder, f0_encoder
        self.compressor = self.decompressor = nn.Identity()
        if encoder.sample_rate != f0_encoder.sample_rate:
            raise ValueError(f"HuBERT at {encoder.sample_rate} Hz, F0 at {f0_encoder.sample_rate} Hz")
        self.sample_rate = encoder.sample_rate
        self.output_sample_rate = model.sample_rate
        self.content_hop = encoder.hop_length * model.hubert_quantizer.downsample_factor
        self.f0_hop = f0_encoder.hop_length * model.f0_quantizer.downsample_factor
        dec_hop = model.hop_length * self.sample_rate // model.sample_rate
        if self.content_hop != dec_hop or self.f0_hop % dec_hop:
            raise ValueError(f"content hop {self.content_hop} and F0 hop {self.f0_hop} must be the decoder's "
                             f"{dec_hop} samples and a multiple of it")
        self.hop_length = math.lcm(self.content_hop, self.f0_hop)
        self.config_hash = ""
        self.token_models = {}

    # ------------------------------------------------------------------ streams
    @property
    def decoder(self) -> LMLossDecoder:  # what Codec.describe names
        return self.model

    @property
    def layout(self) -> StreamLayout:
        return StreamLayout([
            StreamSpec("content", (self.model.hubert_quantizer.codebook_size,), self.content_hop),
            StreamSpec("f0", (self.model.f0_quantizer.codebook_size,), self.f0_hop),
        ], self.sample_rate)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.content_hop

    @property
    def codebook_sizes(self) -> list[int]:
        return [n for s in self.layout for n in s.codebook_sizes]

    @property
    def streaming(self) -> bool:
        return False

    @property
    def chunk_size(self) -> int:
        raise CodecError("the LM-loss codec does not stream: it has no chunk size")

    algorithmic_latency = chunk_size

    def quantizers(self) -> dict[str, Quantizer]:
        return {"content": self.model.hubert_quantizer.quantizer, "f0": self.model.f0_quantizer.quantizer}

    casts_compute_dtype = False
    latent_layers = ()
    inference_entries = {"model": "decode"}  # toks_to_sig calls model.decode, never model.forward

    def inference_parts(self) -> dict[str, dict[str, nn.Module]]:
        """HuBERT on the sending side, the generator (with its embeddings) on the receiving side;
        the F0 tracker is signal processing and the VQ-VAE streams (``fp32_modules``) stay fp32.
        The receiving side casts itself in bf16 (the generator's first convolution takes its
        weights' dtype, :meth:`toks_to_sig` returns fp32): ``model.decode`` is not a forward, so
        no hook runs there."""
        return {"send": {"encoder": self.encoder}, "receive": {"model": self.model}}

    def fp32_modules(self) -> list[nn.Module]:
        return [self.model.hubert_quantizer, self.model.f0_quantizer]

    def token_dict(self, toks) -> dict[str, torch.Tensor]:
        return dict(toks)

    def from_token_dict(self, toks: dict) -> dict:
        if set(toks) != {"content", "f0"}:
            raise CodecError(f"streams {sorted(toks)} do not fit this codec's (content, f0)")
        return dict(toks)

    # ------------------------------------------------------------------ signal paths
    def encoder_outputs(self, sig: torch.Tensor, lens: torch.Tensor | None = None,
                        features: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(HuBERT feats [B, 4n, C], f0 [B, 16n])`` of ``sig`` padded to ``n`` x 1280 samples:
        from ``features`` (``content`` / ``f0``, cached) where given, else the encoders."""
        features = features or {}
        n = self.pad(sig).shape[-1] // self.hop_length
        per = self.hop_length
        feats = features.get("content")
        if feats is None:
            feats = self.sig_to_feats(sig, lens)
        f0 = features.get("f0")
        if f0 is None:
            f0 = self.f0_encoder(self.pad(sig), lens)
        if f0.dim() == 3:
            f0 = f0[..., 0]
        feats = _fit_frames(feats.float(), n * per // self.encoder.hop_length)
        f0 = _fit_frames(f0.float(), n * per // self.f0_encoder.hop_length)
        return feats, f0

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None, features: dict | None = None) -> CodecOutput:
        feats, f0 = self.encoder_outputs(sig, lens, features)
        s = self.model.quantize_streams(feats, f0)
        content = s.content_qlats if self.model.feed == "codes" else s.content_toks
        qfeats = self.model.decoder_input(content, s.f0_toks)
        rec = self.model.channels_first(qfeats.transpose(1, 2)).squeeze(1)
        rec = self.fit_length(rec, self.output_length(sig.shape[-1]))
        toks = {"content": s.content_toks[..., None], "f0": s.f0_toks[..., None]}
        # lats / qlats: the content stream's code vectors (what the SD loss decodes)
        return CodecOutput(rec, toks, s.content_qlats, s.content_qlats, s.losses, feats, qfeats)

    @coding
    def sig_to_toks(self, sig: torch.Tensor, lens: torch.Tensor | None = None,
                    features: dict | None = None) -> dict[str, torch.Tensor]:
        """``sig [B, T_wav] -> {"content": [B, ceil(T_wav / 640), 1], "f0": [B, ceil(T_wav / 1280), 1]}``."""
        feats, f0 = self.encoder_outputs(sig, lens, features)
        s = self.model.quantize_streams(feats, f0)
        full = {"content": s.content_toks[..., None], "f0": s.f0_toks[..., None]}
        return {spec.name: full[spec.name][:, : spec.num_frames(sig.shape[-1])] for spec in self.layout}

    @coding
    def toks_to_sig(self, toks: dict) -> torch.Tensor:
        """``{"content", "f0"} -> sig [B, 640 x content frames]`` (a content stream cut short of
        the last F0 token is extended by its last frame for decoding, then cut back)."""
        toks = self.from_token_dict(toks)
        content, f0 = toks["content"], toks["f0"]
        ratio = self.f0_hop // self.content_hop
        n = content.shape[1]
        full = f0.shape[1] * ratio
        if n < full:
            content = torch.cat([content, content[:, -1:].expand(-1, full - n, -1)], dim=1)
        sig = self.model.decode(content[:, :full], f0)
        return self._out(sig[..., : n * self.model.hop_length])


class VQVAEFeatureCodec(Codec):
    """Phase 1 of the LM-loss codec: one :class:`~speechbrain_codec.quantizers.VQVAE` on cached
    features. Its input ("signal") is ``[B, T, C]`` features (``[B, T]`` for F0) at
    ``input_rate`` frames per second; ``forward`` returns the reconstruction as ``sig``, the
    input as ``feats`` and the reconstruction as ``qfeats`` (so
    :class:`~speechbrain_codec.losses.LatentFeatureLoss` is the spec's reconstruction MSE), and
    the VQ's ``commit``. ``hop_length`` is the VQ-VAE's downsampling, so ``bitrate`` is the
    stream's (HuBERT 50 Hz ÷ 2 x 5 bits = 125 b/s).

    Example
    -------
    >>> vq = VQVAEFeatureCodec(VQVAE(1, 16, downs_t=[4], strides_t=[2], width=8, depth=1, l_bins=32), 200)
    >>> out = vq(torch.randn(2, 40))
    >>> out.sig.shape, out.toks.shape, vq.bitrate
    (torch.Size([2, 40]), torch.Size([2, 3, 1]), 62.5)
    """

    def __init__(self, vqvae: VQVAE, input_rate: int) -> None:
        nn.Module.__init__(self)
        self.vqvae = vqvae
        self.compressor = self.decompressor = nn.Identity()
        self.sample_rate = self.output_sample_rate = int(input_rate)
        self.hop_length = vqvae.downsample_factor
        self.config_hash = ""
        self.token_models = {}

    @property
    def quantizer(self):
        return self.vqvae.quantizer

    @property
    def encoder(self):
        return self.vqvae.encoder

    @property
    def decoder(self):
        return self.vqvae.decoder

    @property
    def streaming(self) -> bool:
        return False

    def quantizers(self) -> dict[str, Quantizer]:
        return {SINGLE_STREAM: self.vqvae.quantizer}

    casts_compute_dtype = False
    latent_layers = ()

    def inference_parts(self) -> dict[str, dict[str, nn.Module]]:
        return {"send": {"vqvae.encoder": self.vqvae.encoder}, "receive": {"vqvae.decoder": self.vqvae.decoder}}

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``x [B, T(, C)]`` along time to a multiple of ``hop_length``."""
        return _fit_frames(x, -(-x.shape[1] // self.hop_length) * self.hop_length)

    def _as_frames(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., None] if x.dim() == 2 else x

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None, features: dict | None = None) -> CodecOutput:
        x = self._as_frames(sig.float())
        lats = self.vqvae.encode(self.pad(x))
        q = self.vqvae.quantize(lats)
        rec = self.vqvae.decode(q.qlats)[:, : x.shape[1]]
        out = rec[..., 0] if sig.dim() == 2 else rec
        return CodecOutput(out, q.toks, lats, q.qlats, q.losses, x, rec)

    @coding
    def sig_to_toks(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        x = self._as_frames(sig.float())
        return self.vqvae.quantize(self.vqvae.encode(self.pad(x))).toks

    @coding
    def toks_to_sig(self, toks: torch.Tensor) -> torch.Tensor:
        return self.vqvae.decode(self.vqvae.toks_to_qlats(toks))


# ---------------------------------------------------------------------------- phase-3 losses
def distill_loss(phase1_codec: str):
    """The SD loss (lmloss.md §3.5): :class:`~speechbrain_codec.losses.DistillLoss` whose decoder
    is the phase-1 HuBERT VQ-VAE decoder (exported folder ``phase1_codec``), trained with the
    codec: ``MSE(decoder(content code vectors), cached HuBERT L6 features)``."""
    from .losses import DistillLoss
    from .training import load_codec_yaml
    from .utils import load_state_checked

    codec, _ = load_codec_yaml(f"{phase1_codec}/codec.yaml")
    state = torch.load(f"{phase1_codec}/codec.ckpt", map_location="cpu", weights_only=True)
    load_state_checked(codec, state, f"{phase1_codec}/codec.ckpt", "export phase 1 again")
    return DistillLoss(ChannelsLastDecoder(codec.vqvae.decoder))


class ChannelsLastDecoder(nn.Module):
    """A Jukebox decoder (``[[B, D, T]] -> [B, C, T x r]``) as ``[B, T, D] -> [B, T x r, C]``."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, qlats: torch.Tensor) -> torch.Tensor:
        return self.decoder([qlats.transpose(1, 2)]).transpose(1, 2)


def ttr_loss(summariser_checkpoint: str, ssl_source: str = "microsoft/wavlm-base", ssl_layer: int = 10,
             bert_source: str = "bert-base-uncased"):
    """The TTR loss (lmloss.md §3.5) with the summariser pretrained by the recipe's
    ``pretrain_ttr.py`` (``summariser_checkpoint`` and its ``.json`` configuration), frozen, in
    eval mode (dropout off: the sane choice of spec §4)."""
    import json

    from .encoders import SSLEncoder
    from .losses.ttr import BertTargets, TTRLoss, TTRSummariser
    from .utils import load_state_checked

    try:
        cfg = json.loads(open(f"{summariser_checkpoint}.json", encoding="utf-8").read())
    except FileNotFoundError:
        raise CodecError(f"{summariser_checkpoint}.json missing: pretrain the TTR summariser first "
                         "(run.sh stage ttr, or --ttr_checkpoint a pretrained one)") from None
    summariser = TTRSummariser(dim=cfg["dim"], num_heads=cfg["num_heads"], ffn_dim=cfg["ffn_dim"],
                               num_layers=cfg["num_layers"])
    state = torch.load(summariser_checkpoint, map_location="cpu", weights_only=True)
    load_state_checked(summariser, state, summariser_checkpoint, "pretrain the summariser again")
    return TTRLoss(summariser, SSLEncoder(ssl_source, layers=ssl_layer, freeze=True), BertTargets(bert_source))
