#!/usr/bin/env python3
"""Entropy-coded bitrate versus nominal on real speech from ../shared/data.

Fits the order-0 token model of a trained codec on the even-numbered clips of LibriSpeech
train-clean-100 (../shared) and range-codes the odd-numbered ones, plus LibriSpeech test-clean
clips and AISHELL-1 speaker S0150 (unseen conditions). Prints and saves (``--out``) nominal,
plain payload and entropy-coded payload bit rates per set.

    python benchmarks/entropy_rate.py --checkpoint recipes/mini/exp/mini/train/codec
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from speechbrain_codec.bitstream import Bitstream
from speechbrain_codec.codec import Codec
from speechbrain_codec.dataio import load_audio
from speechbrain_codec.entropy import TokenModel


def clips(folder: Path, limit: int | None = None) -> list[Path]:
    with open(folder / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [folder / r["path"] for r in rows[:limit]]


def tokens(codec: Codec, paths: list[Path]) -> list[tuple]:
    out = []
    for p in paths:
        sig = load_audio(p, codec.sample_rate, notices=False)
        with torch.no_grad():
            out.append((codec.sig_to_toks(sig[None])[0].numpy(), sig.numel()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "entropy_rate.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = Path(args.shared) / "data"
    codec = Codec.from_pretrained(args.checkpoint)
    libri = clips(data / "en" / "librispeech_train_clean_100")
    fit_toks = tokens(codec, libri[0::2])
    model = TokenModel.fit([t for t, _ in fit_toks], codec.codebook_sizes)
    sets = {
        "librispeech train-clean-100, odd clips (held out)": libri[1::2],
        "librispeech test-clean (misc)": clips(data / "en" / "librispeech_clean_misc"),
        "aishell-1 S0150 (Mandarin, first 60)": clips(data / "zh" / "aishell1_S0150", 60),
    }
    result = {"checkpoint": args.checkpoint, "codec": codec.describe(),
              "fitted_on": f"{len(fit_toks)} clips, {sum(n for _, n in fit_toks) / codec.sample_rate:.0f} s", "sets": {}}
    print(f"codec: {codec.describe()['quantizer']} {codec.codebook_sizes} at {codec.frame_rate} Hz, "
          f"nominal {codec.bitrate:.1f} b/s; token model fitted on {result['fitted_on']}")
    for name, paths in sets.items():
        toks = tokens(codec, paths)
        seconds = sum(n for _, n in toks) / codec.sample_rate
        plain = sum(Bitstream(t, codec.sample_rate, codec.hop_length, n, codec.codebook_sizes, codec.config_hash).payload_bytes() for t, n in toks)
        coded = sum(len(model.encode(t)) for t, _ in toks)
        row = {"clips": len(toks), "seconds": round(seconds, 1),
               "nominal_bitrate": codec.bitrate,
               "plain_payload_bitrate": 8 * plain / seconds,
               "entropy_payload_bitrate": 8 * coded / seconds,
               "ideal_bitrate": sum(model.ideal_bits(t) for t, _ in toks) / seconds,
               "empirical_entropy_bits_per_frame": _entropy(toks, codec.codebook_sizes)}
        row["saving_vs_nominal_%"] = 100 * (1 - row["entropy_payload_bitrate"] / codec.bitrate)
        result["sets"][name] = row
        print(f"{name}: {len(toks)} clips, {seconds:.0f} s | plain {row['plain_payload_bitrate']:.1f} b/s | "
              f"entropy-coded {row['entropy_payload_bitrate']:.1f} b/s ({row['saving_vs_nominal_%']:.1f}% below nominal)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


def _entropy(toks, sizes) -> float:
    """Empirical order-0 entropy of the set itself (a lower bound for any order-0 model)."""
    import numpy as np

    allt = np.concatenate([t for t, _ in toks])
    total = 0.0
    for k, n in enumerate(sizes):
        p = np.bincount(allt[:, k], minlength=n) / allt.shape[0]
        p = p[p > 0]
        total += float(-(p * np.log2(p)).sum())
    return total


if __name__ == "__main__":
    main()
