"""Shared pieces of the trainers that read cached speech tokens / latents / reference mels
(:mod:`speechbrain_codec.bin.train_flow`, :mod:`speechbrain_codec.bin.train_text_to_token`).

* :func:`load_model_yaml` / :func:`export_model` / :func:`load_exported`: a model is built by a
  small yaml (``model_hparams`` + ``model_overrides``, like ``codec_hparams``); the exported
  folder holds ``model.yaml`` (overrides resolved into it) and ``model.ckpt``.
* :class:`CachedCorpus`: manifest rows + the three caches of
  :mod:`speechbrain_codec.bin.extract_speech_latents`, aligned as the reference's opener
  (learnable_speech.md §1.4): ``n_tok = floor(min(T_latent / r, len(tokens)))``.
* :func:`fit`: epochs of seeded shuffled batches, AdamW + linear warm-up from ``1e-4 lr`` then
  constant (§4), gradient clipping, a non-finite-loss guard, an
  :class:`~speechbrain_codec.training.checkpoints.AtomicCheckpointer` checkpoint per epoch (a
  killed run resumes at the last complete epoch), a train log.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable

import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references

from ..dataio import FeatureCache, read_manifest
from ..training.checkpoints import AtomicCheckpointer
from ..utils import CodecError, atomic_path, atomic_write_json, atomic_write_text

__all__ = ["load_model_yaml", "export_model", "load_exported", "CachedCorpus", "fit", "warmup_constant",
           "read_hparams"]

logger = logging.getLogger("speechbrain_codec")


def read_hparams(path: str, overrides: str | dict | None = None) -> dict:
    """Load a training hparams file with overrides (a yaml string or dict)."""
    if not Path(path).is_file():
        raise CodecError(f"{path}: no such hparams file")
    with open(path, encoding="utf-8") as f:
        return load_hyperpyyaml(f, overrides or {})


def load_model_yaml(path: str, overrides: dict | None = None, key: str = "model") -> tuple[torch.nn.Module, str]:
    """``(module, resolved yaml text)`` of the model yaml ``path`` (builds ``key``)."""
    if not Path(path).is_file():
        raise CodecError(f"{path}: no such model yaml")
    with open(path, encoding="utf-8") as f:
        text = resolve_references(f, overrides or {}).getvalue()
    hp = load_hyperpyyaml(text)
    if key not in hp:
        raise CodecError(f"{path}: builds no `{key}`")
    return hp[key], text


def export_model(folder: str | Path, model: torch.nn.Module, yaml_text: str, extra: dict | None = None) -> None:
    """Write ``model.yaml`` + ``model.ckpt`` (+ ``info.json``) into ``folder`` atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "model.yaml", yaml_text)
    with atomic_path(folder / "model.ckpt") as tmp:
        torch.save(model.state_dict(), tmp)
    atomic_write_json(folder / "info.json", {"num_parameters": sum(p.numel() for p in model.parameters()),
                                             **(extra or {})})


def load_exported(folder: str | Path, key: str = "model", map_location="cpu") -> torch.nn.Module:
    """The model of an exported folder (weights loaded, eval mode)."""
    folder = Path(folder)
    for name in ("model.yaml", "model.ckpt"):
        if not (folder / name).is_file():
            raise CodecError(f"{folder / name}: missing; it is written by the training stage of this model")
    model, _ = load_model_yaml(str(folder / "model.yaml"), key=key)
    model.load_state_dict(torch.load(folder / "model.ckpt", map_location=map_location, weights_only=True))
    return model.eval()


