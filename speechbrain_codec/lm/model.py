"""A small causal transformer LM (GPT-2 via transformers) with log-likelihood scoring."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..utils import CodecError

__all__ = ["TokenLM", "train_lm"]


class TokenLM(nn.Module):
    """GPT-2 over token ids with ``pad = 0``, ``bos = 1``, ``eos = 2`` (see the tokenizers).

    Parameters
    ----------
    vocab_size : int
    dim, num_layers, num_heads, max_len : int
        Model size (GPT-2 ``n_embd``, ``n_layer``, ``n_head``, ``n_positions``).
    dropout : float

    Example
    -------
    >>> lm = TokenLM(vocab_size=10, dim=16, num_layers=1, num_heads=2, max_len=16)
    >>> lm.log_likelihood([[3, 4, 5], [6]]).shape
    torch.Size([2])
    """

    def __init__(self, vocab_size: int, dim: int = 256, num_layers: int = 4, num_heads: int = 4,
                 max_len: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.config = GPT2Config(vocab_size=vocab_size, n_embd=dim, n_layer=num_layers, n_head=num_heads,
                                 n_positions=max_len, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                                 bos_token_id=1, eos_token_id=2, pad_token_id=0)
        self.model = GPT2LMHeadModel(self.config)

    @classmethod
    def from_pretrained(cls, source: str | Path) -> "TokenLM":
        """Load a folder written by :meth:`save_pretrained` (or a GPT-2 hub id)."""
        from transformers import GPT2LMHeadModel

        try:
            model = GPT2LMHeadModel.from_pretrained(str(source))
        except OSError as err:
            raise CodecError(f"{source}: cannot load the LM ({type(err).__name__})") from None
        lm = cls.__new__(cls)
        nn.Module.__init__(lm)
        lm.config, lm.model = model.config, model
        return lm.eval()

    def save_pretrained(self, folder: str | Path) -> None:
        self.model.save_pretrained(str(folder))

    def batch(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[bos] + seq + [eos]`` padded -> ``(ids, mask)``."""
        limit = self.config.n_positions
        rows = [[1, *s, 2] for s in seqs]
        if any(len(r) > limit for r in rows):
            raise CodecError(f"a sequence is longer than the LM's {limit - 2} tokens")
        width = max(len(r) for r in rows)
        device = next(self.parameters()).device
        ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    def token_log_probs(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of every token after ``bos`` (eos included) and its mask."""
        ids, mask = self.batch(seqs)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        lp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        return lp, mask[:, 1:].to(lp.dtype)

    def loss(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Mean negative log-likelihood per token."""
        lp, m = self.token_log_probs(seqs)
        return -(lp * m).sum() / m.sum()

    @torch.no_grad()
    def log_likelihood(self, seqs: Sequence[Sequence[int]], normalize: bool = False) -> torch.Tensor:
        """``[N]`` total log-likelihood (nats) of each sequence, end token included
        (``normalize``: per token)."""
        was = self.training
        self.eval()
        lp, m = self.token_log_probs(seqs)
        self.train(was)
        total = (lp * m).sum(-1)
        return total / m.sum(-1) if normalize else total


def train_lm(lm: TokenLM, seqs: Sequence[Sequence[int]], steps: int = 1000, batch_size: int = 32,
             lr: float = 1e-3, warmup: int = 50, seed: int = 0, log_every: int = 0) -> list[float]:
    """Train on ``seqs`` (random batches, AdamW, warm-up + cosine); returns the loss per step."""
    if not seqs:
        raise CodecError("no sequences to train the LM on")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    lm.train()
    losses = []
    for step in range(steps):
        loss = lm.loss([seqs[rng.randrange(len(seqs))] for _ in range(batch_size)])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}: loss {sum(losses[-log_every:]) / log_every:.3f}")
    lm.eval()
    return losses
