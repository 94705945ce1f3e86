"""SIREN (``Krabbens/SIREN``, pipeline P1 "v0.1.0"; ../shared/specs/siren.md) as a codec of three
streams in one ``.sbc``::

    16 kHz -> HuBERT-base hidden state 9 (frozen, 50 Hz, 768-d)
           -> InformationFactorizer -> semantic (50 / f_s Hz) -> SirenResidualFSQ -> stream "semantic"
                                    -> prosody  (50 / f_p Hz) -> SirenResidualFSQ -> stream "prosody"
                                    -> speaker (one 256-d vector) -> ProductQuantizer -> stream "speaker"
           -> FeatureReconstructor (50 Hz, fusion_dim) -> ISTFTGenerator (hop 320) -> 16 kHz

* :class:`ConformerBlock` (§2.2): ``x += FF1(x) / 2; x += MHSA(LN x); x += Conv(LN x);
  x += FF2(x) / 2; LN``; FF = LN -> Linear(d, 4d) -> SiLU -> dropout 0.1 -> Linear -> dropout;
  Conv = pointwise d -> 2d, GLU, depthwise (kernel k), BatchNorm, SiLU, pointwise, dropout.
* :class:`InformationFactorizer` (P1 ``InformationFactorizerV2``, §2.2): attention-pooled speaker
  vector (Linear 768 -> 1, softmax over time, weighted sum, MLP 768 -> 512 (LayerNorm, SiLU) ->
  256); speaker removal ``x - Linear(256 -> 768)(spk)`` for the semantic branch; each branch:
  :class:`~speechbrain_codec.compressors.conv_rate.ConvRateReduction` -> ``num_blocks`` (P1: 1)
  Conformer blocks (4 heads; kernel 15 semantic, 31 prosody) -> MLP hidden -> hidden (SiLU) ->
  output dim. The prosody branch reads the features *with* the speaker.
* :class:`FeatureReconstructor` (P1 ``FeatureReconstructorV2``, §2.5): semantic upsampler ->
  fusion_dim / 2, prosody upsampler -> fusion_dim / 4, speaker MLP 256 -> fusion_dim / 4 (SiLU)
  -> fusion_dim / 4 broadcast over time; cropped to the shortest; concatenated -> Linear ->
  pre-norm ``nn.TransformerEncoder`` (GELU, FF 4x) -> LN -> Linear -> GELU -> Linear.
* :class:`SirenCodec`: the codec; bitrate from the configuration (semantic and prosody frame
  streams, the speaker code as per-utterance side information, 64 bits).
* :class:`WarmupLinear`: P1's schedule (linear warm-up, then linear decay to 0).

Deliberate differences from the reference, all listed in the recipes' README: the residual FSQ's
straight-through placement (§7 item 7, see :mod:`speechbrain_codec.quantizers.product`); HuBERT
frames centred (``floor(N / 320)`` frames, the cache's and the toolkit's convention, rather than
``floor((N - 400) / 320) + 1``), so every stream's frames tile the signal.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .codec import Codec, CodecOutput, coding
from .compressors.conv_rate import ConvRateReduction, ConvUpsample
from .decoders import Decoder
from .encoders import Encoder
from .losses.bit_estimation import TokenEntropyLM
from .quantizers import Quantizer
from .streams import StreamLayout, StreamSpec
from .utils import CodecError

__all__ = ["ConformerBlock", "FactorizerOutput", "FeatureReconstructor", "InformationFactorizer", "SirenCodec",
           "WarmupLinear"]


class WarmupLinear:
    """Learning-rate multiplier: linear warm-up over ``warmup_steps``, then linear decay to 0 at
    ``total_steps`` (SIREN P1: 2000 and 100 k).

    Example
    -------
    >>> s = WarmupLinear(warmup_steps=10, total_steps=110)
    >>> s(0), s(9), s(60), s(110), s(200)
    (0.1, 1.0, 0.5, 0.0, 0.0)
    """

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        return max(0.0, 1.0 - (step - self.warmup_steps) / span)


# ---------------------------------------------------------------------------- encoder side
class _FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Dropout(dropout),
                                 nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _ConvModule(nn.Module):
    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.pointwise1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.BatchNorm1d(dim)
        self.act = nn.SiLU()
        self.pointwise2 = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C]
        y = nn.functional.glu(self.pointwise1(x.transpose(1, 2)), dim=1)
        y = self.pointwise2(self.act(self.norm(self.depthwise(y))))
        return self.dropout(y.transpose(1, 2))


class ConformerBlock(nn.Module):
    """One Conformer block on ``[B, T, dim]`` (module docstring).

    Example
    -------
    >>> ConformerBlock(32, num_heads=4, kernel_size=15)(torch.randn(2, 7, 32)).shape
    torch.Size([2, 7, 32])
    """

    def __init__(self, dim: int, num_heads: int = 4, kernel_size: int = 15, dropout: float = 0.1) -> None:
        super().__init__()
        self.ff1 = _FeedForward(dim, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.conv_norm = nn.LayerNorm(dim)
        self.conv = _ConvModule(dim, kernel_size, dropout)
        self.ff2 = _FeedForward(dim, dropout)
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        h = self.attn_norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.conv(self.conv_norm(x))
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


class _Branch(nn.Module):
    """Rate reduction -> Conformer blocks -> MLP (semantic or prosody)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, factor: int, num_blocks: int,
                 num_heads: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.reduce = ConvRateReduction(input_dim, hidden_dim, factor)
        self.blocks = nn.Sequential(*[ConformerBlock(hidden_dim, num_heads, kernel_size, dropout)
                                      for _ in range(num_blocks)])
        self.mlp = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.SiLU())
        self.proj = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.mlp(self.blocks(self.reduce(x))))


