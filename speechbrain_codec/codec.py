"""``Codec`` = encoder + (compressor) + quantizer + (decompressor) + decoder.

The frame rate and bitrate are derived from the bricks, never typed by hand:
``frame_rate = sample_rate / hop_length`` and ``bitrate = frame_rate * sum_k log2 N_k``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .decoders import Decoder
from .encoders import Encoder
from .quantizers import Quantizer
from .streams import SINGLE_STREAM, StreamLayout, StreamSpec
from .utils import CodecError, atomic_path, atomic_write_json, atomic_write_text, load_state_checked

__all__ = ["Codec", "CodecOutput", "StreamDecoder", "StreamEncoder", "coding"]


def coding(method):
    """Decorator of a codec's coding method (``sig_to_toks``, ``toks_to_sig``): it runs under
    ``Codec._coding()``, ``torch.inference_mode`` once the codec is prepared
    (:meth:`Codec.optimize_for_inference`), ``torch.no_grad`` otherwise."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._coding():
            return method(self, *args, **kwargs)

    return wrapper

logger = logging.getLogger("speechbrain_codec")

CODEC_YAML, CODEC_CKPT, CODEC_META = "codec.yaml", "codec.ckpt", "codec.json"
ENTROPY_MODEL = "entropy_model.json"  # a single-stream codec's; stream s of others: entropy_model.<s>.json


def entropy_model_file(stream: str) -> str:
    """The token model file of ``stream`` in a checkpoint folder."""
    return ENTROPY_MODEL if stream == SINGLE_STREAM else f"entropy_model.{stream}.json"


class CodecOutput(NamedTuple):
    """Everything a training step needs from one forward pass.

    Attributes
    ----------
    sig : torch.Tensor
        ``[B, T_wav]`` reconstruction (``T_wav`` = padded input length).
    toks : torch.Tensor
        ``[B, T, K]`` tokens (a :class:`~speechbrain_codec.multistream.MultiStreamCodec`: a dict
        ``stream -> [B, N_s, K_s]``).
    lats, qlats : torch.Tensor
        ``[B, T, C]`` latents before and after quantization (after the compressor, before the
        decompressor); per stream (dicts) for a multi-stream codec.
    losses : dict
        The quantizer's auxiliary losses.
    feats : torch.Tensor
        ``[B, T_enc, C_enc]`` encoder output (before the compressor; FocalCodec: the WavLM
        features the feature loss targets).
    qfeats : torch.Tensor
        ``[B, T_enc, C_enc]`` decompressor output, i.e. the decoder input (FocalCodec:
        "qfeats"); equals ``qlats`` without a decompressor (multi-stream: the fused streams at
        the decoder's frame rate).
    """

    sig: torch.Tensor
    toks: torch.Tensor
    lats: torch.Tensor
    qlats: torch.Tensor
    losses: dict[str, torch.Tensor]
    feats: torch.Tensor | None = None
    qfeats: torch.Tensor | None = None


