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
   (shifted), i.e. the aligner must not move boundaries when the context changes;
3. padding: on the dictionary-covered clips of every English corpus, how many lose a word with
   the silence padding switched off (``pad=0``) and on.

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
from speechbrain_codec.utils import CodecError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "en"


def stats(errors: list[float]) -> dict:
    e = np.abs(np.asarray(errors))
    return {"n": int(e.size), "median_ms": 1000 * float(np.median(e)), "p95_ms": 1000 * float(np.percentile(e, 95)),
            "max_ms": 1000 * float(e.max()), "within_50ms": float((e <= 0.05 + 1e-9).mean())}


def english_clips(aligner: PocketsphinxAligner, corpora):
    """``(utt_id, sig, text)`` of the transcribed clips whose words are all in the dictionary."""
    for corpus in corpora:
        with open(DATA / corpus / "manifest.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["text"] and not aligner.missing_words(row["text"]):
                    yield row["utt_id"], load_audio(DATA / corpus / row["path"], 16000, notices=False).numpy(), row["text"]


def lost_words(aligner: PocketsphinxAligner, clips) -> int:
    """How many clips the aligner cannot align with every word of the transcript."""
    failures = 0
    for _, sig, text in clips:
        try:
            aligner.align(sig, 16000, text)
        except CodecError:
            failures += 1
    return failures


def main() -> None:
    aligner = PocketsphinxAligner()
    clips = [(uid, sig, text, aligner.align(sig, 16000, text))
             for uid, sig, text in english_clips(aligner, ("cmu_arctic", "librispeech_clean_misc", "ljspeech"))]
    start_errors, end_errors = [], []
    for _, sig, _, words in clips:
        onset, offset = energy_edges(sig)
        start_errors.append(words[0].start - onset)
        end_errors.append(words[-1].end - offset)
    consistency = []
    gap = np.zeros(8000, dtype=np.float32)
    for (_, a, ta, wa), (_, b, tb, wb) in zip(clips[:-1], clips[1:]):
        joint = aligner.align(np.concatenate([a, gap, b]), 16000, f"{ta} {tb}")  # raises if a word is lost
        shift = (len(a) + len(gap)) / 16000
        ref = [(w.start, w.end) for w in wa] + [(w.start + shift, w.end + shift) for w in wb]
        consistency += [max(abs(w.start - r[0]), abs(w.end - r[1])) for w, r in zip(joint, ref)]
    every = list(english_clips(aligner, sorted(p.parent.name for p in DATA.glob("*/manifest.tsv"))))
    padding = {"clips": len(every), "lose_words_without_padding": lost_words(PocketsphinxAligner(pad=0.0), every),
               "lose_words_with_padding": lost_words(aligner, every)}
    result = {"clips": len(clips), "edges": stats(start_errors + end_errors),
              "signed_median_ms": {"start": 1000 * float(np.median(start_errors)),
                                   "end": 1000 * float(np.median(end_errors))},
              "consistency": stats(consistency), "pairs": len(clips) - 1, "padding": padding}
    for name in ("edges", "consistency"):
        s = result[name]
        print(f"{name:12s} n={s['n']:4d} median {s['median_ms']:6.1f} ms  p95 {s['p95_ms']:7.1f} ms  "
              f"max {s['max_ms']:7.1f} ms  within 50 ms {100 * s['within_50ms']:5.1f}%")
    print("signed median: first word starts {start:+.0f} ms, last word ends {end:+.0f} ms from the energy edges"
          .format(**result["signed_median_ms"]))
    print("every English corpus, {clips} clips: words lost in {lose_words_without_padding} without the silence "
          "padding, in {lose_words_with_padding} with it".format(**padding))
    out = ROOT / "benchmarks" / "results" / "alignment_check.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
