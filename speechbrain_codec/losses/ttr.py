"""Timed-text regularisation (TTR) loss of the LM-loss codec (after Xie et al.'s TTR).

A *summariser* turns SSL frames of speech into one vector per BERT word-piece, using word
alignments: each aligned word with ``n`` word-pieces is split into ``n`` equal sub-spans; the
frames of a sub-span, behind a learned CLS vector, go through a transformer ("translator") whose
CLS output summarises that word-piece; a second transformer ("inter") runs over the sequence of
summaries. Pretrained to match BERT's embeddings of the transcript, it is then frozen and scores
a codec's output:

    L_TTR = (1 - mean_i cos(b_i, s_i)) + 1/N^2 sum_ij (cos(b_i, b_j) - cos(s_i, s_j))^2

with ``b_i`` BERT's last hidden state for word-piece ``i`` ([CLS]/[SEP] dropped) and ``s_i`` the
summary. Reference setup: WavLM-base hidden state 10 (audio padded by 40 samples each side, so
frame ``k`` is centred at 10 + 20k ms), ``bert-base-uncased``, 4 + 4 post-norm layers, d 768,
8 heads, FFN 1024, GELU, dropout 0.1, no positional encoding. Difference from the reference:
word-piece batches are padded *with* a key-padding mask (the reference attends to its zero
padding; ``mask_padding=False`` restores that).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..alignment import Word
from ..utils import CodecError

__all__ = ["BertTargets", "TTRLoss", "TTRSummariser", "piece_spans", "pretrain_summariser", "ttr_distance"]


# lmloss.md §2.7: the audio is padded by 40 zeros on both sides before WavLM, so frame k is
# centred at 10 + 20k ms. SSLEncoder's default padding ("center") is exactly that: the ``ssl``
# given to TTRLoss / pretrain_summariser pads, they do not pad again.


def piece_spans(words: Sequence[Word], counts: Sequence[int], n_frames: int,
                frame_shift: float = 0.02, frame_offset: float = 0.01) -> list[tuple[int, int]]:
    """Frame range ``[a, b)`` of every word-piece: each word's span split into ``counts[i]``
    equal sub-spans, sub-span ``[l, r]`` -> frames ``round((l - offset) / shift)`` ..
    ``round((r - offset) / shift)`` inclusive, clamped to ``[0, n_frames)`` (both ends: a piece
    starting in the clip's last frame still gets that frame).

    Example
    -------
    >>> piece_spans([Word(0.11, 0.51, "hello")], [2], n_frames=100)
    [(5, 16), (15, 26)]
    """
    spans = []
    for w, n in zip(words, counts):
        step = (w.end - w.start) / n if n else 0.0
        for k in range(n):
            lo, hi = w.start + k * step, w.start + (k + 1) * step
            a = min(max(0, round((lo - frame_offset) / frame_shift)), n_frames - 1)  # a piece in the last 10 ms
            b = min(n_frames - 1, round((hi - frame_offset) / frame_shift))
            spans.append((a, max(a, b) + 1))
    return spans


def _encoder(dim: int, heads: int, ffn: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="gelu", batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class TTRSummariser(nn.Module):
    """``(frames [T, D], spans) -> summaries [N, D]`` for one utterance (see the module docstring).

    Example
    -------
    >>> s = TTRSummariser(dim=16, num_heads=2, ffn_dim=32, num_layers=1)
    >>> s(torch.randn(50, 16), [(0, 10), (10, 30), (30, 50)]).shape
    torch.Size([3, 16])
    """

    def __init__(self, dim: int = 768, num_heads: int = 8, ffn_dim: int = 1024, num_layers: int = 4,
                 dropout: float = 0.1, mask_padding: bool = True) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)
        self.translator = _encoder(dim, num_heads, ffn_dim, num_layers, dropout)
        self.inter = _encoder(dim, num_heads, ffn_dim, num_layers, dropout)
        self.mask_padding = mask_padding

    def forward(self, frames: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
        if not spans:
            raise CodecError("TTR: no word-piece spans (empty alignment?)")
        width = 1 + max(b - a for a, b in spans)
        batch = frames.new_zeros(len(spans), width, frames.shape[-1])
        pad = torch.ones(len(spans), width, dtype=torch.bool, device=frames.device)
        for i, (a, b) in enumerate(spans):
            batch[i, 0] = self.cls
            batch[i, 1 : 1 + b - a] = frames[a:b]
            pad[i, : 1 + b - a] = False
        out = self.translator(batch, src_key_padding_mask=pad if self.mask_padding else None)
        return self.inter(out[None, :, 0])[0]


class BertTargets(nn.Module):
    """Frozen BERT: word-piece counts per word and last-layer embeddings without [CLS]/[SEP]."""

    def __init__(self, source: str = "bert-base-uncased") -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModel.from_pretrained(source).eval().requires_grad_(False)
        except OSError as err:
            raise CodecError(f"{source}: cannot load BERT ({type(err).__name__})") from None

    def counts(self, words: Sequence[str]) -> list[int]:
        return [len(self.tokenizer.tokenize(w)) for w in words]

    @torch.no_grad()
    def forward(self, words: Sequence[str]) -> torch.Tensor:
        """``[N, D]`` for the word-pieces of ``" ".join(words)``."""
        enc = self.tokenizer(" ".join(words), return_tensors="pt")
        return self.model(**enc).last_hidden_state[0, 1:-1]


def ttr_distance(targets: torch.Tensor, summaries: torch.Tensor) -> torch.Tensor:
    """``(1 - mean cos(b_i, s_i)) + mean_ij (cos(b_i, b_j) - cos(s_i, s_j))^2``.

    Example
    -------
    >>> x = torch.randn(4, 8)
    >>> float(ttr_distance(x, 2 * x)) < 1e-6
    True
    """
    if targets.shape != summaries.shape:
        raise CodecError(f"TTR: {targets.shape[0]} BERT word-pieces but {summaries.shape[0]} summaries")
    b = nn.functional.normalize(targets, dim=-1)
    s = nn.functional.normalize(summaries, dim=-1)
    return (1 - (b * s).sum(-1).mean()) + ((b @ b.T - s @ s.T) ** 2).mean()


class TTRLoss(nn.Module):
    """The TTR loss through a frozen summariser, SSL encoder and BERT.

    ``forward(sig_hat, words)``: ``sig_hat [B, T]`` at 16 kHz, ``words`` one alignment (list of
    :class:`~speechbrain_codec.alignment.Word`, of the ground-truth audio) per item: CodecBrain
    passes the reconstruction and the batch's ``alignment`` (``inputs``).
    """

    inputs = ("sig_hat", "alignment")

    def __init__(self, summariser: TTRSummariser, ssl: nn.Module, bert: BertTargets) -> None:
        super().__init__()
        self.summariser = summariser.eval().requires_grad_(False)
        self.ssl, self.bert = _centred(ssl), bert

    def train(self, mode: bool = True):
        super().train(mode)
        self.summariser.eval()
        return self

    def forward(self, sig_hat: torch.Tensor, alignments: Sequence[Sequence[Word]]) -> torch.Tensor:
        losses = []
        for sig, words in zip(sig_hat, alignments):
            frames = self.ssl(sig[None])[0]
            losses.append(_frames_loss(frames, words, self.bert, self.summariser))
        return torch.stack(losses).mean()


def _centred(ssl: nn.Module) -> nn.Module:
    """``ssl``, checked to pad 40 samples on both sides (frame k centred at 10 + 20k ms)."""
    padding = getattr(ssl, "padding", "center")
    if padding != "center":
        raise CodecError(f"TTR needs an SSL encoder with padding='center' (40 zeros each side), got {padding!r}")
    return ssl


def _frames_loss(frames: torch.Tensor, words: Sequence[Word], bert: BertTargets, summariser: nn.Module) -> torch.Tensor:
    names = [w.word for w in words]
    spans = piece_spans(words, bert.counts(names), frames.shape[0])
    return ttr_distance(bert(names).to(frames), summariser(frames, spans))


def pretrain_summariser(summariser: TTRSummariser, ssl: nn.Module, bert: BertTargets,
                        items: Sequence[tuple[torch.Tensor, Sequence[Word]]], steps: int = 1000,
                        lr: float = 1e-4, seed: int = 0) -> list[float]:
    """Train ``summariser`` to match BERT on real speech: ``items`` = ``(sig [T] 16 kHz, words)``.
    One utterance per step (the reference's batch size); returns the loss per step."""
    import random

    ssl = _centred(ssl)
    rng = random.Random(seed)
    opt = torch.optim.Adam(summariser.parameters(), lr=lr, betas=(0.8, 0.99))  # lmloss.md §4: Adam, no decay
    summariser.train()
    losses = []
    for _ in range(steps):
        sig, words = items[rng.randrange(len(items))]
        with torch.no_grad():  # the SSL encoder is frozen: its frames are inputs here
            frames = ssl(sig[None])[0]
        loss = _frames_loss(frames, words, bert, summariser)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(summariser.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    summariser.eval()
    return losses