class CachedCorpus:
    """Aligned training items from a manifest and the caches of ``extract_speech_latents``.

    Item: ``{"id", "text", "spk_id", "toks" [n] long, "lats" [C, r n] float, "mel" [80, F]}``.
    """

    def __init__(self, manifest: str, cache_folder: str, ratio: int, min_tokens: int = 1) -> None:
        self.rows = read_manifest(manifest)
        folder = Path(cache_folder)
        for sub in ("tokens", "latents", "ref_mel"):
            if not (folder / sub / "index.json").is_file():
                raise CodecError(f"{folder / sub}: no cache; it is made by the extraction stage "
                                 "(python -m speechbrain_codec.bin.extract_speech_latents)")
        self.toks, self.lats, self.mels = (FeatureCache(folder / s) for s in ("tokens", "latents", "ref_mel"))
        self.ratio = ratio
        self.items, dropped = {}, []
        for uid, row in self.rows.items():
            t = self.toks.get(uid).reshape(-1).long()
            z = self.lats.get(uid).float()
            n = min(z.shape[0] // ratio, t.shape[0])
            if n < min_tokens:
                dropped.append(uid)
                continue
            self.items[uid] = {"id": uid, "text": row.get("text", ""), "spk_id": row.get("spk_id", ""),
                               "toks": t[:n], "lats": z[: ratio * n].t().contiguous(),
                               "mel": self.mels.get(uid).float().t().contiguous()}
        if dropped:
            logger.warning("%d utterances shorter than %d token(s) left out: %s", len(dropped), min_tokens,
                           ", ".join(dropped[:5]))
        if not self.items:
            raise CodecError(f"{manifest}: no usable utterance (every one is shorter than {min_tokens} tokens)")

    def ids(self) -> list[str]:
        return sorted(self.items)


def reference_crop(mels: list[torch.Tensor], frames_per_second: float, rng: random.Random,
                   min_s: float = 0.5, max_s: float = 4.0, train: bool = True) -> torch.Tensor:
    """One crop of 0.5-4 s per item (§1.4 step 5; centre crop when ``train=False``), one length per
    batch (the shortest item bounds it), ``[B, 80, L]``."""
    lengths = [m.shape[-1] for m in mels]
    hi = min(min(lengths), max(1, round(max_s * frames_per_second)))
    lo = min(hi, max(1, round(min_s * frames_per_second)))
    length = rng.randint(lo, hi) if train else hi
    out = []
    for m in mels:
        start = rng.randint(0, m.shape[-1] - length) if train else (m.shape[-1] - length) // 2
        out.append(m[:, start:start + length])
    return torch.stack(out)


def warmup_constant(warmup_steps: int, start_ratio: float = 1e-4) -> Callable[[int], float]:
    """Linear warm-up from ``start_ratio`` to 1 over ``warmup_steps``, then constant (§4)."""
    def f(step: int) -> float:
        if warmup_steps <= 0 or step >= warmup_steps:
            return 1.0
        return start_ratio + (1 - start_ratio) * step / warmup_steps
    return f


def fit(model: torch.nn.Module, params, batch_loss: Callable, ids: list[str], hparams: dict, out: Path,
        device: torch.device) -> dict:
    """Train ``params`` of ``model`` on batches of ``ids``; ``batch_loss(batch_ids, rng) -> (loss, logs)``.

    hparams: ``number_of_epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``warmup_steps``,
    ``max_grad_norm``, ``seed``, optional ``nonfinite_patience`` (10). Returns the last epoch's
    mean logs.
    """
    from speechbrain.utils.epoch_loop import EpochCounter

    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(hparams["lr"]), weight_decay=float(hparams.get("weight_decay", 0.01)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_constant(int(hparams.get("warmup_steps", 500))))
    counter = EpochCounter(int(hparams["number_of_epochs"]))
    ckpt = AtomicCheckpointer(out / "save", {"model": model, "optimizer": opt, "scheduler": sched, "counter": counter})
    ckpt.recover_if_possible()
    bs = int(hparams["batch_size"])
    seed = int(hparams.get("seed", 1986))
    patience = int(hparams.get("nonfinite_patience", 10))
    log_path = out / "train_log.txt"
    logs: dict[str, float] = {}
    bad = 0
    for epoch in counter:
        rng = random.Random(seed * 1000 + epoch)
        order = list(ids)
        rng.shuffle(order)
        torch.manual_seed(seed * 1000 + epoch)
        model.train()
        sums: dict[str, float] = {}
        n = 0
        t0 = time.perf_counter()
        for i in range(0, len(order), bs):
            loss, terms = batch_loss(order[i:i + bs], rng)
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                bad += 1
                logger.warning("non-finite loss at epoch %d: update skipped (%d in a row)", epoch, bad)
                if bad >= patience:
                    raise CodecError(f"{bad} non-finite losses in a row: lower the learning rate or check the data")
                continue
            bad = 0
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, float(hparams.get("max_grad_norm", 1.0)))
            opt.step()
            sched.step()
            for k, v in {"loss": float(loss.detach()), **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        logs = {k: v / max(n, 1) for k, v in sums.items()}
        line = f"epoch: {epoch}, lr: {opt.param_groups[0]['lr']:.3g}, " + \
               ", ".join(f"{k}: {v:.5f}" for k, v in logs.items()) + f", seconds: {time.perf_counter() - t0:.1f}"
        logger.info(line)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        ckpt.save_and_keep_only(meta={"epoch": epoch, **logs}, num_to_keep=1)
    return logs


def write_json(path: Path, obj: dict) -> None:
    atomic_write_json(path, obj)


def seconds_of(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "nan"
