"""Autoregressive text -> speech-token LM with a learnable speaker encoder (learnable_speech.md §2.5).

CosyVoice 2's ``Qwen2LM`` layout around any Hugging Face decoder (``inputs_embeds`` in, hidden
states out): the published backbone is Qwen2.5-0.5B (:func:`qwen2_config` ``"0.5b"``: 24 layers,
hidden 896, 14 heads, 2 KV heads, FFN 4864; load real weights with :func:`qwen2_backbone` from a
local folder); tests and the debug recipe use a tiny ``Qwen2Config``.

* ``llm_embedding`` (2 x H: 0 = SOS/EOS, 1 = TASK_ID), ``speech_embedding`` ((V + 3) x H),
  ``llm_decoder`` (H -> V + 3; V = end of speech, V + 2 = "fill"), ``spk_embed_affine_layer``
  (192 -> H); text embeddings are the backbone's input embeddings.
* :class:`LearnableSpeakerEncoder` (Tortoise conditioning encoder): 1x1 conv 80 -> 512, 6
  attention blocks (GroupNorm(32), 1x1 conv QKV, 8 heads, no positions, zero-initialised output
  conv, residual), the **first frame** pooled, Linear 512 -> 192, L2 normalisation.
* Unistream layout ``[SOS] [SPK] [text] [TASK] [s_1 .. s_M]`` with targets
  ``[-, -, -..., s_1, s_2 .. s_M, EOS]``; bistream (blocks of 5 text + 15 speech tokens, FILL
  after each full block) with probability 0.5 when ``M / N > 3``.
* Loss: cross-entropy over V + 3 classes divided by the number of non-ignored targets.
* :meth:`TextToTokenLM.inference`: RAS sampling (top-p 0.8, top-k 25; a token seen >= 1 time in
  the last 10 is resampled from the full distribution), EOS suppressed before ``2 N`` tokens,
  at most ``20 N`` tokens.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import CodecError

__all__ = [
    "LearnableSpeakerEncoder",
    "TextToTokenLM",
    "LMOutput",
    "qwen2_config",
    "qwen2_backbone",
    "nucleus_sample",
    "ras_sample",
    "reference_mel",
    "IGNORE",
]

IGNORE = -100


def reference_mel(sample_rate: int = 24000):
    """The speaker encoder's input (§1.4 step 5): 80-bin log mel, n_fft / win 1920, hop 480,
    0-8 kHz, not centred (reflect pad 720), Slaney filters, ``log(max(|mel|, 1e-5))``;
    ``.log_mel(sig [B, T]) -> [B, 80, frames]`` (a :class:`~speechbrain_codec.losses.MelLoss`)."""
    from ..losses.spectral import MelLoss

    scale = sample_rate / 24000
    n_fft, hop = round(1920 * scale), round(480 * scale)
    return MelLoss(sample_rate, n_fft=n_fft, hop_length=hop, n_mels=80, f_max=8000, mel_scale="slaney",
                   mel_norm="slaney", center=False, pad=(n_fft - hop) // 2, mag_eps=1e-9, log_mode="clamp")


class _AttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(min(32, dim), dim)
        self.qkv = nn.Conv1d(dim, 3 * dim, 1)
        self.proj_out = nn.Conv1d(dim, dim, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * c // self.heads, t)
        q, k, v = qkv.chunk(3, dim=1)
        scale = 1 / math.sqrt(math.sqrt(c // self.heads))
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale).float(), dim=-1).to(q.dtype)
        h = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, t)
        return x + self.proj_out(h)


class LearnableSpeakerEncoder(nn.Module):
    """``mel [B, n_mels, T] -> [B, out_dim]`` (L2-normalised). Published: 80 -> 512, 6 blocks,
    8 heads, 192. Pools the first frame and ignores padding, as the reference (pitfall 3)."""

    def __init__(self, n_mels: int = 80, dim: int = 512, n_blocks: int = 6, heads: int = 8, out_dim: int = 192) -> None:
        super().__init__()
        self.init = nn.Conv1d(n_mels, dim, 1)
        self.attn = nn.Sequential(*[_AttentionBlock(dim, heads) for _ in range(n_blocks)])
        self.proj = nn.Linear(dim, out_dim)
        self.out_dim = out_dim

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.attn(self.init(mel))
        return F.normalize(self.proj(h[:, :, 0]), dim=1)


def qwen2_config(size: str = "0.5b", vocab_size: int | None = None, **overrides):
    """A ``transformers.Qwen2Config``: ``"0.5b"`` = Qwen2.5-0.5B (CosyVoice-BlankEN), ``"tiny"``
    for tests (hidden 32, 2 layers). ``vocab_size``: the text vocabulary (151 936 for Qwen's)."""
    from transformers import Qwen2Config

    if size == "0.5b":
        cfg = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                   num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
                   rms_norm_eps=1e-6, tie_word_embeddings=True)
    elif size == "tiny":
        cfg = dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, max_position_embeddings=4096)
    else:
        raise CodecError(f"qwen2_config: size '0.5b' or 'tiny', not {size!r}")
    if vocab_size is not None:
        cfg["vocab_size"] = vocab_size
    cfg.update(overrides)
    return Qwen2Config(**cfg)


