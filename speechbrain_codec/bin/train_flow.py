"""Train the flow-matching decoder: speech tokens + speaker -> DAC-VAE latents (learnable_speech.md §2.2-§2.4).

    python -m speechbrain_codec.bin.train_flow HPARAMS.yaml --output_folder OUT --manifest train.csv \\
        --cache_folder CACHE --speaker_from LM_MODEL_DIR [--overrides_file debug.yaml] [--device cpu]

Builds the :class:`~speechbrain_codec.flow_matching.FlowDecoder` of ``model_hparams``
(``latent_dim``, ``upsample`` and ``vocab_size`` filled in from the cache's ``info.json``, so
the variant's dimensions agree, spec pitfall 1), loads the speaker encoder from the trained LM
(``speaker_encoder.*``) frozen (``freeze_speaker_encoder``), and fits the contrastive CFM loss
on immiscible-assigned noise with CFG dropout and the random prompt condition. The speaker
reference is a 0.5-4 s crop of the target's own mel (as the reference). Output: ``OUT/model``
(``model.yaml``, ``model.ckpt`` with the speaker encoder under ``speaker_encoder.``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from ..utils import CodecError, one_line_errors
from .cached_training import CachedCorpus, export_model, fit, load_exported, load_model_yaml, read_hparams, \
    reference_crop
from .train_text_to_token import _args as _lm_args
from .train_text_to_token import overrides_of

logger = logging.getLogger("speechbrain_codec")

__all__ = ["FlowWithSpeaker", "main"]


class FlowWithSpeaker(nn.Module):
    """A :class:`FlowDecoder` (``flow``) and the speaker encoder that feeds it (``speaker_encoder``)."""

    def __init__(self, flow: nn.Module, speaker_encoder: nn.Module) -> None:
        super().__init__()
        self.flow, self.speaker_encoder = flow, speaker_encoder


def collate(items: list[dict], device) -> tuple[torch.Tensor, ...]:
    """Pad tokens ``[B, N]`` and latents ``[B, C, r N]`` with zeros; lengths."""
    n = max(len(it["toks"]) for it in items)
    t = max(it["lats"].shape[-1] for it in items)
    toks = torch.zeros(len(items), n, dtype=torch.long)
    lats = torch.zeros(len(items), items[0]["lats"].shape[0], t)
    for i, it in enumerate(items):
        toks[i, : len(it["toks"])] = it["toks"]
        lats[i, :, : it["lats"].shape[-1]] = it["lats"]
    tl = torch.tensor([len(it["toks"]) for it in items])
    ll = torch.tensor([it["lats"].shape[-1] for it in items])
    return toks.to(device), tl.to(device), lats.to(device), ll.to(device)


@one_line_errors
def main(argv=None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    speaker_from = None
    if "--speaker_from" in argv:
        k = argv.index("--speaker_from")
        speaker_from = argv[k + 1]
        del argv[k:k + 2]
    if speaker_from is None:
        raise CodecError("--speaker_from LM_MODEL_DIR is required (the flow's speaker encoder comes from the LM)")
    a = _lm_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(a.output_folder)
    out.mkdir(parents=True, exist_ok=True)
    hp = read_hparams(a.hparams, {**overrides_of(a), "output_folder": str(out)})
    info_path = Path(a.cache_folder) / "info.json"
    if not info_path.is_file():
        raise CodecError(f"{info_path}: missing; made by the extraction stage")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    corpus = CachedCorpus(a.manifest, a.cache_folder, info["ratio"])
    model_ov = {**(hp.get("model_overrides") or {}), "latent_dim": info["latent_dim"], "upsample": info["ratio"],
                "vocab_size": info["vocab_size"]}
    spk = load_exported(speaker_from).speaker_encoder
    model_ov["spk_dim"] = int(spk.out_dim)
    flow, yaml_text = load_model_yaml(hp["model_hparams"], model_ov, key="model")
    model = FlowWithSpeaker(flow, spk)
    freeze = bool(hp.get("freeze_speaker_encoder", True))
    if freeze:
        spk.requires_grad_(False)
    device = torch.device(a.device)
    model.to(device)
    mel_rate = float(info["mel_rate"])

    def batch_loss(batch_ids, rng):
        items = [corpus.items[i] for i in batch_ids]
        ref = reference_crop([it["mel"] for it in items], mel_rate, rng).to(device)
        if freeze:
            spk.eval()
            with torch.no_grad():
                v = spk(ref)
        else:
            v = spk(ref)
        toks, tl, lats, ll = collate(items, device)
        o = flow.compute_loss(toks, tl, lats, ll, v)
        return o.loss, {"fm": float(o.fm), "contrastive": float(o.contrastive)}

    logs = fit(model, model.parameters(), batch_loss, corpus.ids(), hp, out, device)
    # model.yaml + model.ckpt: the flow decoder; speaker_encoder.ckpt: the (frozen) speaker encoder it was
    # trained with, whose architecture is the LM's (``speaker_from``)
    export_model(out / "model", flow.cpu(), yaml_text, {"final": logs, **info, "speaker_from": str(speaker_from),
                                                        "freeze_speaker_encoder": freeze})
    from ..utils import atomic_path

    with atomic_path(out / "model" / "speaker_encoder.ckpt") as tmp:
        torch.save(spk.cpu().state_dict(), tmp)
    print(f"flow decoder: {out / 'model'} ({', '.join(f'{k} {v:.4f}' for k, v in logs.items())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