class Codec(nn.Module):
    """A neural speech codec assembled from lobes.

    Parameters
    ----------
    encoder : Encoder
    quantizer : Quantizer
    decoder : Decoder
    compressor, decompressor : nn.Module, optional
        Modules between encoder and quantizer (and quantizer and decoder) that change the frame
        rate by their integer attributes ``downsample`` / ``upsample``.

    Example
    -------
    >>> from speechbrain_codec.encoders import MelEncoder
    >>> from speechbrain_codec.quantizers import FSQ
    >>> from speechbrain_codec.decoders import VocosDecoder
    >>> codec = Codec(MelEncoder(16000, 4, dim=16, intermediate_dim=32, num_layers=1),
    ...               FSQ([8, 5, 5, 5]),
    ...               VocosDecoder(4, dim=16, intermediate_dim=32, num_layers=1))
    >>> codec.frame_rate, round(codec.bitrate, 1)
    (50.0, 498.3)
    >>> toks = codec.sig_to_toks(torch.randn(1, 16000))
    >>> toks.shape, codec.toks_to_sig(toks).shape
    (torch.Size([1, 50, 1]), torch.Size([1, 16000]))
    """

    # set per instance by __init__; class defaults for subclasses that build their own lobes
    inference_mode = None
    compute_dtype = None
    #: whether the coding paths cast to ``compute_dtype`` themselves (bf16 mode: ``_in`` / ``_out``
    #: around the lobes); subclasses whose paths do not set False and their parts cast at their
    #: boundaries (:meth:`inference_parts`)
    casts_compute_dtype = True
    #: the ``nn.Linear`` layers (paths) that write or read the latents: fp32 in the int8 modes
    latent_layers = ("compressor.out_proj", "decompressor.in_proj")
    #: part path -> the method of it that the coding paths call, where not ``forward``
    #: (what ``compile`` wraps)
    inference_entries: dict = {}
    #: whether :meth:`batch_sig_to_toks` / :meth:`batch_toks_to_sig` (and the CLI's
    #: ``--batch-size``) may code several utterances in one call
    batches = True

    def __init__(
        self,
        encoder: Encoder,
        quantizer: Quantizer,
        decoder: Decoder,
        compressor: nn.Module | None = None,
        decompressor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.compressor = compressor if compressor is not None else nn.Identity()
        self.quantizer = quantizer
        self.decompressor = decompressor if decompressor is not None else nn.Identity()
        self.decoder = decoder
        down = getattr(self.compressor, "downsample", 1)
        up = getattr(self.decompressor, "upsample", 1)
        self.hop_length = encoder.hop_length * down
        self.sample_rate = encoder.sample_rate
        self.output_sample_rate = decoder.sample_rate
        # one token frame must last as long on both sides (FocalCodec-Stream: 16 kHz in, 24 kHz out)
        if decoder.hop_length * up * encoder.sample_rate != self.hop_length * decoder.sample_rate:
            raise ValueError(
                f"encoder hop {encoder.hop_length} x compressor {down} at {encoder.sample_rate} Hz "
                f"!= decoder hop {decoder.hop_length} x decompressor {up} at {decoder.sample_rate} Hz: "
                "a token frame would not last as long on both sides"
            )
        self.config_hash = ""  # set by from_pretrained / save_pretrained
        self.inference_mode = None  # set by optimize_for_inference: "exact", "int8", "int8-dec", "bf16"
        self.compute_dtype = None  # the lobes' dtype when not fp32 (bf16 mode)
        self.token_models = {}  # stream name -> entropy model (entropy_model*.json), set by from_pretrained

    # ------------------------------------------------------------------ properties
    @property
    def frame_rate(self) -> float:
        """Token frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def output_hop_length(self) -> int:
        """Output samples per token frame (at ``output_sample_rate``)."""
        return self.hop_length * self.output_sample_rate // self.sample_rate

    @property
    def codebook_sizes(self) -> list[int]:
        """Codebook size per token stream."""
        return list(self.quantizer.codebook_sizes)

    @property
    def layout(self) -> StreamLayout:
        """The streams this codec sends: one, named ``tokens``; a quantizer with
        ``stream_kind = "units"`` (DPDP) sends deduplicated units with their run lengths (the
        decoder is frame-synchronous)."""
        kind = getattr(self.quantizer, "stream_kind", "frames")
        spec = StreamSpec(SINGLE_STREAM, tuple(self.codebook_sizes), self.hop_length, kind, durations=kind == "units")
        return StreamLayout([spec], self.sample_rate)

    @property
    def bitrate(self) -> float:
        """Nominal bits per second of the frame and unit streams (``frame_rate *
        quantizer.bits_per_frame`` for one stream); side information excluded."""
        return self.layout.bitrate

    @property
    def side_info_bits(self) -> float:
        """Bits sent once per utterance (per-utterance streams)."""
        return self.layout.side_info_bits

    @property
    def token_model(self):
        """The entropy model of a single-stream codec (``None`` without one)."""
        return self.token_models.get(SINGLE_STREAM)

    def quantizers(self) -> dict[str, Quantizer]:
        """``stream name -> quantizer``."""
        return {SINGLE_STREAM: self.quantizer}

    def inference_parts(self) -> dict[str, dict[str, nn.Module]]:
        """The modules that :meth:`optimize_for_inference` converts (int8, bf16, compile), by side:
        ``"send"`` (signal -> the latents the quantizers read) and ``"receive"`` (quantized latents
        -> signal), each ``attribute path -> module``. The quantizers (:meth:`fp32_modules`) stay
        fp32 also where a part contains them (the LM-loss codec's)."""
        return {"send": {"encoder": self.encoder, "compressor": self.compressor},
                "receive": {"decompressor": self.decompressor, "decoder": self.decoder}}

    def fp32_modules(self) -> list[nn.Module]:
        """Modules that stay fp32 in every inference mode, also inside a part: the quantizers."""
        return list(self.quantizers().values())

    def token_dict(self, toks) -> dict[str, torch.Tensor]:
        """What :meth:`sig_to_toks` returns, as ``stream name -> [B, N, K]``."""
        return dict(toks) if isinstance(toks, dict) else {SINGLE_STREAM: toks}

    def from_token_dict(self, toks: dict) -> torch.Tensor:
        """Inverse of :meth:`token_dict`: what :meth:`toks_to_sig` takes."""
        if set(toks) != {SINGLE_STREAM}:
            raise CodecError(f"streams {sorted(toks)} do not fit this codec's (tokens)")
        return toks[SINGLE_STREAM]

    # ------------------------------------------------------------------ signal paths
    def pad(self, sig: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``sig [B, T_wav]`` at the end to a multiple of ``hop_length``."""
        rem = (-sig.shape[-1]) % self.hop_length
        return nn.functional.pad(sig, (0, rem)) if rem else sig

    def sig_to_feats(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """``sig [B, T_wav] -> feats [B, T_enc, C]`` (the encoder on the hop-padded signal).

        A frozen encoder (no parameter that trains) runs without building a graph: nothing
        upstream of it could receive a gradient, since the input signal never requires one
        in training (FocalCodec-S computes its frozen WavLM's features under no-grad)."""
        track = torch.is_grad_enabled() and (
            sig.requires_grad or any(p.requires_grad for p in self.encoder.parameters())
        )
        with torch.set_grad_enabled(track):
            return self.encoder(self._in(self.pad(sig)), lens)

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the lobes' compute dtype (bf16 mode); unchanged otherwise."""
        return x if self.compute_dtype is None else x.to(self.compute_dtype)

    @staticmethod
    def _out(x: torch.Tensor) -> torch.Tensor:
        return x if x.dtype == torch.float32 or not x.is_floating_point() else x.float()

    def optimize_for_inference(self, mode: str = "exact", compile: bool | str = False) -> "Codec":
        """Prepare this codec for coding only (in place; returns it): ``mode`` ``exact`` (fp32,
        the plain path's tokens), ``int8`` (dynamic int8 Linear layers), ``int8-dec`` (exact
        tokens, int8 decoder side) or ``bf16``;
        ``compile=True`` adds ``torch.compile`` (``"static"``: static shapes). See :mod:`speechbrain_codec.inference`."""
        from .inference import optimize_for_inference

        return optimize_for_inference(self, mode, compile)

    def batch_sig_to_toks(self, sigs: list[torch.Tensor], batch_size: int = 8, progress=None) -> list[torch.Tensor]:
        """:meth:`sig_to_toks` of each signal ``[T_i]`` of a list, in batches of similar
        lengths (:func:`speechbrain_codec.inference.batch_sig_to_toks`); ``[N_i, K]`` each."""
        from .inference import batch_sig_to_toks

        return batch_sig_to_toks(self, sigs, batch_size, progress)

    def batch_toks_to_sig(self, toks: list[torch.Tensor], batch_size: int = 8, progress=None) -> list[torch.Tensor]:
        """:meth:`toks_to_sig` of each token array ``[N_i, K]`` of a list, in batches."""
        from .inference import batch_toks_to_sig

        return batch_toks_to_sig(self, toks, batch_size, progress)

    def _coding(self):
        """The autograd context of the coding paths: inference mode once prepared."""
        return torch.inference_mode() if self.inference_mode else torch.no_grad()

    def sig_to_lats(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """``sig [B, T_wav] -> lats [B, T, C]`` (encoder and compressor)."""
        return self._out(self.compressor(self.sig_to_feats(sig, lens)))

    def output_length(self, num_samples: int) -> int:
        """Output samples for ``num_samples`` input samples."""
        return num_samples * self.output_sample_rate // self.sample_rate

    def fit_length(self, rec: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Cut ``rec [B, T]`` to, or extend it by repeating its last sample to, ``num_samples``
        (encoders whose convolutions drop edge frames give slightly short reconstructions)."""
        if rec.shape[-1] >= num_samples:
            return rec[..., :num_samples]
        return nn.functional.pad(rec[:, None], (0, num_samples - rec.shape[-1]), mode="replicate")[:, 0]

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> CodecOutput:
        """Full analysis-synthesis pass for training.

        The reconstruction has ``output_length(sig.shape[-1])`` samples at ``output_sample_rate``.
        """
        feats = self.sig_to_feats(sig, lens)
        lats = self.compressor(feats)
        q = self.quantizer(lats)
        qfeats = self.decompressor(q.qlats)
        rec = self.fit_length(self.decoder(qfeats), self.output_length(sig.shape[-1]))
        return CodecOutput(rec, q.toks, lats, q.qlats, q.losses, feats, qfeats)

    def sig_to_toks(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """``sig [B, T_wav] -> toks [B, ceil(T_wav / hop_length), K]``."""
        with self._coding():
            return self.quantizer(self.sig_to_lats(sig, lens)).toks

    def toks_to_sig(self, toks: torch.Tensor) -> torch.Tensor:
        """``toks [B, T, K] -> sig [B, T * output_hop_length]`` at ``output_sample_rate``."""
        with self._coding():
            return self._out(self.decoder(self.decompressor(self._in(self.quantizer.toks_to_qlats(toks)))))

    # ------------------------------------------------------------------ streaming
    def _non_streaming_lobes(self) -> list[str]:
        lobes = [self.encoder, self.compressor, self.decompressor, self.decoder]
        return [type(m).__name__ for m in lobes if not (isinstance(m, nn.Identity) or getattr(m, "streaming", False))]

    @property
    def streaming(self) -> bool:
        """Whether every lobe is causal and streams (:meth:`stream_encoder`, :meth:`stream_decoder`)."""
        return not self._non_streaming_lobes()

    @property
    def chunk_size(self) -> int:
        """Input samples per streaming step: the encoder's look-ahead chunk, rounded up to whole
        token frames and to the decompressor's refiner chunk."""
        enc_chunk = self.encoder.hop_length * getattr(self.encoder, "chunk_frames", 1)
        dec_frames = getattr(self.decompressor, "chunk_frames", 1)
        dec_chunk = self.hop_length * max(1, -(-dec_frames // getattr(self.decompressor, "upsample", 1)))
        return math.lcm(enc_chunk, self.hop_length, dec_chunk)

    @property
    def algorithmic_latency(self) -> float:
        """Seconds from a sample entering the encoder to its reconstruction being computable:
        one streaming chunk (FocalCodec-Stream: 1280 samples = 80 ms)."""
        return self.chunk_size / self.sample_rate

    def _check_streaming(self) -> None:
        names = self._non_streaming_lobes()
        if names:
            raise CodecError(f"this codec does not stream: {', '.join(names)} not causal")

    def stream_encoder(self) -> "StreamEncoder":
        """A stateful encoder: feed consecutive chunks of ``chunk_size`` samples (the last may be
        shorter); the concatenated tokens equal :meth:`sig_to_toks` of the whole signal."""
        self._check_streaming()
        return StreamEncoder(self)

    def stream_decoder(self) -> "StreamDecoder":
        """A stateful decoder: feed consecutive token chunks of ``chunk_size / hop_length`` frames;
        the concatenated signal equals :meth:`toks_to_sig` of all tokens."""
        self._check_streaming()
        return StreamDecoder(self)

    def stream_sig_to_toks(self, sig: torch.Tensor) -> torch.Tensor:
        """:meth:`sig_to_toks` computed chunk by chunk (``chunk_size`` samples) with
        :meth:`stream_encoder`, as a streaming sender would: the same tokens."""
        with self._coding():
            enc = self.stream_encoder()
            return torch.cat([enc(chunk) for chunk in sig.split(self.chunk_size, dim=-1)], dim=1)

    def stream_toks_to_sig(self, toks: torch.Tensor) -> torch.Tensor:
        """:meth:`toks_to_sig` computed chunk by chunk (``chunk_size / hop_length`` frames) with
        :meth:`stream_decoder`, as a streaming receiver would."""
        with self._coding():
            dec = self.stream_decoder()
            return torch.cat([dec(chunk) for chunk in toks.split(self.chunk_size // self.hop_length, dim=1)], dim=-1)

    # ------------------------------------------------------------------ metadata
    def describe(self) -> dict:
        """Configuration facts written into bitstreams and results."""
        summary = self.layout.summary()
        quantizers = {name: type(q).__name__ for name, q in self.quantizers().items()}
        return {
            "encoder": type(self.encoder).__name__ if self.encoder is not None else None,
            "quantizer": quantizers[SINGLE_STREAM] if list(quantizers) == [SINGLE_STREAM] else quantizers,
            "decoder": type(self.decoder).__name__,
            "sample_rate": self.sample_rate,
            "output_sample_rate": self.output_sample_rate,
            "hop_length": self.hop_length,
            "frame_rate": self.frame_rate,
            "codebook_sizes": self.codebook_sizes,
            "bitrate": self.bitrate,
            "side_info_bits": self.side_info_bits,
            **{k: v for k, v in summary.items() if k.startswith("nominal_bitrate_with")},
            "streams": summary["streams"],
            "num_parameters": sum(p.numel() for p in self.parameters()),
            "streaming": self.streaming,
            **({"algorithmic_latency_ms": 1000 * self.algorithmic_latency} if self.streaming else {}),
        }

    def compute_config_hash(self, codec_yaml: str) -> str:
        """Fingerprint of the configuration and the weights (16 hex digits).

        Two checkpoints that differ in configuration or in any weight get different hashes,
        so a bitstream written by one is refused by the other.
        """
        h = hashlib.sha256(codec_yaml.encode())
        for name, tensor in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | os.PathLike, codec_yaml: str) -> None:
        """Write ``codec.yaml``, ``codec.ckpt`` and ``codec.json`` into ``folder`` atomically.

        ``codec_yaml`` is a HyperPyYAML text whose key ``codec`` builds this model.
        """
        self.config_hash = self.compute_config_hash(codec_yaml)
        with atomic_path(folder, is_dir=True) as tmp:
            atomic_write_text(tmp / CODEC_YAML, codec_yaml)
            torch.save(self.state_dict(), tmp / CODEC_CKPT)
            atomic_write_json(tmp / CODEC_META, {"config_hash": self.config_hash, **self.describe()})

    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike, map_location: str | torch.device = "cpu", trust_remote_code: bool = False
    ) -> "Codec":
        """Load from a folder written by :meth:`save_pretrained`, a published FocalCodec folder
        (the hub's ``config.json`` + ``model.safetensors``, v0.0.1 or v0.0.2 layout, through
        :func:`~speechbrain_codec.focalcodec.load_focalcodec`), or a Hugging Face hub id of
        either (``lucadellalib/focalcodec_12_5hz``).

        ``codec.yaml`` is HyperPyYAML, which calls the classes and functions it names: one that
        names anything outside the toolkit (``speechbrain_codec.*``, ``torch.nn.*``) is refused
        unless ``trust_remote_code=True`` (CLI ``--trust-remote-code``), as transformers' option
        of the same name; see :func:`check_trusted`. Weights load with ``weights_only=True``.

        Raises
        ------
        CodecError
            The folder lacks a file, the weights do not fit the configuration (the missing
            and unexpected keys are listed), or the configuration is not trusted.
        """
        from hyperpyyaml import load_hyperpyyaml

        folder = Path(source)
        if not folder.is_dir():
            if Path(source).exists() or str(source).startswith((".", "/")):
                raise CodecError(f"{source}: not a codec folder (expected {CODEC_YAML} and {CODEC_CKPT})")
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(str(source)))
            except Exception as err:
                raise CodecError(
                    f"{source}: no such folder, and the hub download failed ({type(err).__name__}); "
                    "pass a local folder written by training"
                ) from None
        if not (folder / CODEC_YAML).is_file() and (folder / "config.json").is_file():
            return cls._from_published(folder, map_location)
        for name in (CODEC_YAML, CODEC_CKPT):
            if not (folder / name).is_file():
                raise CodecError(f"{folder}: missing {name}; export the checkpoint again (training stage)")
        yaml_text = (folder / CODEC_YAML).read_text(encoding="utf-8")
        check_trusted(yaml_text, folder / CODEC_YAML, trust_remote_code)
        codec = load_hyperpyyaml(io.StringIO(yaml_text))["codec"]
        try:
            state = torch.load(folder / CODEC_CKPT, map_location=map_location, weights_only=True)
        except Exception as err:  # not a (weights-only) PyTorch file: truncated, another format, pickled code
            why = (str(err).strip().splitlines() or [""])[0][:160]
            raise CodecError(f"{folder / CODEC_CKPT}: not a PyTorch state dict ({type(err).__name__}: {why}); "
                             "export the checkpoint again (training stage)") from None
        load_state_checked(codec, state, str(folder / CODEC_CKPT), f"Export the checkpoint and {CODEC_YAML} together")
        meta_path = folder / CODEC_META
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        codec.config_hash = meta.get("config_hash") or codec.compute_config_hash(yaml_text)
        codec.load_token_models(folder)
        codec.eval()
        return codec

    @classmethod
    def _from_published(cls, folder: Path, map_location) -> "Codec":
        """A published FocalCodec folder; its config hash covers ``config.json`` and the weights."""
        from .focalcodec import load_focalcodec

        text = (folder / "config.json").read_text(encoding="utf-8")
        try:
            config = json.loads(text)
        except ValueError as err:
            raise CodecError(f"{folder / 'config.json'}: not JSON ({err})") from None
        if not isinstance(config, dict) or not {"encoder_config", "compressor_config", "decoder_config"} <= set(config):
            raise CodecError(f"{folder}: neither a codec folder ({CODEC_YAML} + {CODEC_CKPT}) nor a published "
                             "FocalCodec one (config.json with encoder/compressor/decoder configs + weights)")
        codec = load_focalcodec(str(folder)).to(map_location)
        codec.config_hash = codec.compute_config_hash(f"published FocalCodec config.json:\n{text}")
        codec.load_token_models(folder)
        return codec.eval()

    def load_token_models(self, folder: str | os.PathLike) -> None:
        """Load the entropy model of every stream that has one in ``folder``."""
        from .entropy import load_token_model

        self.token_models = {}
        for spec in self.layout:
            path = Path(folder) / entropy_model_file(spec.name)
            if path.is_file():
                model = load_token_model(path)
                if list(model.codebook_sizes) != list(spec.codebook_sizes):
                    raise CodecError(f"{path}: fitted for codebooks {list(model.codebook_sizes)}, stream "
                                     f"{spec.name} has {list(spec.codebook_sizes)}; fit it again (fit-entropy)")
                self.token_models[spec.name] = model


#: what a codec.yaml may build without ``trust_remote_code``: classes of the toolkit and of
#: torch.nn, and the toolkit's codec factories below
TRUSTED_PREFIXES = ("speechbrain_codec.", "torch.nn.")
TRUSTED_FACTORIES = frozenset({
    "speechbrain_codec.focalcodec.focalcodec_s",
    "speechbrain_codec.focalcodec.load_focalcodec",
    "speechbrain_codec.focalcodec.build_focalcodec",
})
_CORE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_DATA_TAGS = {"!ref", "!copy", "!PLACEHOLDER"}
_TUPLE = re.compile(r"^\(.*\)$", re.S)  # hyperpyyaml's implicit !tuple, parsed with an unsafe loader


def _nodes(yaml_text: str):
    """Every node of a YAML text, once each (aliases followed once; comments are not nodes)."""
    import yaml

    try:
        root = yaml.compose(yaml_text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise CodecError(f"not valid YAML ({str(err).splitlines()[0]})") from None
    seen, todo = set(), [root] if root is not None else []
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, yaml.MappingNode):
            todo.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)


def _trusted_target(path: str) -> bool:
    """``path`` resolves, through modules of the toolkit / torch.nn only, to one of their classes
    or to a listed codec factory (``pydoc.locate``, which hyperpyyaml uses, would follow any
    attribute, e.g. ``speechbrain_codec.utils.os.system``)."""
    import importlib
    import inspect

    if not path.startswith(TRUSTED_PREFIXES):
        return False
    roots = tuple(p.rstrip(".") for p in TRUSTED_PREFIXES)
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            continue
    else:
        return False
    for attr in parts[i:]:
        obj = getattr(obj, attr, None)
        if obj is None or (inspect.ismodule(obj) and not obj.__name__.startswith(roots)):
            return False
    if inspect.isclass(obj):
        return obj.__module__.startswith(roots)
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}" in TRUSTED_FACTORIES


def check_trusted(yaml_text: str, where: str | os.PathLike = "codec.yaml", trust_remote_code: bool = False) -> None:
    """Refuse a HyperPyYAML configuration that could run code outside the toolkit.

    Allowed without ``trust_remote_code``: plain YAML data, ``!ref`` / ``!copy`` /
    ``!PLACEHOLDER``, and ``!new:`` / ``!name:`` / ``!apply:`` of a class of the toolkit or of
    ``torch.nn`` or of one of ``TRUSTED_FACTORIES``, reached through those packages' modules only.
    Everything else — other callables (``!apply:os.system``), ``!applyref:``, ``!module:``,
    ``!include:``, ``!tuple``, PyYAML's ``!!python/...`` tags, an implicit tuple holding a tag —
    needs ``trust_remote_code=True``. Comments do not count.

    Example
    -------
    >>> check_trusted("codec: !new:speechbrain_codec.codec.Codec {}  # not !apply:os.system")
    >>> check_trusted("x: !apply:os.system [echo hi]")
    Traceback (most recent call last):
    ...
    speechbrain_codec.utils.CodecError: codec.yaml: calls !apply:os.system, outside the toolkit (its classes, torch.nn's, its codec factories): loading it could run that code; pass trust_remote_code=True (CLI --trust-remote-code) only if you trust where it came from
    """
    if trust_remote_code:
        return
    try:
        nodes = list(_nodes(yaml_text))
    except CodecError as err:
        raise CodecError(f"{where}: {err}") from None
    refused = set()
    for node in nodes:
        tag = node.tag
        if tag in _CORE_TAGS or tag in _DATA_TAGS:
            if tag == "tag:yaml.org,2002:str" and node.style is None and _TUPLE.match(node.value) and "!" in node.value:
                refused.add(f"the tuple {node.value[:40]}")
            continue
        kind, _, target = tag.partition(":")
        if kind in ("!new", "!name", "!apply") and _trusted_target(target):
            continue
        refused.add(tag)
    if refused:
        raise CodecError(
            f"{where}: calls {', '.join(sorted(refused))}, outside the toolkit (its classes, torch.nn's, its codec "
            "factories): loading it could run that code; pass trust_remote_code=True (CLI --trust-remote-code) "
            "only if you trust where it came from")


class StreamEncoder:
    """Chunk-by-chunk ``sig -> toks`` with the lobes' left contexts carried in ``cache``.

    Example
    -------
    >>> from speechbrain_codec.encoders import FocalWavLM
    >>> from speechbrain_codec.compressors import FocalCompressor, FocalDecompressor
    >>> from speechbrain_codec.quantizers import BinarySphericalQuantizer
    >>> from speechbrain_codec.decoders import WaveNeXtDecoder
    >>> enc = FocalWavLM([8] * 7, num_layers=1, dim=16, ffn_dim=32, num_heads=4, conv_pos=8,
    ...                  conv_pos_groups=4, causal=True)
    >>> codec = Codec(enc, BinarySphericalQuantizer(16), WaveNeXtDecoder(16, 16, 32, 1, 480),
    ...               FocalCompressor(16, 4, [8], [1], causal=True),
    ...               FocalDecompressor(4, 16, [8], [1], causal=True)).eval()
    >>> codec.chunk_size, codec.algorithmic_latency
    (1280, 0.08)
    >>> sig = torch.randn(1, 4 * 1280)
    >>> stream = codec.stream_encoder()
    >>> toks = torch.cat([stream(c) for c in sig.split(codec.chunk_size, dim=-1)], dim=1)
    >>> torch.equal(toks, codec.sig_to_toks(sig))
    True
    """

    def __init__(self, codec: Codec) -> None:
        self.codec, self.cache, self.done = codec, {}, False

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor:
        """``chunk [B, n]`` -> ``toks [B, n / hop_length, K]``."""
        if self.done:
            raise CodecError("stream_encoder: a chunk shorter than chunk_size ended the stream")
        if chunk.shape[-1] % self.codec.chunk_size:
            self.done = True
            chunk = self.codec.pad(chunk)
        c = self.codec
        with c._coding():
            lats = c.compressor(c.encoder(c._in(chunk), cache=self.cache), cache=self.cache)
            return c.quantizer(c._out(lats)).toks


class StreamDecoder:
    """Chunk-by-chunk ``toks -> sig`` (see :class:`StreamEncoder`)."""

    def __init__(self, codec: Codec) -> None:
        self.codec, self.cache = codec, {}

    def __call__(self, toks: torch.Tensor) -> torch.Tensor:
        """``toks [B, n, K]`` -> ``sig [B, n * output_hop_length]``."""
        c = self.codec
        with c._coding():
            x = c.decompressor(c._in(c.quantizer.toks_to_qlats(toks)), cache=self.cache)
            return c._out(c.decoder(x, cache=self.cache))