def qwen2_backbone(config_or_path) -> nn.Module:
    """A Qwen2 decoder (``Qwen2Model``: embeddings + blocks + final norm, no LM head): from a
    config (random weights) or from a local folder / hub id with weights (``from_pretrained``;
    the Qwen LM head is not used, §2.5)."""
    from transformers import Qwen2Config, Qwen2Model

    if isinstance(config_or_path, Qwen2Config):
        return Qwen2Model(config_or_path)
    try:
        return Qwen2Model.from_pretrained(str(config_or_path))
    except OSError as err:
        raise CodecError(f"{config_or_path}: no Qwen2 weights there ({str(err).splitlines()[0]}); give a local "
                         "folder with config.json + model.safetensors (e.g. CosyVoice2-0.5B/CosyVoice-BlankEN)") from err


@dataclass
class LMOutput:
    loss: torch.Tensor
    acc: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor


def nucleus_sample(logits: torch.Tensor, top_p: float = 0.8, top_k: int = 25,
                   generator: torch.Generator | None = None) -> int:
    """CosyVoice's nucleus sampling: keep the most probable tokens while their cumulative
    probability is below ``top_p`` and fewer than ``top_k`` (at least one), sample among them."""
    probs = logits.float().softmax(-1)
    sorted_p, idx = probs.sort(descending=True)
    cum = sorted_p.cumsum(0)
    keep = int(((cum - sorted_p) < top_p).sum())  # tokens added while the sum before them < top_p
    keep = max(1, min(keep, top_k))
    choice = torch.multinomial(sorted_p[:keep], 1, generator=generator)
    return int(idx[choice])


def ras_sample(logits: torch.Tensor, decoded: Sequence[int], top_p: float = 0.8, top_k: int = 25,
               win_size: int = 10, tau_r: float = 0.1, generator: torch.Generator | None = None) -> int:
    """Repetition-aware sampling: :func:`nucleus_sample`; if the token occurs ``>= win_size * tau_r``
    times in the last ``win_size`` outputs, resample from the full distribution."""
    tok = nucleus_sample(logits, top_p, top_k, generator)
    recent = list(decoded[-win_size:])
    if recent.count(tok) >= win_size * tau_r:
        tok = int(torch.multinomial(logits.float().softmax(-1), 1, generator=generator))
    return tok


