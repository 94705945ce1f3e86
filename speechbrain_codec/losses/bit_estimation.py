"""SIREN's bit-estimation entropy model (siren.md §2.4): a causal transformer LM over a stream's
token indices, trained on their negative log-likelihood, whose NLL / ln 2 is the number of bits
an ideal entropy coder would spend. It estimates bitrates only (no arithmetic coder in training).

P1: token embedding + learned absolute position embedding, ``nn.TransformerEncoder`` with a causal
mask, ``num_layers`` (2-3) layers of ``dim`` (128-256) with ``num_heads`` (4-8) heads and a 4x
feed-forward, vocabulary = the stream's codebook size. A stream with several codebooks per frame
(residual stages) is flattened stage-major (all stage-0 tokens, then stage 1, ...) into one
sequence, as HEAD does. Indices are detached: the loss trains the LM only, never the codec.

Deliberate differences: a start token is prepended so that the first token is also counted
(``bits`` covers every token sent); positions up to ``max_len`` (default 4096, HEAD's bound;
P1's 256 would not hold 10 s of 4-stage tokens).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TokenEntropyLM"]


class TokenEntropyLM(nn.Module):
    """Causal LM over ``toks [B, T, K]`` of codebooks of ``vocab_size`` codes.

    ``forward(toks) -> bits [B]``: ``sum_t -log2 p(tok_t | tok_<t)`` per sequence.

    Example
    -------
    >>> lm = TokenEntropyLM(vocab_size=1000, dim=32, num_layers=1, num_heads=4)
    >>> toks = torch.randint(0, 1000, (2, 6, 2))
    >>> bits = lm(toks)
    >>> bits.shape, bool((bits > 0).all())
    (torch.Size([2]), True)
    """

    def __init__(self, vocab_size: int, dim: int = 128, num_layers: int = 2, num_heads: int = 4,
                 max_len: int = 4096, dropout: float = 0.1) -> None:
        super().__init__()
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)
        self.embed = nn.Embedding(self.vocab_size + 1, dim)  # + the start token
        self.pos = nn.Embedding(self.max_len, dim)
        layer = nn.TransformerEncoderLayer(dim, num_heads, 4 * dim, dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, self.vocab_size)

    def logits(self, toks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``toks [B, T, K] -> (logits [B, T*K, V], targets [B, T*K])`` (stage-major)."""
        seq = toks.detach().long().transpose(1, 2).flatten(1)  # [B, K*T] stage-major
        if seq.shape[1] > self.max_len:
            raise ValueError(f"TokenEntropyLM: {seq.shape[1]} tokens, more than max_len {self.max_len}")
        start = torch.full_like(seq[:, :1], self.vocab_size)
        inp = torch.cat([start, seq[:, :-1]], dim=1)
        pos = torch.arange(inp.shape[1], device=inp.device)
        mask = nn.Transformer.generate_square_subsequent_mask(inp.shape[1], device=inp.device)
        h = self.transformer(self.embed(inp) + self.pos(pos)[None], mask=mask, is_causal=True)
        return self.out(h), seq

    def forward(self, toks: torch.Tensor) -> torch.Tensor:
        logits, target = self.logits(toks)
        nll = nn.functional.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none")
        return nll.sum(1) / math.log(2)
