#!/usr/bin/env python3
"""Data preparation for the mini recipe: bundled clips -> train/valid/test manifests.

Reads ``<data_folder>/manifest.tsv`` (columns ``utt_id split path speaker lang ... text``),
checks every clip (exists, decodes, not empty) and transcript (UTF-8; English test clips need
text for WER), and writes ``train.csv``, ``valid.csv`` and ``test.csv`` with paths relative to
``{data_root}``. Each check failure names the file and the fix.

Usage: python mini_prepare.py --data_folder data --save_folder exp/mini/data
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

from speechbrain_codec.dataio import audio_info, write_manifest
from speechbrain_codec.utils import CodecError

logger = logging.getLogger("speechbrain_codec")
SPLITS = ("train", "valid", "test")


def prepare_mini(data_folder: str | Path, save_folder: str | Path) -> dict[str, int]:
    """Write the three manifests; returns the number of utterances per split."""
    data_folder, save_folder = Path(data_folder), Path(save_folder)
    src = data_folder / "manifest.tsv"
    if not src.is_file():
        raise CodecError(f"{src}: missing; --data_folder must hold the bundled manifest.tsv and audio/")
    try:
        with open(src, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except UnicodeDecodeError as err:
        raise CodecError(f"{src}: not UTF-8 (byte {err.start}); re-save it as UTF-8") from None
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows:
        if row["split"] not in out:
            raise CodecError(f"{src}: utterance {row['utt_id']} has unknown split {row['split']!r}")
        wav = data_folder / row["path"]
        info = audio_info(wav)
        text = (row.get("text") or "").strip()
        if row["split"] == "test" and row["lang"] == "en" and not text:
            raise CodecError(f"{src}: English test utterance {row['utt_id']} has an empty transcript; add it")
        out[row["split"]].append({
            "ID": row["utt_id"],
            "duration": round(info.frames / info.samplerate, 3),
            "wav": "{data_root}/" + row["path"],
            "spk_id": row["speaker"],
            "lang": row["lang"],
            "text": text,
        })
    for split, items in out.items():
        if not items:
            raise CodecError(f"{src}: no utterance in split {split}")
        write_manifest(save_folder / f"{split}.csv", items)
    return {s: len(v) for s, v in out.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = prepare_mini(args.data_folder, args.save_folder)
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    logger.info("manifests written to %s: %s", args.save_folder, counts)
