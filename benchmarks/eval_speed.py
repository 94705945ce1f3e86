#!/usr/bin/env python3
"""Evaluation throughput: utterances per second per metric, and a full 100-utterance run.

Uses 100 clips of ../shared/data (LibriSpeech train-clean-100, 16 kHz) and a degraded copy of
each (Codec2 700C when installed, else added noise) as the "system". Times every metric alone
on 20 clips (one process, 2 threads), then all offline metrics + pocketsphinx on the 100 clips
with 2 worker processes. Prints and saves (``--out``) the figures.

    python benchmarks/eval_speed.py
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from speechbrain_codec.baselines import Codec2
from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.evaluate import ALL_METRICS, evaluate_systems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--per-metric", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_speed.json"))
    args = parser.parse_args()
    folder = Path(args.shared) / "data" / "en" / "librispeech_train_clean_100"
    with open(folder / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[: args.n]
    tmp = Path(tempfile.mkdtemp())
    deg_dir = tmp / "degraded"
    deg_dir.mkdir()
    codec2 = Codec2("700C") if Codec2.available() else None
    seconds = 0.0
    for r in rows:
        x = load_audio(folder / r["path"], 16000, notices=False).numpy()
        seconds += len(x) / 16000
        y = codec2.run(x, 16000).sig if codec2 else x + 0.01 * np.random.default_rng(0).standard_normal(x.shape)
        sf.write(deg_dir / f"{r['utt_id']}.wav", y, 16000)
    manifest = [{"ID": r["utt_id"], "duration": r["duration"], "wav": str(folder / r["path"]), "spk_id": r["speaker"],
                 "lang": "en", "text": ""} for r in rows]
    write_manifest(tmp / "all.csv", manifest)
    write_manifest(tmp / "few.csv", manifest[: args.per_metric])
    result = {"clips": len(rows), "audio_seconds": round(seconds, 1), "system": "Codec2 700C" if codec2 else "noise",
              "per_metric": {}}
    print(f"{len(rows)} clips, {seconds:.0f} s of audio; degraded by {result['system']}")
    for metric in [m for m in ALL_METRICS if m != "utmos"] + ["asr"]:
        t0 = time.time()
        evaluate_systems(tmp / "few.csv", {"deg": deg_dir}, metrics=() if metric == "asr" else (metric,),
                         asr="pocketsphinx" if metric == "asr" else "none", workers=1)
        wall = time.time() - t0
        n_utts = 2 * args.per_metric  # the original and the degraded system
        result["per_metric"][metric] = {"utts_per_s": n_utts / wall, "wall_s": wall}
        print(f"{metric:8s}: {n_utts / wall:6.2f} utterances/s ({wall:.1f} s for {n_utts}, model loading included)")
    t0 = time.time()
    res = evaluate_systems(tmp / "all.csv", {"deg": deg_dir}, metrics=tuple(m for m in ALL_METRICS if m != "utmos"),
                           asr="pocketsphinx", workers=2)
    result["all_metrics_2_workers"] = {"wall_s": time.time() - t0, "utterances": 2 * len(rows),
                                       "failed": res["systems"]["deg"]["summary"]["failed"]}
    print(f"all offline metrics + pocketsphinx, {2 * len(rows)} utterances, 2 workers: {time.time() - t0:.0f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
