#!/usr/bin/env python3
"""Pretrain the TTR summariser (lmloss.md §2.7, §4): WavLM hidden state 10 frames, pooled per BERT
word-piece by the word alignments, trained to match BERT's last layer (Adam, lr 1e-4, betas
(0.8, 0.99), grad clip 1.0, one segment per step; segments of consecutive utterances of one
speaker-chapter reaching ``--concat-seconds``, as the reference).

    python pretrain_ttr.py --manifest train.csv --data-root DATA --alignments ALIGN --out summariser.ckpt \
        [--ssl microsoft/wavlm-base] [--bert bert-base-uncased] [--steps 1000000] [--concat-seconds 30] \
        [--group id_prefix:5]

Writes the summariser's state dict (``--out``, atomically) and ``<out>.json`` (its configuration,
steps, final loss). Deliberate difference: WavLM stays frozen (the reference fine-tunes it, spec
§6.2 item 6, and the phase-3 loss then uses that fine-tuned copy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from speechbrain_codec.alignment import Word
from speechbrain_codec.bin.train_codec import alignment_file
from speechbrain_codec.dataio import load_audio, read_manifest
from speechbrain_codec.dataio.segments import concat_segments
from speechbrain_codec.encoders import SSLEncoder
from speechbrain_codec.losses.ttr import BertTargets, TTRSummariser, pretrain_summariser
from speechbrain_codec.utils import atomic_path, atomic_write_json, one_line_errors


def segments(manifest: str, data_root: str, alignments: str, seconds: float, group: str | None):
    from speechbrain_codec.alignment import read_alignment

    rows = read_manifest(manifest, data_root)
    items = []
    for seg in concat_segments(rows, seconds, group).values():
        sigs, words, t = [], [], 0.0
        for m in seg["members"]:
            sig = load_audio(rows[m]["wav"], 16000, notices=False)
            sig = sig / sig.abs().max().clamp(min=1e-8) * 0.95  # peak-normalised x 0.95 (§1.6)
            words += [Word(w.start + t, w.end + t, w.word) for w in read_alignment(alignment_file(alignments, m))]
            t += sig.numel() / 16000
            sigs.append(sig)
        items.append((torch.cat(sigs), words))
    return items


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--alignments", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ssl", default="microsoft/wavlm-base")
    p.add_argument("--ssl-layer", type=int, default=10)
    p.add_argument("--bert", default="bert-base-uncased")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--concat-seconds", type=float, default=30.0)
    p.add_argument("--group", default="id_prefix:5")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    ssl = SSLEncoder(args.ssl, layers=args.ssl_layer, freeze=True).to(args.device)
    bert = BertTargets(args.bert).to(args.device)
    dim = ssl.out_channels
    summariser = TTRSummariser(dim=dim, num_heads=args.heads, ffn_dim=args.ffn, num_layers=args.layers).to(args.device)
    items = [(s.to(args.device), w) for s, w in
             segments(args.manifest, args.data_root, args.alignments, args.concat_seconds, args.group)]
    losses = pretrain_summariser(summariser, ssl, bert, items, steps=args.steps, lr=args.lr, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save({k: v.cpu() for k, v in summariser.state_dict().items()}, tmp)
    atomic_write_json(out.with_suffix(out.suffix + ".json"), {
        "dim": dim, "num_heads": args.heads, "ffn_dim": args.ffn, "num_layers": args.layers, "ssl": args.ssl,
        "ssl_layer": args.ssl_layer, "bert": args.bert, "steps": args.steps, "segments": len(items),
        "final_loss": losses[-1] if losses else None})
    print(f"{args.out}: summariser trained {args.steps} steps on {len(items)} segments (last loss {losses[-1]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
