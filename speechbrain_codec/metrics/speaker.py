"""Speaker similarity: cosine similarity of speaker embeddings of the reference and the decoded clip.

Backends (``SpeakerSimilarity(spec)``; the spec is written into the table header):

* ``resemblyzer`` — the GE2E encoder of the resemblyzer wheel (256-d, offline).
* ``wavlm-sv:<hub id or folder>`` — a WavLM x-vector speaker-verification model through
  transformers ``WavLMForXVector`` (FocalCodec's ``microsoft/wavlm-base-sv``, or
  ``microsoft/wavlm-base-plus-sv``); a bare id or folder (no prefix) is read the same way.
* ``wavlm-ecapa:<checkpoint.pth>[@<WavLM-large hub id or folder>]`` — the ECAPA-TDNN speaker
  verifier on WavLM-large layers of UniSpeech (``wavlm_large_finetune.pth``), the SIM of
  LLaSA / XCodec2, Seed-TTS-eval and F5-TTS: a softmax-weighted sum of the 25 hidden states,
  instance norm, ECAPA-TDNN (512 channels, SE-Res2 blocks with dilations 2, 3, 4, attentive
  statistics pooling), 256-d embedding. The head's parameter names are those of UniSpeech's
  ``ECAPA_TDNN_SMALL``, so its checkpoint loads unchanged; the WavLM weights it holds
  (``feature_extract.model.*``, fairseq/unilm names) are mapped onto transformers' WavLM with the
  names of transformers' own WavLM conversion script. Without them in the checkpoint, WavLM
  comes from the source after ``@`` (default ``microsoft/wavlm-large``).
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SpeakerSimilarity", "EcapaTDNN", "WavLMEcapa", "unilm_to_hf_wavlm", "speaker_backend_name"]


def speaker_backend_name(spec: str) -> str:
    """What the header says for a backend spec."""
    kind, _, source = spec.partition(":")
    if kind == "resemblyzer":
        return "resemblyzer GE2E (256-d)"
    if kind == "wavlm-ecapa":
        return f"WavLM-large ECAPA-TDNN ({source})"
    return f"WavLM x-vector ({source if kind == 'wavlm-sv' else spec})"


# ------------------------------------------------------------------ ECAPA-TDNN (UniSpeech layout)
class _ConvReluBn(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 1, padding: int = 0, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, 1, padding, dilation)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class _Res2(nn.Module):
    """Res2Net-style multi-scale convolution: ``scale`` groups, each but the last convolved after
    adding the previous group's output (conv -> relu -> bn)."""

    def __init__(self, channels: int, kernel: int, padding: int, dilation: int, scale: int) -> None:
        super().__init__()
        self.width, self.nums = channels // scale, max(scale - 1, 1)
        self.scale = scale
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel, 1, padding, dilation) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(self.nums))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, out, sp = torch.split(x, self.width, 1), [], None
        for i in range(self.nums):
            sp = parts[i] if i == 0 else sp + parts[i]
            sp = self.bns[i](F.relu(self.convs[i](sp)))
            out.append(sp)
        if self.scale != 1:
            out.append(parts[self.nums])
        return torch.cat(out, 1)


class _SE(nn.Module):
    def __init__(self, channels: int, bottleneck: int) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(channels, bottleneck), nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(2))))).unsqueeze(2)


class _SERes2Block(nn.Module):
    def __init__(self, channels: int, dilation: int, scale: int = 8, bottleneck: int = 128) -> None:
        super().__init__()
        self.Conv1dReluBn1 = _ConvReluBn(channels, channels)
        self.Res2Conv1dReluBn = _Res2(channels, 3, dilation, dilation, scale)
        self.Conv1dReluBn2 = _ConvReluBn(channels, channels)
        self.SE_Connect = _SE(channels, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.SE_Connect(self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x))))


class _AttentiveStatsPool(nn.Module):
    def __init__(self, dim: int, attention: int = 128) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Conv1d(dim, attention, 1), nn.Conv1d(attention, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x))), dim=2)
        mean = (alpha * x).sum(2)
        std = ((alpha * x * x).sum(2) - mean**2).clamp(min=1e-9).sqrt()
        return torch.cat([mean, std], 1)


