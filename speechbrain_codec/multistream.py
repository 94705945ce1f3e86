"""Codecs that send several token streams, each at its own frame rate, plus per-utterance codes.

The LM-loss codec sends a 25 Hz content stream and a 12.5 Hz F0 stream, SIREN a 12.5 Hz
semantic stream, a 6.25 Hz prosody stream and a per-utterance speaker code. A
:class:`MultiStreamCodec` is a shared encoder (optional), one :class:`StreamBranch` per stream
and a decoder::

    sig -> encoder -> feats ----+-> branch "content": compressor -> quantizer -> decompressor --+
        |                       +-> branch "speaker": compressor -> mean over time -> quantizer -+-> fusion -> decoder
        +-> (branch encoder) ------> branch "f0": compressor -> quantizer -> decompressor -------+

A branch reads the shared encoder's features, or the signal through its own ``encoder`` (an F0
tracker, another SSL layer). Its frame hop is ``(its encoder's or the shared encoder's hop) x
compressor.downsample``. Before fusion every stream is repeated to the decoder's frame rate (a
per-utterance code to every frame), the streams are concatenated on channels and ``fusion``
(default: none; e.g. a ``torch.nn.Linear``) maps them to the decoder's input.

Tokens are a dict ``stream name -> [B, N, K]`` (per utterance: ``N = 1``); the bitrate is the
sum over streams (:class:`speechbrain_codec.streams.StreamLayout`), side information apart.
Quantizer losses of the same name (``commit``) are summed over streams.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .codec import Codec, CodecOutput, coding
from .decoders import Decoder
from .encoders import Encoder
from .quantizers import Quantizer
from .streams import StreamLayout, StreamSpec
from .utils import CodecError

__all__ = ["StreamBranch", "MultiStreamCodec"]


class StreamBranch(nn.Module):
    """One stream: (own encoder) -> compressor -> quantizer -> decompressor.

    Parameters
    ----------
    quantizer : Quantizer
    compressor, decompressor : nn.Module, optional
        ``[B, T, C] -> [B, T', C']``; an integer ``downsample`` (compressor) / ``upsample``
        (decompressor) attribute changes the frame rate.
    encoder : Encoder, optional
        Reads the signal itself instead of the shared encoder's features.
    kind : str
        ``"frames"``, ``"units"`` (deduplicated before sending; ``durations`` sends run lengths,
        which a frame-synchronous decoder needs) or ``"utterance"`` (the compressor's output is
        averaged over the utterance's valid frames: one code per utterance).
    """

    def __init__(self, quantizer: Quantizer, compressor: nn.Module | None = None,
                 decompressor: nn.Module | None = None, encoder: Encoder | None = None,
                 kind: str = "frames", durations: bool = True) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.compressor = compressor if compressor is not None else nn.Identity()
        self.decompressor = decompressor if decompressor is not None else nn.Identity()
        self.encoder = encoder
        self.kind = kind
        self.durations = bool(durations) and kind == "units"
        if kind not in ("frames", "units", "utterance"):
            raise ValueError(f"kind {kind!r}: expected frames, units or utterance")

    @property
    def downsample(self) -> int:
        return int(getattr(self.compressor, "downsample", 1))

    @property
    def upsample(self) -> int:
        return int(getattr(self.decompressor, "upsample", 1))


class MultiStreamCodec(Codec):
    """A codec of several streams (see the module docstring).

    Parameters
    ----------
    branches : dict
        ``stream name -> StreamBranch`` (insertion order = bitstream order).
    decoder : Decoder
        Reads the fused streams at its own frame rate (``decoder.hop_length`` output samples per
        frame); every timed stream's hop must be a whole number of decoder frames.
    encoder : Encoder, optional
        Shared encoder for the branches without their own.
    fusion : nn.Module, optional
        ``[B, T_dec, sum C] -> [B, T_dec, decoder input]``.

    Example
    -------
    >>> from speechbrain_codec.encoders import MelEncoder
    >>> from speechbrain_codec.quantizers import FSQ
    >>> from speechbrain_codec.decoders import VocosDecoder
    >>> from speechbrain_codec.compressors import ConvDownsample
    >>> enc = MelEncoder(16000, 16, dim=16, intermediate_dim=32, num_layers=1, downsample=2)
    >>> codec = MultiStreamCodec(
    ...     {"content": StreamBranch(FSQ([8, 5, 5, 5], dim=16)),
    ...      "coarse": StreamBranch(FSQ([4, 4], dim=8), ConvDownsample(16, 8, 2)),
    ...      "speaker": StreamBranch(FSQ([2] * 16, dim=16, num_codebooks=4), kind="utterance")},
    ...     VocosDecoder(40, dim=16, intermediate_dim=32, num_layers=1, n_fft=1280, hop_length=320,
    ...                  upsample=2), enc)
    >>> round(codec.bitrate, 2), codec.side_info_bits
    (299.14, 64.0)
    >>> toks = codec.sig_to_toks(torch.randn(1, 16000))
    >>> {name: list(t.shape) for name, t in toks.items()}
    {'content': [1, 25, 1], 'coarse': [1, 13, 1], 'speaker': [1, 1, 4]}
    >>> codec.toks_to_sig(toks).shape
    torch.Size([1, 16640])
    """

    def __init__(self, branches: dict, decoder: Decoder, encoder: Encoder | None = None,
                 fusion: nn.Module | None = None) -> None:
        nn.Module.__init__(self)
        if not branches:
            raise ValueError("a multi-stream codec needs at least one branch")
        self.encoder = encoder
        self.branches = nn.ModuleDict(branches)
        self.decoder = decoder
        self.fusion = fusion if fusion is not None else nn.Identity()
        self.compressor = self.decompressor = nn.Identity()  # the shared path has none
        self.sample_rate = (encoder or next(b.encoder for b in self.branches.values() if b.encoder)).sample_rate
        self.output_sample_rate = decoder.sample_rate
        # decoder frames in input samples
        dec_hop = decoder.hop_length * self.sample_rate / decoder.sample_rate
        if dec_hop != int(dec_hop):
            raise ValueError(f"decoder hop {decoder.hop_length} at {decoder.sample_rate} Hz is not a whole number "
                             f"of input samples at {self.sample_rate} Hz")
        self.decoder_hop = int(dec_hop)
        hops = [self.decoder_hop]
        for name, b in self.branches.items():
            source = b.encoder if b.encoder is not None else encoder
            if source is None:
                raise ValueError(f"stream {name}: no encoder (give the codec a shared encoder or the branch its own)")
            if source.sample_rate != self.sample_rate:
                raise ValueError(f"stream {name}: encoder at {source.sample_rate} Hz, the codec's input is {self.sample_rate} Hz")
            if b.kind == "utterance":
                continue
            if b.kind == "units" and not b.durations and not getattr(decoder, "regenerates_durations", False):
                raise ValueError(f"stream {name}: units sent without run lengths need a decoder that regenerates "
                                 f"durations (regenerates_durations = True); {type(decoder).__name__} is frame-synchronous")
            hop = source.hop_length * b.downsample
            if (hop % b.upsample) or (hop // b.upsample) % self.decoder_hop:
                raise ValueError(f"stream {name}: hop {hop} / decompressor upsample {b.upsample} is not a whole number "
                                 f"of decoder frames ({self.decoder_hop} samples)")
            hops.append(hop)
        self.hop_length = math.lcm(*hops)  # inputs are padded to whole frames of every stream
        self.config_hash = ""
        self.token_models = {}

    # ------------------------------------------------------------------ streams
    def _source_hop(self, b: StreamBranch) -> int:
        return (b.encoder if b.encoder is not None else self.encoder).hop_length

    @property
    def layout(self) -> StreamLayout:
        specs = []
        for name, b in self.branches.items():
            sizes = tuple(b.quantizer.codebook_sizes)
            if b.kind == "utterance":
                specs.append(StreamSpec(name, sizes, None, "utterance"))
            else:
                specs.append(StreamSpec(name, sizes, self._source_hop(b) * b.downsample, b.kind, b.durations))
        return StreamLayout(specs, self.sample_rate)

    @property
    def frame_rate(self) -> float:
        """Frames per second of the finest stream."""
        return max(s.frame_rate(self.sample_rate) for s in self.layout if not s.per_utterance)

    @property
    def codebook_sizes(self) -> list[int]:
        """Every stream's codebook sizes, in stream order."""
        return [n for s in self.layout for n in s.codebook_sizes]

    @property
    def streaming(self) -> bool:
        return False

    @property
    def chunk_size(self) -> int:
        raise CodecError("a multi-stream codec does not stream: it has no chunk size")

    @property
    def algorithmic_latency(self) -> float:
        raise CodecError("a multi-stream codec does not stream: it has no algorithmic latency")

    def token_dict(self, toks) -> dict[str, torch.Tensor]:
        return dict(toks)

    def from_token_dict(self, toks: dict) -> dict:
        if set(toks) != set(self.branches):
            raise CodecError(f"streams {sorted(toks)} do not fit this codec's ({', '.join(self.branches)})")
        return dict(toks)

    def quantizers(self) -> dict[str, Quantizer]:
        return {name: b.quantizer for name, b in self.branches.items()}

    casts_compute_dtype = False
    latent_layers = ()

    def inference_parts(self) -> dict[str, dict[str, nn.Module]]:
        send = {"encoder": self.encoder} if self.encoder is not None else {}
        receive = {}
        for name, b in self.branches.items():
            if b.encoder is not None:
                send[f"branches.{name}.encoder"] = b.encoder
            send[f"branches.{name}.compressor"] = b.compressor
            receive[f"branches.{name}.decompressor"] = b.decompressor
        receive.update({"fusion": self.fusion, "decoder": self.decoder})
        return {"send": send, "receive": receive}

    # ------------------------------------------------------------------ signal paths
    def sig_to_feats(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor | None:
        """The shared encoder's features of the padded signal (``None`` without one)."""
        if self.encoder is None:
            return None
        enc = self.encoder
        track = torch.is_grad_enabled() and (sig.requires_grad or any(p.requires_grad for p in enc.parameters()))
        with torch.set_grad_enabled(track):
            return enc(self.pad(sig), lens)

    def _branch_lats(self, name: str, sig: torch.Tensor, feats, lens) -> torch.Tensor:
        b = self.branches[name]
        x = b.encoder(self.pad(sig), lens) if b.encoder is not None else feats
        lats = b.compressor(x)
        if b.kind == "utterance":
            if lens is None:
                lats = lats.mean(dim=1, keepdim=True)
            else:  # mean over each utterance's valid frames
                t = torch.arange(lats.shape[1], device=lats.device)
                valid = (t[None] < (lens.to(lats.device) * lats.shape[1]).ceil()[:, None]).to(lats.dtype)[..., None]
                lats = (lats * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
        return lats

    def sig_to_lats(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        feats = self.sig_to_feats(sig, lens)
        return {name: self._branch_lats(name, sig, feats, lens) for name in self.branches}

    def _fuse(self, qlats: dict[str, torch.Tensor], n_frames: int | None) -> torch.Tensor:
        """Decompress every stream, repeat it to the decoder's frame rate and fuse."""
        parts, timed = {}, []
        for name, b in self.branches.items():
            x = b.decompressor(qlats[name])
            if b.kind != "utterance":
                ratio = self._source_hop(b) * b.downsample // b.upsample // self.decoder_hop
                x = x.repeat_interleave(ratio, dim=1) if ratio > 1 else x
                timed.append(x.shape[1])
            parts[name] = x
        n = n_frames if n_frames is not None else max(timed)
        out = []
        for name, x in parts.items():
            if self.branches[name].kind == "utterance":
                out.append(x.expand(-1, n, -1))
            elif x.shape[1] >= n:
                out.append(x[:, :n])
            else:  # a stream whose last frame covers the end
                out.append(nn.functional.pad(x.transpose(1, 2), (0, n - x.shape[1]), mode="replicate").transpose(1, 2))
        return self.fusion(torch.cat(out, dim=-1))

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> CodecOutput:
        feats = self.sig_to_feats(sig, lens)
        toks, lats, qlats, losses = {}, {}, {}, {}
        for name, b in self.branches.items():
            lats[name] = self._branch_lats(name, sig, feats, lens)
            q = b.quantizer(lats[name])
            toks[name], qlats[name] = q.toks, q.qlats
            for key, value in q.losses.items():
                losses[key] = losses[key] + value if key in losses else value
        n_dec = self.pad(sig).shape[-1] // self.decoder_hop
        qfeats = self._fuse(qlats, n_dec)
        rec = self.fit_length(self.decoder(qfeats), self.output_length(sig.shape[-1]))
        return CodecOutput(rec, toks, lats, qlats, losses, feats, qfeats)

    @coding
    def sig_to_toks(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``sig [B, T_wav] -> {stream: toks [B, N_s, K_s]}`` (``N_s = ceil(T_wav / hop_s)``
        frames, 1 per utterance)."""
        lats = self.sig_to_lats(sig, lens)
        out = {}
        for spec, (name, b) in zip(self.layout, self.branches.items()):
            toks = b.quantizer(lats[name]).toks
            # frames of the padding beyond the signal are not sent (the decoder repeats the last)
            out[name] = toks if spec.per_utterance else toks[:, : spec.num_frames(sig.shape[-1])]
        return out

    @coding
    def toks_to_sig(self, toks: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{stream: toks} -> sig [B, T_dec * decoder.hop_length]`` at ``output_sample_rate``
        (``T_dec``: the longest stream at the decoder's frame rate)."""
        toks = self.from_token_dict(toks)
        qlats = {name: b.quantizer.toks_to_qlats(toks[name]) for name, b in self.branches.items()}
        return self.decoder(self._fuse(qlats, None))

    def stream_encoder(self):
        raise CodecError("a multi-stream codec does not stream")

    stream_decoder = stream_encoder
