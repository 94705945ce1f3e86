"""Self-supervised speech encoders through Hugging Face transformers.

WavLM, HuBERT, DistilHuBERT (a 2-layer HuBERT), wav2vec 2.0 and the Whisper encoder, loaded
with ``from_pretrained(hub id or local folder)``. Choose one layer (HuBERT layer 6 in the LM-loss
codec, WavLM layer 11 in DP-SLM), a list averaged, concatenated or combined by a learned
weighted sum (SUPERB style), and the layers above the highest one asked for are dropped so they
cost nothing.

Layer numbering follows Hugging Face ``hidden_states`` (transformers 5): 0 is the transformer
input (CNN features + positional convolution), ``k`` the output of transformer layer ``k``, before
the final LayerNorm of "stable layer norm" models (WavLM/HuBERT Large, Whisper).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from ..dataio import resample
from ..utils import CodecError
from .base import Encoder
from .whisper_frontend import WhisperLogMel

__all__ = ["SSLEncoder"]

logger = logging.getLogger("speechbrain_codec")


def _load(source: str):
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(source)
        model = AutoModel.from_pretrained(source)
    except OSError as err:
        raise CodecError(
            f"{source}: cannot load the model ({err.__class__.__name__}); pass a hub id on a machine "
            "with hub access, or a local folder written by save_pretrained (config.json + weights)"
        ) from None
    if config.model_type == "whisper":
        model = model.encoder
    return config, model


class SSLEncoder(Encoder):
    """``sig [B, T_wav] -> feats [B, T, C]`` from a transformers speech model.

    Parameters
    ----------
    source : str
        Hub id (``microsoft/wavlm-large``, ``facebook/hubert-base-ls960``,
        ``ntu-spml/distilhubert``, ``openai/whisper-small``) or a local folder.
    layers : int or sequence of int
        Layer(s) to return (see the module docstring for numbering); negative counts from the top.
    reduction : str
        For several layers: ``"weighted"`` (learned softmax weights), ``"mean"`` or ``"concat"``.
    freeze : bool
        Keep the model's weights fixed and in eval mode (gradients still reach the input, so a
        frozen encoder can score a decoder's output in a loss).
    drop_upper_layers : bool
        Delete the transformer layers above the highest requested one.
    input_sample_rate : int, optional
        Rate of the signals given to ``forward``; other than the model's 16 kHz, they are
        resampled (with a one-time notice).
    padding : str
        How the waveform is padded for the convolutional front end (400-sample receptive field,
        hop 320): ``"center"`` (default) adds 40 zeros on **both** sides, so a signal of ``N``
        samples gives ``floor(N / 320)`` frames and frame ``k`` is centred on sample
        ``320 k + 160`` (the references of every spec that uses this encoder: the LM-loss codec's
        HuBERT-base L6 and TTR WavLM-base, DP-SLM's WavLM-large L11); ``"end"`` adds 80 zeros at
        the end (frame ``k`` covers samples ``320 k … 320 k + 399``); ``"none"``. Ignored for
        Whisper (its own 30-s front end).
    normalize_input : bool or "auto"
        Zero-mean / unit-variance per utterance before the model. Default ``False``: none of the
        specs' references normalises the waveform (DP-SLM deliberately feeds WavLM-large raw
        audio, unlike WavLM's own recipe). ``"auto"`` reads ``do_normalize`` from the model's
        feature-extractor config, as Hugging Face's pipeline does.

    Example
    -------
    >>> import tempfile
    >>> from transformers import WavLMConfig, WavLMModel
    >>> folder = tempfile.mkdtemp()
    >>> cfg = WavLMConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
    ...                   intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=16,
    ...                   num_conv_pos_embedding_groups=2)
    >>> WavLMModel(cfg).save_pretrained(folder)
    >>> enc = SSLEncoder(folder, layers=[1, 2], reduction="weighted")
    >>> len(enc.model.encoder.layers), enc(torch.randn(2, 3200)).shape
    (2, torch.Size([2, 10, 16]))
    """

    sample_rate = 16000

    def __init__(
        self,
        source: str,
        layers: int | Sequence[int] = -1,
        reduction: str = "weighted",
        freeze: bool = True,
        drop_upper_layers: bool = True,
        input_sample_rate: int | None = None,
        padding: str = "center",
        normalize_input: bool | str = False,
    ) -> None:
        super().__init__()
        self.source = source
        self.config, self.model = _load(source)
        self.is_whisper = self.config.model_type == "whisper"
        blocks = self._blocks()
        n = len(blocks)
        requested = [layers] if isinstance(layers, int) else list(layers)
        self.layers = [k + n + 1 if k < 0 else k for k in requested]
        if not self.layers or any(not 0 <= k <= n for k in self.layers):
            raise CodecError(f"{source}: layers {requested} outside 0..{n} (the model has {n} layers)")
        if reduction not in ("weighted", "mean", "concat"):
            raise CodecError(f"reduction must be weighted, mean or concat, got {reduction!r}")
        self.reduction = reduction
        top = max(self.layers)
        if drop_upper_layers and top < n:
            del blocks[max(top, 1):]  # layer 0 is read from the first block's input
        self.hop_length = 320  # 50 Hz frames (wav2vec-style CNN; Whisper's 2 x 160-sample mel hop)
        if self.is_whisper:
            self.frontend = WhisperLogMel.for_model(self.config)
        if normalize_input == "auto":
            normalize_input = self._extractor_normalizes(source)
        elif not isinstance(normalize_input, bool):
            raise CodecError(f"normalize_input must be true, false or auto, got {normalize_input!r}")
        self.normalize_input = normalize_input
        pads = {"center": (40, 40), "end": (0, 80), "none": (0, 0)}
        if padding not in pads:
            raise CodecError(f"padding must be one of {sorted(pads)}, got {padding!r}")
        self.padding = padding
        self.pads = (0, 0) if self.is_whisper else pads[padding]
        self.out_channels = self.config.hidden_size * (len(self.layers) if reduction == "concat" else 1)
        if len(self.layers) > 1 and reduction == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(len(self.layers)))
        self.input_sample_rate = input_sample_rate or self.sample_rate
        self._noticed = False
        self.freeze = freeze
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def _blocks(self) -> nn.ModuleList:
        return self.model.layers if self.is_whisper else self.model.encoder.layers

    @staticmethod
    def _extractor_normalizes(source: str) -> bool:
        try:
            from transformers import AutoFeatureExtractor

            return bool(getattr(AutoFeatureExtractor.from_pretrained(source), "do_normalize", False))
        except Exception:  # no preprocessor_config.json: the model's defaults (no normalisation)
            return False

    def train(self, mode: bool = True) -> "SSLEncoder":
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def _resample(self, sig: torch.Tensor) -> torch.Tensor:
        if self.input_sample_rate == self.sample_rate:
            return sig
        if not self._noticed:
            logger.warning("%s: resampling the input from %d Hz to %d Hz", self.source, self.input_sample_rate, self.sample_rate)
            self._noticed = True
        return resample(sig, self.input_sample_rate, self.sample_rate)

    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        """``sig [B, T_wav]`` (``lens`` relative lengths) -> ``feats [B, T, C]``.

        ``T = floor((T_wav + pads - 400) / 320) + 1`` for the wav2vec-style models (with the
        default centre padding: ``floor(T_wav / 320)``; a codec pads its input to a multiple of
        320 first), at most ``ceil(T_wav / 320)``; Whisper: ``ceil(T_wav / 320)``."""
        sig = self._resample(sig)
        n_frames = -(-sig.shape[-1] // self.hop_length)
        n_valid = None if lens is None else (lens * sig.shape[-1]).round().long()
        if self.normalize_input:
            sig = self._normalize(sig, n_valid)
        captured: dict[int, torch.Tensor] = {}
        blocks = self._blocks()

        def grab(index):
            def hook(module, args, output):
                captured[index] = output[0] if isinstance(output, tuple) else output
            return hook

        handles = [blocks[0].register_forward_pre_hook(lambda m, args: captured.__setitem__(0, args[0]))]
        handles += [blk.register_forward_hook(grab(i + 1)) for i, blk in enumerate(blocks)]
        try:
            if self.is_whisper:
                out = self.model(self.frontend(sig))  # outputs are read from the hooks
            else:
                left, right = self.pads
                if sig.shape[-1] + left + right < 400:
                    raise CodecError(
                        f"{self.source}: {sig.shape[-1]} samples give no frame (the front end needs "
                        f"{400 - left - right} with padding={self.padding!r}); pad the signal first"
                    )
                sig = nn.functional.pad(sig, (left, right))
                mask = None
                if n_valid is not None and getattr(self.config, "feat_extract_norm", "group") == "layer":
                    # the model masks frames past the valid samples (+ the same edge padding)
                    mask = (torch.arange(sig.shape[-1], device=sig.device)[None] < n_valid[:, None] + left + right).long()
                out = self.model(sig, attention_mask=mask)
        finally:
            for h in handles:
                h.remove()
        del out
        feats = [captured[k][:, :n_frames] for k in self.layers]
        if len(feats) == 1:
            return feats[0]
        if self.reduction == "concat":
            return torch.cat(feats, dim=-1)
        stacked = torch.stack(feats)
        if self.reduction == "mean":
            return stacked.mean(0)
        return (self.layer_weights.softmax(0)[:, None, None, None] * stacked).sum(0)

    @staticmethod
    def _normalize(sig: torch.Tensor, n_valid: torch.Tensor | None) -> torch.Tensor:
        if n_valid is None:
            return (sig - sig.mean(-1, keepdim=True)) / (sig.var(-1, keepdim=True, unbiased=False) + 1e-7).sqrt()
        mask = (torch.arange(sig.shape[-1], device=sig.device)[None] < n_valid[:, None]).to(sig.dtype)
        count = mask.sum(-1, keepdim=True).clamp(min=1)
        mean = (sig * mask).sum(-1, keepdim=True) / count
        var = (((sig - mean) * mask) ** 2).sum(-1, keepdim=True) / count
        return (sig - mean) / (var + 1e-7).sqrt() * mask