class FactorizerOutput(NamedTuple):
    semantic: torch.Tensor  # [B, T / f_s, D_s]
    prosody: torch.Tensor  # [B, T / f_p, D_p]
    speaker: torch.Tensor  # [B, 1, D_spk]


class InformationFactorizer(nn.Module):
    """SIREN P1's factoriser (module docstring): ``feats [B, T, 768] -> FactorizerOutput``.

    Example
    -------
    >>> f = InformationFactorizer(input_dim=32, speaker_dim=16, speaker_hidden=32, semantic_hidden=16,
    ...                           prosody_hidden=16, semantic_dim=8, prosody_dim=8)
    >>> out = f(torch.randn(2, 40, 32))
    >>> out.semantic.shape, out.prosody.shape, out.speaker.shape
    (torch.Size([2, 10, 8]), torch.Size([2, 5, 8]), torch.Size([2, 1, 16]))
    """

    def __init__(self, input_dim: int = 768, speaker_dim: int = 256, speaker_hidden: int = 512,
                 semantic_hidden: int = 256, semantic_dim: int = 8, semantic_factor: int = 4,
                 semantic_kernel: int = 15, prosody_hidden: int = 256, prosody_dim: int = 8,
                 prosody_factor: int = 8, prosody_kernel: int = 31, num_heads: int = 4, num_blocks: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.semantic_factor, self.prosody_factor = int(semantic_factor), int(prosody_factor)
        self.speaker_pool = nn.Linear(input_dim, 1)
        self.speaker_mlp = nn.Sequential(nn.Linear(input_dim, speaker_hidden), nn.LayerNorm(speaker_hidden), nn.SiLU(),
                                         nn.Linear(speaker_hidden, speaker_dim))
        self.speaker_removal = nn.Linear(speaker_dim, input_dim)
        self.semantic = _Branch(input_dim, semantic_hidden, semantic_dim, semantic_factor, num_blocks, num_heads,
                                semantic_kernel, dropout)
        self.prosody = _Branch(input_dim, prosody_hidden, prosody_dim, prosody_factor, num_blocks, num_heads,
                               prosody_kernel, dropout)

    def forward(self, feats: torch.Tensor) -> FactorizerOutput:
        if feats.dim() != 3 or feats.shape[-1] != self.input_dim:
            raise ValueError(f"InformationFactorizer expects feats [B, T, {self.input_dim}], got {list(feats.shape)}")
        weights = torch.softmax(self.speaker_pool(feats), dim=1)  # [B, T, 1]
        spk = self.speaker_mlp((weights * feats).sum(1, keepdim=True))  # [B, 1, D]
        content = feats - self.speaker_removal(spk)
        return FactorizerOutput(self.semantic(content), self.prosody(feats), spk)


# ---------------------------------------------------------------------------- decoder side
class FeatureReconstructor(nn.Module):
    """SIREN P1's fusion (module docstring): ``(sem [B, Ts, Ds], pro [B, Tp, Dp], spk [B, 1, 256])
    -> [B, T, fusion_dim]`` at 50 Hz, ``T = min(Ts f_s, Tp f_p)`` (or ``num_frames``: cut, or the
    last frame repeated).

    Example
    -------
    >>> r = FeatureReconstructor(8, 8, 16, semantic_factor=4, prosody_factor=8, fusion_dim=32,
    ...                          fusion_layers=1, fusion_heads=2)
    >>> r(torch.randn(2, 10, 8), torch.randn(2, 5, 8), torch.randn(2, 1, 16)).shape
    torch.Size([2, 40, 32])
    """

    def __init__(self, semantic_dim: int = 8, prosody_dim: int = 8, speaker_dim: int = 256, semantic_factor: int = 4,
                 prosody_factor: int = 8, fusion_dim: int = 512, fusion_layers: int = 4, fusion_heads: int = 8,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if fusion_dim % 4:
            raise ValueError(f"fusion_dim must be a multiple of 4, got {fusion_dim}")
        self.fusion_dim = fusion_dim
        self.semantic_up = ConvUpsample(semantic_dim, fusion_dim // 2, semantic_factor)
        self.prosody_up = ConvUpsample(prosody_dim, fusion_dim // 4, prosody_factor)
        self.speaker_mlp = nn.Sequential(nn.Linear(speaker_dim, fusion_dim // 4), nn.SiLU(),
                                         nn.Linear(fusion_dim // 4, fusion_dim // 4))
        self.input_proj = nn.Linear(fusion_dim, fusion_dim)
        layer = nn.TransformerEncoderLayer(fusion_dim, fusion_heads, 4 * fusion_dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, fusion_layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(fusion_dim), nn.Linear(fusion_dim, fusion_dim), nn.GELU(),
                                 nn.Linear(fusion_dim, fusion_dim))

    def forward(self, semantic: torch.Tensor, prosody: torch.Tensor, speaker: torch.Tensor,
                num_frames: int | None = None) -> torch.Tensor:
        sem, pro = self.semantic_up(semantic), self.prosody_up(prosody)
        n = min(sem.shape[1], pro.shape[1])
        sem, pro = sem[:, :n], pro[:, :n]
        spk = self.speaker_mlp(speaker).expand(-1, n, -1)
        x = self.out(self.transformer(self.input_proj(torch.cat([sem, pro, spk], dim=-1))))
        if num_frames is not None and num_frames != n:
            x = x[:, :num_frames] if num_frames < n else torch.cat(
                [x, x[:, -1:].expand(-1, num_frames - n, -1)], dim=1)
        return x


# ---------------------------------------------------------------------------- the codec
def _fit_frames(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x [B, T, C]`` cut to, or extended by repeating its last frame to, ``n`` frames."""
    if x.shape[1] >= n:
        return x[:, :n]
    if x.shape[1] == 0:
        raise CodecError(f"no encoder frames for {n} expected")
    return torch.cat([x, x[:, -1:].expand(-1, n - x.shape[1], -1)], dim=1)


#: sub-modules kept in full precision by the BitNet option (final projections; depthwise convs
#: are never converted; attention is PyTorch's)
BITNET_EXCLUDE = ("semantic.proj", "prosody.proj", "speaker_pool", "out.3", "mag_head.2", "phase_head.2")


class SirenCodec(Codec):
    """SIREN P1 (module docstring).

    Parameters
    ----------
    encoder : Encoder
        HuBERT-base hidden state 9 (:class:`~speechbrain_codec.encoders.SSLEncoder`, frozen,
        centre padding); in training the cached features replace it (``features={"hubert": ...}``).
    factorizer : InformationFactorizer
    semantic_quantizer, prosody_quantizer : Quantizer
        :class:`~speechbrain_codec.quantizers.product.SirenResidualFSQ`.
    speaker_quantizer : Quantizer
        :class:`~speechbrain_codec.quantizers.product.ProductQuantizer`.
    reconstructor : FeatureReconstructor
    decoder : Decoder
        :class:`~speechbrain_codec.decoders.istft_generator.ISTFTGenerator` (one frame per encoder frame).
    entropy_dim, entropy_layers, entropy_heads : int
        The bit-estimation LMs (one per frame stream; ``entropy_layers=0``: none). Their NLL in bits
        is the loss ``entropy`` (mean over the batch of the semantic + prosody bits of a segment).
    bitnet : bool
        SIREN P2's ternary layers (:func:`~speechbrain_codec.nn.bitnet.bitnet_convert`) in the
        factoriser, the reconstructor and the generator, final projections excepted.

    Example
    -------
    >>> from speechbrain_codec.quantizers.product import ProductQuantizer, SirenResidualFSQ
    >>> from speechbrain_codec.decoders.istft_generator import ISTFTGenerator
    >>> class Feats(Encoder):  # a stand-in for HuBERT: 32 channels at 50 Hz
    ...     sample_rate, hop_length, out_channels = 16000, 320, 32
    ...     def forward(self, sig, lens=None):
    ...         return sig.unfold(-1, 320, 320)[..., :32]
    >>> codec = SirenCodec(
    ...     Feats(), InformationFactorizer(32, 16, 32, 16, 8, 4, 15, 16, 8, 8, 31),
    ...     SirenResidualFSQ([8, 5, 5, 5], 1, dim=8), SirenResidualFSQ([8, 5, 5, 5], 1, dim=8),
    ...     ProductQuantizer(16, 8, 256), FeatureReconstructor(8, 8, 16, 4, 8, 32, 1, 2),
    ...     ISTFTGenerator(32, dim=16, intermediate_dim=32, dilations=(1,), res_dilations=(1,)),
    ...     entropy_dim=16, entropy_layers=1, entropy_heads=2).eval()
    >>> round(codec.bitrate, 1), codec.side_info_bits, codec.hop_length
    (186.9, 64.0, 2560)
    >>> toks = codec.sig_to_toks(torch.randn(1, 16000))
    >>> {k: list(v.shape) for k, v in toks.items()}
    {'semantic': [1, 13, 1], 'prosody': [1, 7, 1], 'speaker': [1, 1, 8]}
    >>> codec.toks_to_sig(toks).shape
    torch.Size([1, 16640])
    """

    def __init__(self, encoder: Encoder, factorizer: InformationFactorizer, semantic_quantizer: Quantizer,
                 prosody_quantizer: Quantizer, speaker_quantizer: Quantizer, reconstructor: FeatureReconstructor,
                 decoder: Decoder, entropy_dim: int = 128, entropy_layers: int = 2, entropy_heads: int = 4,
                 bitnet: bool = False) -> None:
        nn.Module.__init__(self)
        self.encoder, self.factorizer, self.reconstructor, self.decoder = encoder, factorizer, reconstructor, decoder
        self.semantic_quantizer, self.prosody_quantizer = semantic_quantizer, prosody_quantizer
        self.speaker_quantizer = speaker_quantizer
        self.compressor = self.decompressor = nn.Identity()
        self.sample_rate, self.output_sample_rate = encoder.sample_rate, decoder.sample_rate
        if decoder.hop_length * encoder.sample_rate != encoder.hop_length * decoder.sample_rate:
            raise ValueError(f"the generator's hop {decoder.hop_length} at {decoder.sample_rate} Hz must last one "
                             f"encoder frame ({encoder.hop_length} samples at {encoder.sample_rate} Hz)")
        self.semantic_hop = encoder.hop_length * factorizer.semantic_factor
        self.prosody_hop = encoder.hop_length * factorizer.prosody_factor
        self.hop_length = math.lcm(self.semantic_hop, self.prosody_hop)
        self.entropy_models = nn.ModuleDict()
        if entropy_layers > 0:
            for name, q in (("semantic", semantic_quantizer), ("prosody", prosody_quantizer)):
                self.entropy_models[name] = TokenEntropyLM(q.codebook_sizes[0], entropy_dim, entropy_layers,
                                                           entropy_heads)
        self.bitnet = bool(bitnet)
        if self.bitnet:
            from .nn.bitnet import bitnet_convert

            for part in (factorizer, reconstructor, decoder):
                bitnet_convert(part, exclude=BITNET_EXCLUDE)
        self.config_hash = ""
        self.inference_mode = None  # Codec's inference options (optimize_for_inference)
        self.compute_dtype = None
        self.token_models = {}

    # ------------------------------------------------------------------ streams
    @property
    def layout(self) -> StreamLayout:
        return StreamLayout([
            StreamSpec("semantic", tuple(self.semantic_quantizer.codebook_sizes), self.semantic_hop),
            StreamSpec("prosody", tuple(self.prosody_quantizer.codebook_sizes), self.prosody_hop),
            StreamSpec("speaker", tuple(self.speaker_quantizer.codebook_sizes), None, "utterance"),
        ], self.sample_rate)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.semantic_hop

    @property
    def codebook_sizes(self) -> list[int]:
        return [n for s in self.layout for n in s.codebook_sizes]

    @property
    def streaming(self) -> bool:
        return False

    @property
    def chunk_size(self) -> int:
        raise CodecError("SIREN does not stream: it has no chunk size")

    algorithmic_latency = chunk_size

    def quantizers(self) -> dict[str, Quantizer]:
        return {"semantic": self.semantic_quantizer, "prosody": self.prosody_quantizer,
                "speaker": self.speaker_quantizer}

    casts_compute_dtype = False
    latent_layers = ("factorizer.semantic.proj", "factorizer.prosody.proj", "factorizer.speaker_mlp.3",
                     "reconstructor.speaker_mlp.0")

    def inference_parts(self) -> dict[str, dict[str, nn.Module]]:
        return {"send": {"encoder": self.encoder, "factorizer": self.factorizer},
                "receive": {"reconstructor": self.reconstructor, "decoder": self.decoder}}

    def token_dict(self, toks) -> dict[str, torch.Tensor]:
        return dict(toks)

    def from_token_dict(self, toks: dict) -> dict:
        if set(toks) != {"semantic", "prosody", "speaker"}:
            raise CodecError(f"streams {sorted(toks)} do not fit this codec's (semantic, prosody, speaker)")
        return dict(toks)

    # ------------------------------------------------------------------ signal paths
    def encoder_frames(self, sig: torch.Tensor, lens: torch.Tensor | None = None,
                       features: dict | None = None) -> torch.Tensor:
        """HuBERT features of ``sig`` padded to whole frames of both streams: ``[B, n, C]`` with
        ``n = padded length / 320``, from ``features["hubert"]`` (cached) when given."""
        n = self.pad(sig).shape[-1] // self.encoder.hop_length
        feats = (features or {}).get("hubert")
        if feats is None:
            feats = self.sig_to_feats(sig, lens)
        return _fit_frames(feats.float(), n)

    def quantize(self, feats: torch.Tensor):
        """``feats -> (toks, lats, qlats, losses)``, each a dict by stream (losses: ``commit``)."""
        f = self.factorizer(feats)
        lats = {"semantic": f.semantic, "prosody": f.prosody, "speaker": f.speaker}
        toks, qlats, commit = {}, {}, 0.0
        for name, q in self.quantizers().items():
            out = q(lats[name])
            toks[name], qlats[name] = out.toks, out.qlats
            commit = commit + sum(out.losses.values())
        return toks, lats, qlats, {"commit": commit}

    def estimated_bits(self, toks: dict) -> torch.Tensor:
        """``[B]`` bits of the semantic + prosody tokens under the entropy LMs."""
        return sum(lm(toks[name]) for name, lm in self.entropy_models.items())

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None, features: dict | None = None) -> CodecOutput:
        feats = self.encoder_frames(sig, lens, features)
        toks, lats, qlats, losses = self.quantize(feats)
        if len(self.entropy_models):
            losses["entropy"] = self.estimated_bits(toks).mean()
        qfeats = self.reconstructor(qlats["semantic"], qlats["prosody"], qlats["speaker"], feats.shape[1])
        rec = self.fit_length(self.decoder(qfeats), self.output_length(sig.shape[-1]))
        return CodecOutput(rec, toks, lats, qlats, losses, feats, qfeats)

    @coding
    def sig_to_toks(self, sig: torch.Tensor, lens: torch.Tensor | None = None,
                    features: dict | None = None) -> dict[str, torch.Tensor]:
        """``sig [B, T_wav] -> {"semantic": [B, ceil(T_wav / hop_s), K_s], "prosody": [B,
        ceil(T_wav / hop_p), K_p], "speaker": [B, 1, 8]}``."""
        toks = self.quantize(self.encoder_frames(sig, lens, features))[0]
        return {s.name: toks[s.name] if s.per_utterance else toks[s.name][:, : s.num_frames(sig.shape[-1])]
                for s in self.layout}

    @coding
    def toks_to_sig(self, toks: dict) -> torch.Tensor:
        """``{semantic, prosody, speaker} -> sig [B, 320 x min(T_s f_s, T_p f_p)]``."""
        toks = self.from_token_dict(toks)
        q = {name: quant.toks_to_qlats(toks[name]) for name, quant in self.quantizers().items()}
        return self.decoder(self.reconstructor(q["semantic"], q["prosody"], q["speaker"]))