class EcapaTDNN(nn.Module):
    """ECAPA-TDNN head over weighted SSL layers: feats ``[B, L, T, C]`` (L hidden states) ->
    embeddings ``[B, emb_dim]``.

    Example
    -------
    >>> head = EcapaTDNN(feat_dim=16, num_layers=3, channels=16, emb_dim=8).eval()
    >>> head(torch.randn(1, 3, 20, 16)).shape
    torch.Size([1, 8])
    """

    def __init__(self, feat_dim: int = 1024, num_layers: int = 25, channels: int = 512, emb_dim: int = 256) -> None:
        super().__init__()
        self.feature_weight = nn.Parameter(torch.zeros(num_layers))
        self.instance_norm = nn.InstanceNorm1d(feat_dim)
        self.layer1 = _ConvReluBn(feat_dim, channels, 5, 2)
        self.layer2, self.layer3, self.layer4 = (_SERes2Block(channels, d, bottleneck=min(128, channels)) for d in (2, 3, 4))
        cat = 3 * channels
        self.conv = nn.Conv1d(cat, cat, 1)
        self.pooling = _AttentiveStatsPool(cat, min(128, channels))
        self.bn = nn.BatchNorm1d(2 * cat)
        self.linear = nn.Linear(2 * cat, emb_dim)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.feature_weight, -1)[None, :, None, None]
        x = self.instance_norm((w * layers).sum(1).transpose(1, 2) + 1e-6)
        o1 = self.layer1(x)
        o2 = self.layer2(o1)
        o3 = self.layer3(o2)
        o4 = self.layer4(o3)
        out = F.relu(self.conv(torch.cat([o2, o3, o4], 1)))
        return self.linear(self.bn(self.pooling(out)))


_UNILM = [  # fairseq / unilm WavLM names -> transformers WavLMModel names (transformers' conversion MAPPING)
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2(?:\.1)?\.(weight|bias)$", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"^layer_norm\.(weight|bias)$", r"feature_projection.layer_norm.\1"),
    (r"^post_extract_proj\.(weight|bias)$", r"feature_projection.projection.\1"),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.layer_norm\.(weight|bias)$", r"encoder.layer_norm.\1"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.(k|q|v|out)_proj\.(weight|bias)$", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_linear\.(weight|bias)$", r"encoder.layers.\1.attention.gru_rel_pos_linear.\2"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_a$", r"encoder.layers.\1.attention.gru_rel_pos_const"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$", r"encoder.layers.\1.attention.rel_attn_embed.weight"),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$", r"encoder.layers.\1.layer_norm.\2"),
    (r"^encoder\.layers\.(\d+)\.fc1\.(weight|bias)$", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.fc2\.(weight|bias)$", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"^mask_emb$", "masked_spec_embed"),
]


def unilm_to_hf_wavlm(name: str) -> str | None:
    """The transformers WavLMModel name of a fairseq/unilm WavLM parameter (None: not part of it,
    e.g. the pre-training heads).

    >>> unilm_to_hf_wavlm("encoder.layers.3.self_attn.grep_a")
    'encoder.layers.3.attention.gru_rel_pos_const'
    >>> unilm_to_hf_wavlm("label_embs_concat") is None
    True
    """
    for pattern, repl in _UNILM:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    return None


