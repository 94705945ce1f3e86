#!/usr/bin/env python3
"""How well the offline aligner (pocketsphinx) places word boundaries on real English speech.

Two checks on the transcribed clean read English clips of ``../shared/data`` (cmu_arctic,
librispeech_clean_misc, ljspeech; clips with words outside pocketsphinx's dictionary skipped;
vctk and librivox are left out because their background noise makes the energy reference
meaningless):

1. edges: first word's start and last word's end against the speech onset / offset from frame
   energy (``alignment.energy_edges``, within 35 dB of the loudest 10-ms frame); the signed
   median says whether the aligner starts early / ends late;
2. consistency: each consecutive pair of clips joined by 0.5 s of digital silence and aligned as
   one utterance; every word boundary is compared with the clips' own separate alignments
   (shifted), i.e. the aligner must not move boundaries when the context changes.

Prints median / 95th percentile / max absolute differences and the share within 50 ms; saves
``benchmarks/results/alignment_check.json``.

    python benchmarks/alignment_check.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from speechbrain_codec.alignment import PocketsphinxAligner, energy_edges
from speechbrain_codec.dataio import load_audio

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "en"


def stats(errors: list[float]) -> dict:
    e = np.abs(np.asarray(errors))
    return {"n": int(e.size), "median_ms": 1000 * float(np.median(e)), "p95_ms": 1000 * float(np.percentile(e, 95)),
            "max_ms": 1000 * float(e.max()), "within_50ms": float((e <= 0.05 + 1e-9).mean())}


def main() -> None:
    aligner = PocketsphinxAligner()
    clips = []
    for corpus in ("cmu_arctic", "librispeech_clean_misc", "ljspeech"):
        with open(DATA / corpus / "manifest.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["text"] and not aligner.missing_words(row["text"]):
                    sig = load_audio(DATA / corpus / row["path"], 16000, notices=False).numpy()
                    clips.append((row["utt_id"], sig, row["text"], aligner.align(sig, 16000, row["text"])))
    start_errors, end_errors = [], []
    for _, sig, _, words in clips:
        onset, offset = energy_edges(sig)
        start_errors.append(words[0].start - onset)
        end_errors.append(words[-1].end - offset)
    consistency, word_count_mismatches = [], 0
    gap = np.zeros(8000, dtype=np.float32)
    for (_, a, ta, wa), (_, b, tb, wb) in zip(clips[:-1], clips[1:]):
        joint = aligner.align(np.concatenate([a, gap, b]), 16000, f"{ta} {tb}")
        shift = (len(a) + len(gap)) / 16000
        ref = [(w.start, w.end) for w in wa] + [(w.start + shift, w.end + shift) for w in wb]
        word_count_mismatches += len(joint) != len(ref)
        consistency += [max(abs(w.start - r[0]), abs(w.end - r[1])) for w, r in zip(joint, ref)]
    result = {"clips": len(clips), "edges": stats(start_errors + end_errors),
              "signed_median_ms": {"start": 1000 * float(np.median(start_errors)),
                                   "end": 1000 * float(np.median(end_errors))},
              "consistency": stats(consistency),
              "pairs": len(clips) - 1, "pairs_with_a_different_word_count": word_count_mismatches}
    for name in ("edges", "consistency"):
        s = result[name]
        print(f"{name:12s} n={s['n']:4d} median {s['median_ms']:6.1f} ms  p95 {s['p95_ms']:7.1f} ms  "
              f"max {s['max_ms']:7.1f} ms  within 50 ms {100 * s['within_50ms']:5.1f}%")
    print("signed median: first word starts {start:+.0f} ms, last word ends {end:+.0f} ms from the energy edges"
          .format(**result["signed_median_ms"]))
    print(f"{word_count_mismatches} of {result['pairs']} joined pairs aligned to a different number of words")
    out = ROOT / "benchmarks" / "results" / "alignment_check.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
