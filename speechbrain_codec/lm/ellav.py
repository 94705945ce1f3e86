"""DP-SLM's unit-to-speech acoustic model: ELLA-V's generalised autoregressive (GAR) model over
deduplicated units and WavTokenizer codes (Song et al., 2024; ``nicolvisser/ELLA-V``; spec
``dpslm.md`` §1.3, §2.5), and :class:`DPSLMCodec`, the whole DP-SLM pipeline as a codec whose
``.sbc`` holds the deduplicated units only (WavLM-large L11 -> k-means + DPDP -> units ->
ELLA-V -> WavTokenizer -> 24 kHz).

Vocabulary (§1.3), ``4 + K + 4096`` ids::

    0 UNK   1 BOS   2 EOP (end of phone/unit)   3 EOS
    4 ... K+3           the unit strings "u0" ... "u{K-1}" sorted **lexicographically**
                        ("u0", "u1", "u10", "u100", ...), as the reference's tokenizer
    K+4 ... K+4099      the codec tokens "0" ... "4095" in numeric order

Training sequence of one utterance (§2.5): every run of the frame-level (50 Hz) units gives a
unit token stamped at its start (priority 1) and an EOP at its end (priority 0); codec token ``j``
(40 Hz) is stamped at ``j / 40`` (priority 2); the three streams are merged by (time, priority),
so at a boundary the previous unit's EOP comes first, then the next unit, then the codec tokens
from that time on. Sequence = [every deduplicated unit ("global advance")] + BOS + merged stream
+ EOS. Codec tokens, EOPs and EOS are predicted; BOS and unit tokens are inputs only.

Inference (§2.5): prompt = deduplicated units + BOS + first unit; sample (temperature, top-p; top-p
0 = greedy); after each EOP the next unit is forced, after the last unit's EOP the EOS; an EOP is
forced once ``max_codec_tokens_per_phone`` codec tokens follow the last EOP; ``max_tokens`` caps
the generated tokens. The codes are the generated ids ``>= K + 4`` minus ``K + 4``.

Model (§2.5): the unit LM's Mistral decoder (dim 1024, 12 layers, 16 heads, FFN 4096, RoPE
10 000, RMSNorm), no dropout, output layer with bias: 210.8 M parameters for K = 500.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from ..codec import coding
from ..decoders import Decoder
from ..multistream import MultiStreamCodec, StreamBranch
from ..utils import CodecError
from .unit_lm import MistralSpec, _load_state, _save, build_mistral, lr_at

__all__ = [
    "UNK", "BOS", "EOP", "EOS", "ELLAVVocab", "ELLAVExample", "interleave", "sample_top_p", "ELLAV",
    "train_ellav", "UnitToSpeech", "DPSLMCodec",
]

UNK, BOS, EOP, EOS = 0, 1, 2, 3
NUM_SPECIAL = 4
CONFIG, WEIGHTS = "ellav.json", "ellav.safetensors"


class ELLAVVocab:
    """The ELLA-V token ids of ``num_units`` unit strings and ``num_codes`` codec tokens.

    Example
    -------
    >>> v = ELLAVVocab(12, num_codes=4096)
    >>> [v.unit_id(u) for u in (0, 1, 2, 10, 11)], v.code_id(0), v.size
    ([4, 5, 8, 6, 7], 16, 4112)
    """

    def __init__(self, num_units: int, num_codes: int = 4096) -> None:
        if num_units < 1 or num_codes < 1:
            raise CodecError(f"ELLA-V needs units and codes, got K = {num_units}, {num_codes} codes")
        self.num_units, self.num_codes = int(num_units), int(num_codes)
        order = sorted(range(self.num_units), key=lambda u: f"u{u}")  # lexicographic strings
        self._unit_to_id = np.empty(self.num_units, dtype=np.int64)
        self._unit_to_id[order] = NUM_SPECIAL + np.arange(self.num_units)
        self._id_to_unit = np.asarray(order, dtype=np.int64)
        self.code_offset = NUM_SPECIAL + self.num_units

    @property
    def size(self) -> int:
        return NUM_SPECIAL + self.num_units + self.num_codes

    def tokens(self) -> list[str]:
        """The id -> string table (``<unk> <s> <eop> </s> u0 u1 u10 ... 0 1 ... 4095``)."""
        return (["<unk>", "<s>", "<eop>", "</s>"] + [f"u{u}" for u in self._id_to_unit.tolist()]
                + [str(c) for c in range(self.num_codes)])

    def unit_id(self, unit: int) -> int:
        if not 0 <= int(unit) < self.num_units:
            raise CodecError(f"unit {unit} outside 0..{self.num_units - 1}")
        return int(self._unit_to_id[int(unit)])

    def unit_ids(self, units) -> list[int]:
        u = np.asarray(units, dtype=np.int64).reshape(-1)
        if u.size and (u.min() < 0 or u.max() >= self.num_units):
            raise CodecError(f"units outside 0..{self.num_units - 1}")
        return self._unit_to_id[u].tolist()

    def id_unit(self, token: int) -> int:
        return int(self._id_to_unit[int(token) - NUM_SPECIAL])

    def code_id(self, code: int) -> int:
        if not 0 <= int(code) < self.num_codes:
            raise CodecError(f"codec token {code} outside 0..{self.num_codes - 1}")
        return self.code_offset + int(code)

    def is_unit(self, token: int) -> bool:
        return NUM_SPECIAL <= token < self.code_offset

    def is_code(self, token: int) -> bool:
        return self.code_offset <= token < self.size

    def codes(self, ids: Sequence[int]) -> list[int]:
        """Decode: keep the codec-token ids, minus ``K + 4``."""
        return [int(i) - self.code_offset for i in ids if self.code_offset <= int(i) < self.size]


class ELLAVExample(NamedTuple):
    ids: list[int]       #: the whole training sequence
    targets: list[bool]  #: per id: is it predicted (codec token, EOP, EOS)?


def _runs(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    change = np.flatnonzero(np.diff(units)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [units.size]]).astype(np.int64)
    return starts, ends


def interleave(frame_units, codes, vocab: ELLAVVocab, unit_rate: float = 50, code_rate: float = 40,
               tolerance: float = 0.1, reference_u0_target: bool = False) -> ELLAVExample:
    """The training sequence of one utterance (see the module docstring).

    Parameters
    ----------
    frame_units : array ``[T_u]``
        Frame-level (duplicated) units at ``unit_rate``.
    codes : array ``[T_c]``
        Codec tokens at ``code_rate``.
    tolerance : float
        The two durations must agree within this many seconds (the reference asserts 0.1 s).
    reference_u0_target : bool
        Reproduce the reference's off-by-one (unit ``u0``, id 4, trained as a target).

    Example
    -------
    >>> v = ELLAVVocab(3, num_codes=4)
    >>> ex = interleave([0, 0, 2, 2], [1, 3], v, unit_rate=2, code_rate=1)
    >>> ex.ids   # u0 u2 | BOS u0 c1 EOP u2 c3 EOP EOS (u2 starts at 1 s, with code 3)
    [4, 6, 1, 4, 8, 2, 6, 10, 2, 3]
    """
    units = np.asarray(frame_units, dtype=np.int64).reshape(-1)
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    if units.size == 0:
        raise CodecError("ELLA-V needs at least one unit per utterance")
    if abs(units.size / unit_rate - codes.size / code_rate) > tolerance:
        raise CodecError(f"{units.size} units at {unit_rate} Hz and {codes.size} codec tokens at {code_rate} Hz "
                         f"differ by more than {tolerance} s: extract both from the same audio")
    ur, cr = Fraction(unit_rate).limit_denominator(), Fraction(code_rate).limit_denominator()
    starts, ends = _runs(units)
    run_units = vocab.unit_ids(units[starts])
    events = []  # (time, priority, order, token)
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        events.append((Fraction(s) / ur, 1, i, run_units[i]))
        events.append((Fraction(e) / ur, 0, i, EOP))
    events += [(Fraction(j) / cr, 2, j, vocab.code_id(c)) for j, c in enumerate(codes.tolist())]
    events.sort(key=lambda ev: ev[:3])
    ids = run_units + [BOS] + [ev[3] for ev in events] + [EOS]
    targets = [t in (EOP, EOS) or vocab.is_code(t) or (reference_u0_target and t == NUM_SPECIAL) for t in ids]
    return ELLAVExample(ids, targets)


def sample_top_p(logits: torch.Tensor, top_p: float = 0.0, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> int:
    """One token from ``logits [V]``: ``top_p <= 0`` is greedy (the first maximum); otherwise
    the smallest set of most probable tokens whose probability reaches ``top_p`` (at least one),
    renormalised, at ``temperature``."""
    logits = logits.float()
    if top_p <= 0 or temperature <= 0:
        return int(logits.argmax())
    probs = (logits / temperature).softmax(-1)
    p, idx = probs.sort(descending=True, stable=True)
    keep = (p.cumsum(-1) - p) < top_p
    keep[0] = True
    p = p * keep
    choice = torch.multinomial((p / p.sum()).cpu(), 1, generator=generator)
    return int(idx[choice.to(idx.device)])


class ELLAV(nn.Module):
    """ELLA-V GAR model: deduplicated units -> codec tokens.

    Parameters
    ----------
    num_units : int
        K.
    num_codes : int
        Codec vocabulary (WavTokenizer: 4096).
    dim, num_layers, num_heads, num_kv_heads, ffn_dim, rope_theta, max_positions, rms_eps
        Mistral sizes (defaults: the published model).

    Example
    -------
    >>> m = ELLAV(5, num_codes=8, dim=16, num_layers=1, num_heads=2, num_kv_heads=2, ffn_dim=32,
    ...           max_positions=256)
    >>> codes = m.generate([3, 1, 4], max_codec_tokens_per_phone=2)
    >>> all(0 <= c < 8 for c in codes) and len(codes) <= 6
    True
    """

    def __init__(self, num_units: int, num_codes: int = 4096, dim: int = 1024, num_layers: int = 12,
                 num_heads: int = 16, num_kv_heads: int = 16, ffn_dim: int = 4096, rope_theta: float = 10000.0,
                 max_positions: int = 8000, rms_eps: float = 1e-6) -> None:
        super().__init__()
        self.vocab = ELLAVVocab(num_units, num_codes)
        self.spec = MistralSpec(self.vocab.size, dim, num_layers, num_heads, num_kv_heads, ffn_dim, rope_theta,
                                max_positions, rms_eps, dropout=0.0, output_bias=True)
        self.model = build_mistral(self.spec)

    @property
    def num_units(self) -> int:
        return self.vocab.num_units

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, folder: str | Path) -> None:
        cfg = {"num_units": self.vocab.num_units, "num_codes": self.vocab.num_codes,
               **{k: v for k, v in asdict(self.spec).items() if k not in ("vocab_size", "dropout", "output_bias")}}
        _save(Path(folder), self.model, cfg, CONFIG, WEIGHTS)

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "ELLAV":
        folder = Path(folder)
        if not (folder / CONFIG).is_file():
            raise CodecError(f"{folder}: no {CONFIG}; train the acoustic model first (or pass its folder)")
        cfg = json.loads((folder / CONFIG).read_text())
        m = cls(**cfg)
        m.model.load_state_dict(_load_state(folder, WEIGHTS))
        return m.to(map_location).eval()

    # ---------------------------------------------------------------- training
    def example(self, frame_units, codes, **kwargs) -> ELLAVExample:
        return interleave(frame_units, codes, self.vocab, **kwargs)

    def loss(self, examples: Sequence[ELLAVExample]) -> torch.Tensor:
        """Mean cross-entropy over the targets (codec tokens, EOP, EOS) of a padded batch."""
        width = max(len(e.ids) for e in examples)
        if width > self.spec.max_positions:
            raise CodecError(f"an ELLA-V sequence of {width} tokens exceeds {self.spec.max_positions} positions")
        ids = torch.full((len(examples), width), UNK, dtype=torch.long)
        labels = torch.full_like(ids, UNK)  # UNK = ignore (the reference's ignore_index)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(examples):
            n = len(e.ids)
            ids[i, :n] = torch.tensor(e.ids)
            labels[i, :n] = torch.where(torch.tensor(e.targets), torch.tensor(e.ids), UNK)
            mask[i, :n] = 1
        ids, labels, mask = ids.to(self.device), labels.to(self.device), mask.to(self.device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                           ignore_index=UNK)

    # ---------------------------------------------------------------- inference
    @torch.no_grad()
    def generate(self, units: Sequence[int], max_codec_tokens_per_phone: int = 10, max_tokens: int = 1000,
                 temperature: float = 1.0, top_p: float = 0.0, generator: torch.Generator | None = None,
                 return_ids: bool = False):
        """Codec tokens for deduplicated ``units`` (greedy by default, as the WER figure).

        ``return_ids``: also return the generated token ids (after the prompt)."""
        units = [int(u) for u in np.asarray(units).reshape(-1)]
        if not units:
            raise CodecError("ELLA-V got no units to synthesise")
        if max_codec_tokens_per_phone < 1:
            raise CodecError(f"max_codec_tokens_per_phone must be >= 1, got {max_codec_tokens_per_phone}")
        was = self.training
        self.eval()
        v = self.vocab
        unit_ids = v.unit_ids(units)
        prompt = unit_ids + [BOS, unit_ids[0]]
        if len(prompt) + max_tokens > self.spec.max_positions:
            max_tokens = self.spec.max_positions - len(prompt)
        generated: list[int] = []
        step_input = torch.tensor([prompt], device=self.device)
        past, index, since_eop = None, 0, 0
        try:
            while len(generated) < max_tokens:
                out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                if since_eop >= max_codec_tokens_per_phone:
                    token = EOP
                else:
                    token = sample_top_p(out.logits[0, -1], top_p, temperature, generator)
                new = [token]
                if token == EOP:
                    index, since_eop = index + 1, 0
                    new.append(EOS if index == len(units) else unit_ids[index])
                elif v.is_code(token):
                    since_eop += 1
                generated += new
                if new[-1] == EOS:
                    break
                step_input = torch.tensor([new], device=self.device)
        finally:
            self.train(was)
        generated = generated[:max_tokens] if generated[-1:] != [EOS] else generated
        codes = v.codes(generated)
        return (codes, generated) if return_ids else codes


def train_ellav(
    model: ELLAV,
    train: Sequence[tuple],
    valid: Sequence[tuple] | None = None,
    steps: int = 10000,
    batch_size: int = 8,
    grad_accumulation: int = 8,
    peak_lr: float = 5e-4,
    start_lr: float = 1e-7,
    final_lr: float = 1e-5,
    warmup: int = 1000,
    decay: int = 9000,
    weight_decay: float = 0.01,
    eps: float = 1e-9,
    clip: float = 1.0,
    valid_every: int | None = None,
    patience: int = 5,
    seed: int = 0,
    log_every: int = 0,
) -> dict:
    """Train on ``(frame_units, codes)`` pairs (§4: AdamW eps 1e-9, wd 0.01, warm-up 1000 then
    cosine over 9000, clipping 1.0; validation every half epoch, early stopping after
    ``patience`` validations without improvement; the best validation weights are kept)."""
    if not train:
        raise CodecError("no (units, codes) pairs to train ELLA-V on")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    examples = [p if isinstance(p, ELLAVExample) else model.example(*p) for p in train]
    val = [p if isinstance(p, ELLAVExample) else model.example(*p) for p in (valid or [])]
    if valid_every is None:  # half an epoch of optimiser steps
        valid_every = max(1, math.ceil(len(examples) / (batch_size * grad_accumulation) / 2))
    opt = torch.optim.AdamW(model.parameters(), lr=start_lr, betas=(0.9, 0.999), eps=eps, weight_decay=weight_decay)
    losses, history = [], []
    best, best_step, best_state, bad = math.inf, 0, None, 0
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, peak_lr, start_lr, final_lr, warmup, decay)
        opt.zero_grad()
        total = 0.0
        for _ in range(grad_accumulation):
            loss = model.loss([examples[rng.randrange(len(examples))] for _ in range(batch_size)]) / grad_accumulation
            loss.backward()
            total += loss.item()
        if not math.isfinite(total):
            raise CodecError(f"ELLA-V loss is {total} at step {step}: lower the learning rate")
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(total)
        if log_every and (step + 1) % log_every == 0:
            print(f"ELLA-V step {step + 1}: loss {sum(losses[-log_every:]) / log_every:.3f}", flush=True)
        if val and ((step + 1) % valid_every == 0 or step + 1 == steps):
            model.eval()
            with torch.no_grad():
                v = sum(float(model.loss(val[i : i + batch_size])) * len(val[i : i + batch_size])
                        for i in range(0, len(val), batch_size)) / len(val)
            model.train()
            history.append((step + 1, v))
            if v < best:
                best, best_step, bad = v, step + 1, 0
                best_state = {k: t.detach().clone() for k, t in model.model.state_dict().items()}
            else:
                bad += 1
                if bad >= patience:
                    break
    if best_state is not None:
        model.model.load_state_dict(best_state)
    model.eval()
    return {"losses": losses, "valid": history, "best_valid": best if val else None,
            "best_step": best_step if val else len(losses)}


# -------------------------------------------------------------------------------------------
# the codec: WavLM L11 -> DPDP units (.sbc) -> ELLA-V -> WavTokenizer
# -------------------------------------------------------------------------------------------
class UnitToSpeech(Decoder):
    """ELLA-V + a WavTokenizer decoder: deduplicated units -> 24 kHz waveform.

    It regenerates the durations (``regenerates_durations``), so a unit stream needs no run
    lengths. ``hop_length`` is one unit frame (20 ms) at the output rate, the frame the codec's
    padding and layout are counted in; the real output length follows the generated codes.
    """

    regenerates_durations = True

    def __init__(self, ellav: ELLAV | str, vocoder, unit_rate: float = 50.0, max_codec_tokens_per_phone: int = 10,
                 max_tokens: int = 1000, temperature: float = 1.0, top_p: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        self.ellav = ELLAV.from_pretrained(ellav) if isinstance(ellav, (str, Path)) else ellav
        if isinstance(vocoder, (str, Path)):
            from ..wavtokenizer import WavTokenizer

            vocoder = WavTokenizer.from_pretrained(str(vocoder))
        self.vocoder = vocoder
        self.sample_rate = int(getattr(vocoder, "sample_rate", 24000))
        self.hop_length = int(round(self.sample_rate / unit_rate))
        self.in_channels = 0
        self.max_codec_tokens_per_phone, self.max_tokens = max_codec_tokens_per_phone, max_tokens
        self.temperature, self.top_p, self.seed = temperature, top_p, seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise CodecError("UnitToSpeech decodes unit ids (units_to_sig), not features")

    @torch.no_grad()
    def units_to_sig(self, units: torch.Tensor) -> torch.Tensor:
        """``units [B, U]`` (deduplicated) -> ``sig [B, T]`` (shorter rows zero-padded)."""
        gen = torch.Generator().manual_seed(self.seed)
        sigs = []
        for row in units.detach().cpu().reshape(units.shape[0], -1):
            codes = self.ellav.generate(row.tolist(), self.max_codec_tokens_per_phone, self.max_tokens,
                                        self.temperature, self.top_p, gen)
            if not codes:
                sigs.append(torch.zeros(self.hop_length, device=units.device))
                continue
            c = torch.tensor(codes, dtype=torch.long, device=units.device)[None]
            sigs.append(self.vocoder.decode(c).reshape(-1))
        width = max(s.shape[-1] for s in sigs)
        return torch.stack([nn.functional.pad(s, (0, width - s.shape[-1])) for s in sigs])


class DPSLMCodec(MultiStreamCodec):
    """The DP-SLM pipeline as a codec of one stream, ``units`` (deduplicated, no run lengths):
    its ``.sbc`` file rate is ``R log2 K`` (R deduplicated units per second).

    Parameters
    ----------
    wavlm : str
        WavLM-large (hub id or folder); layer ``layer`` (11) before the final LayerNorm, centre
        padding, no waveform normalisation (:class:`~speechbrain_codec.encoders.SSLEncoder`).
    codebook : str
        k-means codebook file (:func:`~speechbrain_codec.quantizers.kmeans.save_codebook`).
    lmbda, num_neighbors : DPDP's duration penalty and neighbour restriction.
    ellav, vocoder : ELLA-V folder (or model) and WavTokenizer folder (or model).
    """

    #: one utterance per call: the unit-to-speech decoder samples each utterance on its own
    batches = False

    def __init__(self, wavlm: str, codebook, ellav, vocoder, lmbda: float = 0.0, num_neighbors: int | None = None,
                 layer: int = 11, max_codec_tokens_per_phone: int = 10, max_tokens: int = 1000,
                 temperature: float = 1.0, top_p: float = 0.0, seed: int = 0) -> None:
        from ..encoders import SSLEncoder
        from ..quantizers import DPDPQuantizer

        encoder = SSLEncoder(wavlm, layers=layer, padding="center", normalize_input=False)
        quantizer = DPDPQuantizer(codebook, lmbda=lmbda, num_neighbors=num_neighbors)
        decoder = UnitToSpeech(ellav, vocoder, encoder.sample_rate / encoder.hop_length, max_codec_tokens_per_phone,
                               max_tokens, temperature, top_p, seed)
        k = quantizer.codebook_sizes[0]
        if decoder.ellav.num_units != k:
            raise CodecError(f"the acoustic model was trained on K = {decoder.ellav.num_units} units, the codebook has {k}")
        super().__init__({"units": StreamBranch(quantizer, kind="units", durations=False)}, decoder, encoder)

    @coding
    def toks_to_sig(self, toks: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{"units": [B, U, 1]}`` (deduplicated, as read from a ``.sbc``) -> 24 kHz ``sig``."""
        units = self.from_token_dict(toks)["units"][..., 0]
        if units.shape[0] != 1:
            raise CodecError("DPSLMCodec.toks_to_sig decodes one utterance at a time")
        # runs merged (a no-op on units read from a .sbc; frame-level units from sig_to_toks)
        units = torch.unique_consecutive(units[0])[None]
        return self.decoder.units_to_sig(units)