class TextToTokenLM(nn.Module):
    """Text ids + speaker vector -> speech tokens (see the module docstring).

    Parameters
    ----------
    backbone : nn.Module
        A decoder taking ``inputs_embeds``, ``attention_mask`` (and ``past_key_values``,
        ``use_cache``), returning ``last_hidden_state`` (e.g. ``Qwen2Model``); its input
        embeddings (``get_input_embeddings()``) embed the text.
    speech_vocab : int
        V (6561 for S3Tokenizer v2 / FSQ [3]*8).
    speaker_encoder : nn.Module, optional
        ``mel [B, 80, T] -> [B, spk_dim]``; default the published :class:`LearnableSpeakerEncoder`.
    bistream_prob : float
        Probability of the bistream layout when ``M / N > mix_ratio[1] / mix_ratio[0]`` (0.5).

    Example
    -------
    >>> lm = TextToTokenLM(qwen2_backbone(qwen2_config("tiny", vocab_size=50)), speech_vocab=20,
    ...                    speaker_encoder=LearnableSpeakerEncoder(80, 16, 1, 2, 8), spk_dim=8)
    >>> out = lm.compute_loss([[3, 4, 5]], [[1, 2, 3, 4]], torch.randn(1, 80, 30))
    >>> out.logits.shape[-1], int((out.targets != IGNORE).sum())
    (23, 5)
    >>> toks = lm.inference([3, 4, 5], torch.randn(1, 80, 30), generator=torch.Generator().manual_seed(0))
    >>> 6 <= len(toks) <= 60 and all(0 <= t < 20 for t in toks)
    True
    """

    def __init__(self, backbone: nn.Module, speech_vocab: int = 6561, speaker_encoder: nn.Module | None = None,
                 spk_dim: int = 192, bistream_prob: float = 0.5, mix_ratio: tuple[int, int] = (5, 15)) -> None:
        super().__init__()
        self.llm = backbone
        hidden = backbone.config.hidden_size
        self.speech_vocab = speech_vocab
        self.sos_eos, self.task_id = 0, 1
        self.eos_token, self.fill_token = speech_vocab, speech_vocab + 2
        self.llm_embedding = nn.Embedding(2, hidden)
        self.speech_embedding = nn.Embedding(speech_vocab + 3, hidden)
        self.llm_decoder = nn.Linear(hidden, speech_vocab + 3)
        self.speaker_encoder = speaker_encoder if speaker_encoder is not None else LearnableSpeakerEncoder(out_dim=spk_dim)
        self.spk_embed_affine_layer = nn.Linear(spk_dim, hidden)
        self.bistream_prob, self.mix_ratio = bistream_prob, mix_ratio

    @property
    def text_embedding(self) -> nn.Module:
        return self.llm.get_input_embeddings()

    # ------------------------------------------------------------------ sequences
    def _unistream(self, text: torch.Tensor, speech: torch.Tensor, spk: torch.Tensor):
        n, m = len(text), len(speech)
        emb = torch.cat([self.llm_embedding.weight[self.sos_eos][None], spk[None], self.text_embedding(text),
                         self.llm_embedding.weight[self.task_id][None], self.speech_embedding(speech)])
        tgt = torch.full((n + 3 + m,), IGNORE, dtype=torch.long, device=text.device)
        tgt[n + 2: n + 2 + m] = speech
        tgt[n + 2 + m] = self.eos_token
        return emb, tgt

    def _bistream(self, text: torch.Tensor, speech: torch.Tensor, spk: torch.Tensor):
        a, b = self.mix_ratio
        embs = [self.llm_embedding.weight[self.sos_eos][None], spk[None]]
        tgts = [IGNORE, IGNORE]
        n, m = len(text), len(speech)
        i = 0
        while (i + 1) * a <= n and (i + 1) * b <= m:  # full blocks: a text then b speech tokens
            t_blk, s_blk = text[i * a:(i + 1) * a], speech[i * b:(i + 1) * b]
            embs += [self.text_embedding(t_blk), self.speech_embedding(s_blk)]
            tgts += [IGNORE] * (a - 1) + [int(s_blk[0])] + [int(x) for x in s_blk[1:]] + [self.fill_token]
            i += 1
        t_rest, s_rest = text[i * a:], speech[i * b:]
        embs += [self.text_embedding(t_rest), self.llm_embedding.weight[self.task_id][None], self.speech_embedding(s_rest)]
        tgts += [IGNORE] * len(t_rest) + [int(x) for x in s_rest] + [self.eos_token]
        return torch.cat(embs), torch.tensor(tgts, dtype=torch.long, device=text.device)

    def speaker_vector(self, ref_mel: torch.Tensor) -> torch.Tensor:
        """``ref_mel [B, 80, T] -> [B, spk_dim]`` (L2-normalised)."""
        return self.speaker_encoder(ref_mel)

    def compute_loss(self, texts: Sequence[Sequence[int]], speech: Sequence[Sequence[int]], ref_mel: torch.Tensor,
                     rng: random.Random | None = None) -> LMOutput:
        """CE of the next speech token; ``texts`` / ``speech`` are lists of id lists (unpadded)."""
        device = ref_mel.device
        spk = self.spk_embed_affine_layer(self.speaker_vector(ref_mel))
        rng = rng or random
        seqs = []
        for i, (t, s) in enumerate(zip(texts, speech)):
            t = torch.as_tensor(list(t), dtype=torch.long, device=device)
            s = torch.as_tensor(list(s), dtype=torch.long, device=device)
            if len(t) == 0 or len(s) == 0:
                raise CodecError(f"item {i}: empty text or speech tokens (the reference filters these out)")
            a, b = self.mix_ratio
            use_bi = self.training and len(s) / len(t) > b / a and rng.random() < self.bistream_prob
            seqs.append(self._bistream(t, s, spk[i]) if use_bi else self._unistream(t, s, spk[i]))
        lengths = [len(tg) for _, tg in seqs]
        big = max(lengths)
        emb = torch.stack([F.pad(e, (0, 0, 0, big - len(e))) for e, _ in seqs])
        tgt = torch.stack([F.pad(tg, (0, big - len(tg)), value=IGNORE) for _, tg in seqs])
        att = (torch.arange(big, device=device)[None] < torch.tensor(lengths, device=device)[:, None]).long()
        hidden = self.llm(inputs_embeds=emb, attention_mask=att).last_hidden_state
        logits = self.llm_decoder(hidden)
        valid = tgt != IGNORE
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE,
                               reduction="sum") / valid.sum().clamp_min(1)
        acc = ((logits.argmax(-1) == tgt) & valid).sum() / valid.sum().clamp_min(1)
        return LMOutput(loss, acc, logits, tgt)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def inference(self, text: Sequence[int], ref_mel: torch.Tensor, top_p: float = 0.8, top_k: int = 25,
                  win_size: int = 10, tau_r: float = 0.1, min_token_text_ratio: float = 2.0,
                  max_token_text_ratio: float = 20.0, generator: torch.Generator | None = None,
                  prompt_text: Sequence[int] = (), prompt_speech: Sequence[int] = ()) -> list[int]:
        """Speech tokens for one utterance (unistream, RAS); an optional prompt (text + its
        tokens) is prepended as in CosyVoice's zero-shot mode."""
        device = ref_mel.device
        spk = self.spk_embed_affine_layer(self.speaker_vector(ref_mel[:1]))[0]
        full_text = torch.as_tensor(list(prompt_text) + list(text), dtype=torch.long, device=device)
        if len(full_text) == 0:
            raise CodecError("empty text: nothing to synthesise")
        parts = [self.llm_embedding.weight[self.sos_eos][None], spk[None], self.text_embedding(full_text),
                 self.llm_embedding.weight[self.task_id][None]]
        if len(prompt_speech):
            parts.append(self.speech_embedding(torch.as_tensor(list(prompt_speech), device=device)))
        emb = torch.cat(parts)[None]
        n = len(text)
        min_len, max_len = int(n * min_token_text_ratio), max(1, int(n * max_token_text_ratio))
        out: list[int] = []
        past = None
        for step in range(max_len):
            res = self.llm(inputs_embeds=emb, past_key_values=past, use_cache=True)
            past = res.past_key_values
            logits = self.llm_decoder(res.last_hidden_state[0, -1]).float()
            logits[self.eos_token + 1:] = -float("inf")  # no FILL / unused ids in unistream decoding
            if step < min_len:
                logits[self.eos_token] = -float("inf")
            tok = ras_sample(logits.log_softmax(-1), out, top_p, top_k, win_size, tau_r, generator)
            if tok == self.eos_token:
                break
            out.append(tok)
            emb = self.speech_embedding(torch.tensor([[tok]], device=device))
        return out
