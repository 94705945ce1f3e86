"""Speech token sources for Learnable-Speech (learnable_speech.md §1.3, §2.7).

One interface, two implementations:

* :class:`S3SpeechTokenizer` - the reference's S3Tokenizer v2 (``speech_tokenizer_v2_25hz``,
  FSQ 3^8 = 6561 codes at 25 Hz, 16 kHz input) through the ``s3tokenizer`` PyPI package, when
  its ONNX weights are on this machine (:meth:`S3SpeechTokenizer.from_pretrained` never
  downloads: a missing file is a one-line :class:`CodecError` naming where to put it).
* :class:`FSQSpeechTokenizer` - our own: any single-codebook :class:`~speechbrain_codec.codec.Codec`
  trained with an FSQ quantizer (e.g. a mel or SSL encoder -> :class:`~speechbrain_codec.quantizers.FSQ`
  ``[3] * 8`` at 25 Hz, the S3 token layout), loaded from an exported folder.

``tokenizer(sig [B, T] at tokenizer.sample_rate, lens [B] samples) -> (toks [B, N] int64,
tok_lens [B])``; ``vocab_size``, ``frame_rate``, ``bitrate = frame_rate * log2(vocab_size)``
(S3: 25 x log2 6561 = 317.0 b/s). :func:`load_speech_tokenizer` picks one from a string.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from .dataio import resample
from .utils import CodecError

__all__ = ["SpeechTokenizer", "S3SpeechTokenizer", "FSQSpeechTokenizer", "load_speech_tokenizer"]

S3_NAME = "speech_tokenizer_v2_25hz"
S3_ONNX = {"speech_tokenizer_v2_25hz": "speech_tokenizer_v2.onnx", "speech_tokenizer_v1_25hz": "speech_tokenizer_v1.onnx",
           "speech_tokenizer_v1": "speech_tokenizer_v1.onnx", "speech_tokenizer_v3_25hz": "speech_tokenizer_v3.onnx"}


class SpeechTokenizer(nn.Module):
    """Interface: ``sample_rate`` (input Hz), ``frame_rate`` (tokens / s), ``vocab_size``."""

    sample_rate: int
    frame_rate: float
    vocab_size: int

    @property
    def bitrate(self) -> float:
        """Nominal bits per second: ``frame_rate * log2(vocab_size)``."""
        return self.frame_rate * math.log2(self.vocab_size)

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "sample_rate": self.sample_rate, "frame_rate": self.frame_rate,
                "vocab_size": self.vocab_size, "bitrate": self.bitrate}

    def num_tokens(self, num_samples: int) -> int:
        """Tokens for ``num_samples`` input samples."""
        return math.ceil(num_samples * self.frame_rate / self.sample_rate)


class S3SpeechTokenizer(SpeechTokenizer):
    """S3Tokenizer through the ``s3tokenizer`` package (wraps a built ``S3TokenizerV2``-like model).

    Input: ``sample_rate`` Hz (resampled to 16 kHz), 128-bin log-mel (``s3tokenizer``'s own
    ``log_mel_spectrogram``), the model's ``quantize``.

    Example (random weights: the package's model class with a small config)
    -------
    >>> from s3tokenizer.model_v2 import ModelConfig, S3TokenizerV2
    >>> m = S3TokenizerV2("speech_tokenizer_v2_25hz", ModelConfig(n_audio_state=128, n_audio_head=2, n_audio_layer=1))
    >>> tok = S3SpeechTokenizer(m, sample_rate=24000)
    >>> toks, lens = tok(torch.randn(2, 24000), torch.tensor([24000, 12000]))
    >>> toks.shape, lens.tolist(), tok.vocab_size, round(tok.bitrate, 1)
    (torch.Size([2, 25]), [25, 13], 6561, 317.0)
    """

    frame_rate = 25.0

    def __init__(self, model: nn.Module, sample_rate: int = 24000) -> None:
        super().__init__()
        self.model = model.eval()
        self.sample_rate = sample_rate
        self.vocab_size = int(getattr(getattr(model, "config", None), "n_codebook_size", 3**8))
        name = getattr(model, "name", S3_NAME)
        self.frame_rate = 50.0 if name == "speech_tokenizer_v1" else 25.0

    @classmethod
    def from_pretrained(cls, name_or_path: str = S3_NAME, download_root: str | os.PathLike | None = None,
                        sample_rate: int = 24000) -> "S3SpeechTokenizer":
        """Load the ONNX weights from ``name_or_path`` (a ``.onnx`` file) or from
        ``download_root/<name>.onnx`` (default ``~/.cache/s3tokenizer``). Never downloads."""
        try:
            import s3tokenizer
        except ImportError as err:  # pragma: no cover - the package is a requirement
            raise CodecError("the s3tokenizer package is not installed: pip install s3tokenizer") from err
        path = Path(name_or_path)
        if path.is_file():
            name = next((n for n, f in S3_ONNX.items() if path.name in (f, f"{n}.onnx")), S3_NAME)
            model_cls = s3tokenizer.S3TokenizerV2 if "v2" in name else \
                s3tokenizer.S3TokenizerV3 if "v3" in name else s3tokenizer.S3Tokenizer
            model = model_cls(name)
            model.init_from_onnx(str(path))
            return cls(model, sample_rate)
        if name_or_path not in S3_ONNX:
            raise CodecError(f"{name_or_path}: neither an .onnx file nor an S3Tokenizer name ({', '.join(S3_ONNX)})")
        root = Path(download_root) if download_root else \
            Path(os.getenv("XDG_CACHE_HOME", Path.home() / ".cache")) / "s3tokenizer"
        local = root / f"{name_or_path}.onnx"
        if not local.is_file():
            raise CodecError(
                f"{local}: S3Tokenizer weights not found (this machine does not download them); copy "
                f"{S3_ONNX[name_or_path]} of the CosyVoice2-0.5B release there (or pass the .onnx path), "
                "or use our FSQ tokenizer (--token_source fsq)")
        return cls(s3tokenizer.load_model(name_or_path, str(root)), sample_rate)

    @torch.no_grad()
    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        import s3tokenizer

        device = next(self.model.parameters()).device
        if lens is None:
            lens = torch.full((sig.shape[0],), sig.shape[-1], dtype=torch.long)
        wav16 = resample(sig.float().cpu(), self.sample_rate, 16000)
        lens16 = [max(1, round(int(n) * 16000 / self.sample_rate)) for n in lens]
        mels = [s3tokenizer.log_mel_spectrogram(wav16[i, :n]) for i, n in enumerate(lens16)]
        mel, mel_lens = s3tokenizer.padding(mels)
        toks, tok_lens = self.model.quantize(mel.to(device), mel_lens.to(device))
        return toks.long(), tok_lens.long()


class FSQSpeechTokenizer(SpeechTokenizer):
    """Tokens of a single-codebook :class:`Codec` (our FSQ tokenizer) - a codec or its exported folder.

    Example
    -------
    >>> from speechbrain_codec.codec import Codec
    >>> from speechbrain_codec.encoders import MelEncoder
    >>> from speechbrain_codec.quantizers import FSQ
    >>> from speechbrain_codec.decoders import VocosDecoder
    >>> codec = Codec(MelEncoder(24000, 8, mel_hop=480, dim=16, intermediate_dim=32, num_layers=1, downsample=2),
    ...               FSQ([3] * 8, dim=8), VocosDecoder(8, dim=16, intermediate_dim=32, num_layers=1, n_fft=1920,
    ...               hop_length=480, upsample=2, sample_rate=24000))
    >>> tok = FSQSpeechTokenizer(codec)
    >>> toks, lens = tok(torch.randn(2, 24000), torch.tensor([24000, 12000]))
    >>> toks.shape, lens.tolist(), tok.vocab_size, round(tok.bitrate, 1)
    (torch.Size([2, 25]), [25, 13], 6561, 317.0)
    """

    def __init__(self, codec) -> None:
        super().__init__()
        from .codec import Codec

        if isinstance(codec, (str, os.PathLike)):
            codec = Codec.from_pretrained(codec)
        if len(codec.codebook_sizes) != 1:
            raise CodecError(f"a speech tokenizer needs one codebook; this codec has {codec.codebook_sizes}")
        self.codec = codec.eval()
        self.sample_rate = codec.sample_rate
        self.frame_rate = codec.frame_rate
        self.vocab_size = int(codec.codebook_sizes[0])

    @torch.no_grad()
    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.codec.parameters()).device
        if lens is None:
            lens = torch.full((sig.shape[0],), sig.shape[-1], dtype=torch.long)
        toks = self.codec.sig_to_toks(sig.to(device))[..., 0].long()
        hop = self.codec.hop_length
        tok_lens = torch.clamp((lens.to(device) + hop - 1) // hop, max=toks.shape[1])
        return toks, tok_lens.long()


def load_speech_tokenizer(source: str, sample_rate: int = 24000) -> SpeechTokenizer:
    """``"s3"`` / ``"s3:<name or .onnx path>"`` -> :class:`S3SpeechTokenizer` (local weights only);
    anything else is an exported codec folder -> :class:`FSQSpeechTokenizer`."""
    if source == "s3" or source.startswith("s3:"):
        name = source[3:] or S3_NAME
        return S3SpeechTokenizer.from_pretrained(name, sample_rate=sample_rate)
    if not Path(source, "codec.yaml").is_file() and not Path(source).is_dir():
        raise CodecError(f"{source}: not an exported codec folder (codec.yaml + codec.ckpt) nor 's3[:name]'")
    return FSQSpeechTokenizer(source)
