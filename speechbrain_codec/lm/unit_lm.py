"""DP-SLM's unit language model (Visser & Kamper, 2025; ``Mistral-ULM``): a Mistral decoder over
deduplicated units in the reference's token layout, its training on packed chapter chunks, and
log-likelihood scoring with a lexical minimal-pair test (sWUGGY style).

Token layout (spec ``dpslm.md`` §1.3 / §2.4; **not** :class:`~speechbrain_codec.lm.UnitTokenizer`'s
pad/bos/eos layout): ``ids = [BOS = 0] + (deduplicated units + 1)``, vocabulary ``K + 1``, no EOS,
no PAD (batches are padded with an attention mask and the padded positions never scored).

Model (§2.4): dim 1024, 12 layers, 16 heads x 64, 16 KV heads, SwiGLU FFN 4096, RMSNorm (eps
1e-6), RoPE theta 10 000 (8000 positions), no biases, untied embeddings; dropout 0.15 after the
attention output projection and after the FFN (residual dropout; Hugging Face's Mistral has only
attention-probability dropout, so the residual dropout is added with forward hooks). 202.4 M
parameters for K = 500.

Training (§3, §4): each item is a chunk of ``chunk_len`` (1024) tokens that starts at a uniformly
random offset of one utterance and continues with the following utterances of the same chapter
(sorted by ID); the first target of each chunk is not trained; AdamW (0.9, 0.999), eps 1e-8,
weight decay 0.05; learning rate linear 1e-7 -> 5e-4 over 2000 steps, cosine to 1e-5 over 8000
steps, then 1e-5; gradient-norm clipping 1.0; the best validation loss (whole utterances) is kept.

Scoring (§5): ``log p(units) = sum_t log p(unit_t | BOS, unit_<t)`` over the BOS-prefixed
deduplicated sequence (the first unit included), un-normalised (``normalize=True`` divides by the
number of units).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..utils import CodecError, atomic_path, atomic_write_json

__all__ = [
    "BOS",
    "MistralSpec",
    "UnitLM",
    "encode_units",
    "decode_units",
    "build_mistral",
    "lr_at",
    "make_chunk",
    "train_unit_lm",
    "minimal_pair_accuracy",
]

BOS = 0  #: the unit LM's only special token
CONFIG, WEIGHTS = "unit_lm.json", "unit_lm.safetensors"


def encode_units(units: Sequence[int] | np.ndarray, num_units: int, dedup: bool = True) -> list[int]:
    """``[BOS] + (units + 1)``, runs merged first (``dedup``).

    Example
    -------
    >>> encode_units([5, 5, 7, 7, 7, 0], num_units=10)
    [0, 6, 8, 1]
    """
    out = [BOS]
    prev = None
    for u in np.asarray(units).reshape(-1).tolist():
        if not 0 <= u < num_units:
            raise CodecError(f"unit {u} outside 0..{num_units - 1}")
        if dedup and u == prev:
            continue
        out.append(u + 1)
        prev = u
    return out


def decode_units(ids: Sequence[int]) -> list[int]:
    """Token ids -> units (BOS dropped): ``[0, 6, 8, 1] -> [5, 7, 0]``."""
    return [int(i) - 1 for i in ids if int(i) != BOS]


@dataclass
class MistralSpec:
    """A Mistral decoder's size (defaults: DP-SLM's published ULM, §2.4)."""

    vocab_size: int
    dim: int = 1024
    num_layers: int = 12
    num_heads: int = 16
    num_kv_heads: int = 16
    ffn_dim: int = 4096
    rope_theta: float = 10000.0
    max_positions: int = 8000
    rms_eps: float = 1e-6
    dropout: float = 0.15          # residual dropout after attention out-projection and FFN
    output_bias: bool = False      # ELLA-V's output layer has a bias

    def config(self):
        from transformers import MistralConfig

        if self.dim % self.num_heads:
            raise CodecError(f"dim {self.dim} is not a multiple of num_heads {self.num_heads}")
        return MistralConfig(
            vocab_size=self.vocab_size, hidden_size=self.dim, intermediate_size=self.ffn_dim,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads, head_dim=self.dim // self.num_heads, hidden_act="silu",
            max_position_embeddings=self.max_positions, rms_norm_eps=self.rms_eps,
            rope_parameters={"rope_type": "default", "rope_theta": float(self.rope_theta)},
            tie_word_embeddings=False, sliding_window=None, attention_dropout=0.0,
            bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )


def _residual_dropout(p: float):
    def hook(module, args, output):
        return nn.functional.dropout(output, p, module.training)
    return hook


def build_mistral(spec: MistralSpec) -> nn.Module:
    """``MistralForCausalLM`` of ``spec`` with residual dropout hooks and, if asked, an output
    bias."""
    from transformers import MistralForCausalLM

    model = MistralForCausalLM(spec.config())
    if spec.output_bias:
        model.lm_head = nn.Linear(spec.dim, spec.vocab_size, bias=True)
        nn.init.normal_(model.lm_head.weight, std=model.config.initializer_range)
        nn.init.zeros_(model.lm_head.bias)
    if spec.dropout > 0:
        for layer in model.model.layers:
            layer.self_attn.o_proj.register_forward_hook(_residual_dropout(spec.dropout))
            layer.mlp.register_forward_hook(_residual_dropout(spec.dropout))
    return model


def _save(folder: Path, module: nn.Module, config: dict, config_name: str, weights_name: str) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(folder / weights_name) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(folder / config_name, config)


def _load_state(folder: Path, weights_name: str) -> dict:
    from safetensors.torch import load_file

    path = folder / weights_name
    if not path.is_file():
        raise CodecError(f"{path}: missing; train the model first (or pass the folder it was saved to)")
    return load_file(str(path))


class UnitLM(nn.Module):
    """Mistral unit LM over ``K`` units (vocabulary ``K + 1``, BOS = 0, unit ``u`` -> ``u + 1``).

    Parameters
    ----------
    num_units : int
        K.
    dim, num_layers, num_heads, num_kv_heads, ffn_dim, rope_theta, max_positions, rms_eps, dropout
        See :class:`MistralSpec` (defaults: the published 202 M model).

    Example
    -------
    >>> lm = UnitLM(10, dim=16, num_layers=1, num_heads=2, num_kv_heads=2, ffn_dim=32, max_positions=64)
    >>> lm.log_likelihood([[3, 4, 5], [6]]).shape
    torch.Size([2])
    """

    def __init__(self, num_units: int, dim: int = 1024, num_layers: int = 12, num_heads: int = 16,
                 num_kv_heads: int = 16, ffn_dim: int = 4096, rope_theta: float = 10000.0,
                 max_positions: int = 8000, rms_eps: float = 1e-6, dropout: float = 0.15) -> None:
        super().__init__()
        if num_units < 1:
            raise CodecError(f"num_units must be positive, got {num_units}")
        self.num_units = int(num_units)
        self.spec = MistralSpec(num_units + 1, dim, num_layers, num_heads, num_kv_heads, ffn_dim, rope_theta,
                                max_positions, rms_eps, dropout)
        self.model = build_mistral(self.spec)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---------------------------------------------------------------- persistence
    def save_pretrained(self, folder: str | Path) -> None:
        """``unit_lm.json`` (sizes) + ``unit_lm.safetensors``."""
        cfg = {"num_units": self.num_units, **{k: v for k, v in asdict(self.spec).items()
                                               if k not in ("vocab_size", "output_bias")}}
        _save(Path(folder), self.model, cfg, CONFIG, WEIGHTS)

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "UnitLM":
        folder = Path(folder)
        if not (folder / CONFIG).is_file():
            raise CodecError(f"{folder}: no {CONFIG}; train a unit LM first (or pass the folder it was saved to)")
        cfg = json.loads((folder / CONFIG).read_text())
        cfg["num_kv_heads"] = cfg.pop("num_kv_heads", cfg.get("num_heads", 16))
        lm = cls(cfg.pop("num_units"), **{k: v for k, v in cfg.items() if k in (
            "dim", "num_layers", "num_heads", "num_kv_heads", "ffn_dim", "rope_theta", "max_positions",
            "rms_eps", "dropout")})
        lm.model.load_state_dict(_load_state(folder, WEIGHTS))
        return lm.to(map_location).eval()

    # ---------------------------------------------------------------- scoring
    def encode(self, units: Sequence[int], dedup: bool = True) -> list[int]:
        return encode_units(units, self.num_units, dedup)

    def batch(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token id rows -> right-padded ``ids [B, T]`` and ``mask [B, T]`` (padding: BOS, masked)."""
        if not rows or any(len(r) == 0 for r in rows):
            raise CodecError("the unit LM got an empty sequence")
        width = max(len(r) for r in rows)
        if width > self.spec.max_positions:
            raise CodecError(f"a sequence of {width} tokens is longer than the LM's {self.spec.max_positions} positions")
        ids = torch.full((len(rows), width), BOS, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids.to(self.device), mask.to(self.device)

    def token_log_probs(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p(id_t | id_<t)`` for ``t >= 1`` of every row ``[B, T-1]`` and its mask."""
        ids, mask = self.batch(rows)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        lp = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        return lp, mask[:, 1:].to(lp.dtype)

    @torch.no_grad()
    def log_likelihood(self, units: Sequence[Sequence[int]], normalize: bool = False,
                       dedup: bool = True, batch_size: int = 32) -> torch.Tensor:
        """``[N]`` log-likelihood (nats) of each unit sequence (BOS-prefixed, first unit
        included, no end token); ``normalize``: per unit."""
        was = self.training
        self.eval()
        out = []
        try:
            for i in range(0, len(units), batch_size):
                rows = [self.encode(u, dedup) for u in units[i : i + batch_size]]
                if any(len(r) < 2 for r in rows):
                    raise CodecError("the unit LM cannot score an empty unit sequence")
                lp, m = self.token_log_probs(rows)
                total = (lp * m).sum(-1)
                out.append(total / m.sum(-1) if normalize else total)
        finally:
            self.train(was)
        return torch.cat(out).cpu() if out else torch.zeros(0)

    def chunk_loss(self, chunks: Sequence[Sequence[int]]) -> torch.Tensor:
        """Mean next-token cross-entropy of token chunks; the first target of each chunk (the
        token after its first) is not trained (§3)."""
        lp, m = self.token_log_probs(chunks)
        m = m.clone()
        m[:, 0] = 0
        if m.sum() == 0:
            raise CodecError("chunks of fewer than 3 tokens leave nothing to train")
        return -(lp * m).sum() / m.sum()

    def utterance_loss(self, rows: Sequence[Sequence[int]]) -> tuple[float, float]:
        """Summed negative log-likelihood and token count of whole utterances (validation)."""
        lp, m = self.token_log_probs(rows)
        return float(-(lp * m).sum()), float(m.sum())


# -------------------------------------------------------------------------------------------
# training
# -------------------------------------------------------------------------------------------
def lr_at(step: int, peak: float = 5e-4, start: float = 1e-7, final: float = 1e-5,
          warmup: int = 2000, decay: int = 8000) -> float:
    """The reference's schedule: linear ``start -> peak`` over ``warmup`` steps, cosine
    ``peak -> final`` over ``decay`` steps, then ``final``.

    >>> lr_at(0), lr_at(2000), round(lr_at(6000), 7), lr_at(20000)
    (1e-07, 0.0005, 0.000255, 1e-05)
    """
    if step < warmup:
        return start + (peak - start) * step / warmup
    s = step - warmup
    if s < decay:
        return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * s / decay))
    return final


def make_chunk(chapter: Sequence[Sequence[int]], first: int, rng: random.Random, length: int) -> list[int]:
    """A training item (§4): utterance ``first`` of ``chapter`` (token id rows, each starting with
    BOS, sorted by ID) from a uniformly random offset, then the following utterances of the
    chapter, truncated to ``length`` tokens (shorter at the end of a chapter)."""
    row = chapter[first]
    chunk = list(row[rng.randrange(len(row)):])
    for nxt in chapter[first + 1:]:
        if len(chunk) >= length:
            break
        chunk.extend(nxt)
    return chunk[:length]


def _chapter_of(utt_id: str) -> str:
    """LibriSpeech ``speaker-chapter-utterance`` -> ``speaker-chapter``; other IDs: their own."""
    parts = utt_id.split("-")
    return "-".join(parts[:2]) if len(parts) == 3 else utt_id


def train_unit_lm(
    lm: UnitLM,
    train: Mapping[str, Sequence[int]],
    valid: Mapping[str, Sequence[int]] | None = None,
    steps: int = 10000,
    batch_size: int = 12,
    grad_accumulation: int = 8,
    chunk_len: int = 1024,
    peak_lr: float = 5e-4,
    start_lr: float = 1e-7,
    final_lr: float = 1e-5,
    warmup: int = 2000,
    decay: int = 8000,
    weight_decay: float = 0.05,
    eps: float = 1e-8,
    clip: float = 1.0,
    valid_every: int = 1000,
    seed: int = 0,
    log_every: int = 0,
    chapter_of=_chapter_of,
) -> dict:
    """Train ``lm`` on deduplicated units (``utterance ID -> units``); keeps the weights of the
    best validation loss (per token over whole utterances; the last step's without ``valid``).

    Returns ``{"losses": [...], "valid": [(step, loss), ...], "best_valid": float | None,
    "best_step": int}``.
    """
    if not train:
        raise CodecError("no unit sequences to train the unit LM on")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    chapters: dict[str, list[list[int]]] = {}
    for uid in sorted(train):
        row = lm.encode(train[uid])
        if len(row) > 1:
            chapters.setdefault(chapter_of(uid), []).append(row)
    items = [(c, i) for c, rows in sorted(chapters.items()) for i in range(len(rows))]
    if not items:
        raise CodecError("every training utterance has no units")
    val_rows = [lm.encode(u) for _, u in sorted((valid or {}).items()) if len(u)]
    opt = torch.optim.AdamW(lm.parameters(), lr=start_lr, betas=(0.9, 0.999), eps=eps, weight_decay=weight_decay)
    losses, history = [], []
    best, best_step, best_state = math.inf, 0, None

    def validate() -> float:
        lm.eval()
        nll = n = 0.0
        with torch.no_grad():
            for i in range(0, len(val_rows), batch_size):
                a, b = lm.utterance_loss(val_rows[i : i + batch_size])
                nll, n = nll + a, n + b
        lm.train()
        return nll / max(n, 1.0)

    lm.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, peak_lr, start_lr, final_lr, warmup, decay)
        opt.zero_grad()
        total = 0.0
        for _ in range(grad_accumulation):
            chunks = []
            while len(chunks) < batch_size:
                c, i = items[rng.randrange(len(items))]
                chunk = make_chunk(chapters[c], i, rng, chunk_len)
                if len(chunk) >= 3:
                    chunks.append(chunk)
            loss = lm.chunk_loss(chunks) / grad_accumulation
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), clip)
        opt.step()
        if not math.isfinite(total):
            raise CodecError(f"unit LM loss is {total} at step {step}: lower the learning rate")
        losses.append(total)
        if log_every and (step + 1) % log_every == 0:
            print(f"unit LM step {step + 1}: loss {sum(losses[-log_every:]) / log_every:.3f}", flush=True)
        if val_rows and ((step + 1) % valid_every == 0 or step + 1 == steps):
            v = validate()
            history.append((step + 1, v))
            if v < best:
                best, best_step = v, step + 1
                best_state = {k: t.detach().clone() for k, t in lm.model.state_dict().items()}
    if best_state is not None:
        lm.model.load_state_dict(best_state)
    lm.eval()
    return {"losses": losses, "valid": history, "best_valid": best if val_rows else None,
            "best_step": best_step if val_rows else steps}


# -------------------------------------------------------------------------------------------
# lexical minimal pairs
# -------------------------------------------------------------------------------------------
def minimal_pair_accuracy(lm: UnitLM, pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
                          normalize: bool = False) -> dict:
    """sWUGGY-style accuracy: the share of (word, non-word) unit-sequence pairs whose word scores
    the higher log-likelihood (un-normalised sums, as the reference's scoring; a tie counts
    half, as ZeroSpeech 2021 does).

    Returns ``{"accuracy", "pairs", "ties", "scores": [(word, nonword), ...]}``.
    """
    if not pairs:
        raise CodecError("no minimal pairs to score")
    words = lm.log_likelihood([p[0] for p in pairs], normalize=normalize)
    nonwords = lm.log_likelihood([p[1] for p in pairs], normalize=normalize)
    wins = (words > nonwords).double().sum() + 0.5 * (words == nonwords).double().sum()
    return {"accuracy": float(wins) / len(pairs), "pairs": len(pairs), "ties": int((words == nonwords).sum()),
            "scores": list(zip(words.tolist(), nonwords.tolist()))}