class WavLMEcapa(nn.Module):
    """WavLM (transformers) hidden states -> :class:`EcapaTDNN` embedding, as UniSpeech's
    ``ECAPA_TDNN_SMALL(feat_type="wavlm_large")``: the waveform layer-normalised (WavLM-large's
    ``normalize``), every hidden state from the CNN projection through the last layer *before*
    the final layer norm (s3prl's hidden states)."""

    def __init__(self, wavlm: nn.Module, head: EcapaTDNN) -> None:
        super().__init__()
        self.wavlm, self.head = wavlm, head

    @classmethod
    def from_checkpoint(cls, checkpoint: str, wavlm_source: str = "microsoft/wavlm-large",
                        device: str = "cpu") -> WavLMEcapa:
        from transformers import WavLMConfig, WavLMModel

        from ..utils import CodecError

        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        ssl = {k[len("feature_extract.model."):]: v for k, v in state.items() if k.startswith("feature_extract.model.")}
        head_state = {k: v for k, v in state.items() if not k.startswith(("feature_extract.", "loss_calculator."))}
        if "linear.weight" not in head_state or "feature_weight" not in head_state:
            raise CodecError(f"{checkpoint}: not a WavLM ECAPA-TDNN speaker checkpoint (no 'linear.weight' / "
                             "'feature_weight'); use UniSpeech's wavlm_large_finetune.pth")
        wavlm = WavLMModel(WavLMConfig.from_pretrained(wavlm_source)) if ssl else WavLMModel.from_pretrained(wavlm_source)
        if ssl:
            mapped = {unilm_to_hf_wavlm(k): v for k, v in ssl.items()}
            mapped.pop(None, None)
            missing = set(wavlm.state_dict()) - set(mapped) - {"masked_spec_embed"}
            if missing:
                raise CodecError(f"{checkpoint}: its WavLM weights lack {sorted(missing)[:3]}...: not a WavLM-large "
                                 "ECAPA checkpoint of UniSpeech")
            wavlm.load_state_dict(mapped, strict=False)
        emb, cat2 = head_state["linear.weight"].shape
        feat_dim = head_state["layer1.conv.weight"].shape[1]
        head = EcapaTDNN(feat_dim, head_state["feature_weight"].numel(), head_state["layer1.conv.weight"].shape[0], emb)
        head.load_state_dict(head_state)
        return cls(wavlm, head).to(device).eval()

    def forward(self, sig: torch.Tensor) -> torch.Tensor:
        """``sig [B, T]`` at 16 kHz -> ``[B, emb_dim]``."""
        sig = F.layer_norm(sig, sig.shape[-1:])
        last = {}
        hook = self.wavlm.encoder.layers[-1].register_forward_hook(lambda m, i, o: last.update(x=o[0]))
        try:
            out = self.wavlm(sig, output_hidden_states=True)
        finally:
            hook.remove()
        states = list(out.hidden_states[:-1]) + [last["x"]]  # the last one before the final layer norm
        return self.head(torch.stack(states, 1))


class SpeakerSimilarity:
    """``SpeakerSimilarity(spec)(ref, deg, sr) -> cosine similarity`` in [-1, 1].

    Parameters
    ----------
    backend : str
        ``resemblyzer``, ``wavlm-sv:<id or folder>`` (or a bare transformers x-vector id /
        folder), ``wavlm-ecapa:<checkpoint>[@<WavLM-large id or folder>]``.
    device : str
        Where the neural backends run.
    """

    def __init__(self, backend: str = "resemblyzer", device: str = "cpu") -> None:
        self.backend, self.device = backend, device
        kind, _, source = backend.partition(":")
        if backend == "resemblyzer":
            from resemblyzer import VoiceEncoder

            self.kind = "resemblyzer"
            self.encoder = VoiceEncoder(device="cpu", verbose=False)
        elif kind == "wavlm-ecapa":
            ckpt, _, wavlm = source.partition("@")
            self.kind = "ecapa"
            self.model = WavLMEcapa.from_checkpoint(ckpt, wavlm or "microsoft/wavlm-large", device)
        else:
            from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

            source = source if kind == "wavlm-sv" else backend
            self.kind = "xvector"
            self.extractor = AutoFeatureExtractor.from_pretrained(source)
            self.model = AutoModelForAudioXVector.from_pretrained(source).to(device).eval()

    def embed(self, sig: np.ndarray, sr: int) -> np.ndarray:
        if self.kind == "resemblyzer":
            from resemblyzer import preprocess_wav

            return self.encoder.embed_utterance(preprocess_wav(np.asarray(sig, dtype=np.float32), sr))
        if sr != 16000:
            from ..dataio import resample

            sig = resample(torch.as_tensor(sig, dtype=torch.float32), sr, 16000).numpy()
        with torch.no_grad():
            if self.kind == "ecapa":
                x = torch.as_tensor(np.asarray(sig, dtype=np.float32))[None].to(self.device)
                return self.model(x)[0].cpu().numpy()
            inputs = self.extractor(np.asarray(sig, dtype=np.float32), sampling_rate=16000, return_tensors="pt")
            return self.model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings[0].cpu().numpy()

    def __call__(self, ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
        a, b = self.embed(ref, sr), self.embed(deg, sr)
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
