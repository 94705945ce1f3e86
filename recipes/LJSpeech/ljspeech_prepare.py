#!/usr/bin/env python3
"""LJSpeech-1.1 -> train/val/test CSV manifests (the LM-loss study's chapter split).

Layout read: ``<data_folder>/LJSpeech-1.1/wavs/LJxxx-yyyy.wav`` and
``<data_folder>/LJSpeech-1.1/metadata.csv`` (``ID|raw text|normalised text``, pipe-separated, no
header, UTF-8, quotes not escaped). ``--data_folder`` may also be the ``LJSpeech-1.1`` folder itself.

Splits: the exact lists of lmloss-icassp2026 shipped in ``splits/{train,val,test}.txt`` (test =
chapters LJ021-LJ024, 696 clips; val = LJ025-LJ027, 521; train = the rest, 11,883); spec lmloss.md
§1.2. ``text`` = the normalised transcription (3rd column; numbers spelled out, case and
punctuation kept; the text the study aligns with MFA, spec §1.5); ``raw_text`` = the 2nd column.
Audio stays at 22.05 kHz: resampling to 16 kHz and the 1280-sample padding are recipe stages.

Usage: python recipes/LJSpeech/ljspeech_prepare.py --data_folder DIR --save_folder DIR [--splits train val test] [--download]
"""

from __future__ import annotations

import sys
from pathlib import Path

from speechbrain_codec.dataio.prepare import (
    Archive,
    PrepareReport,
    data_root_relative,
    download_archive,
    duration_of,
    prepare_cli,
    read_text_file,
    run_prepare,
)
from speechbrain_codec.utils import CodecError

SPLITS = ("train", "val", "test")
SPLITS_DIR = Path(__file__).resolve().parent / "splits"

#: Stage 0. Checksum from torchaudio 2.11 ``torchaudio/datasets/ljspeech.py`` (_RELEASE_CONFIGS).
ARCHIVES = [
    Archive(
        url="https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2",
        checksum="be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5",
        algorithm="sha256",
        extracts_to="LJSpeech-1.1/metadata.csv",
        source="torchaudio 2.11 torchaudio/datasets/ljspeech.py",
    )
]


def corpus_root(data_folder: str | Path) -> Path:
    """The ``LJSpeech-1.1`` folder: ``data_folder/LJSpeech-1.1`` or ``data_folder`` itself."""
    data_folder = Path(data_folder)
    for cand in (data_folder / "LJSpeech-1.1", data_folder):
        if (cand / "metadata.csv").is_file() or (cand / "wavs").is_dir():
            return cand
    raise CodecError(
        f"{data_folder / 'LJSpeech-1.1' / 'metadata.csv'}: missing; --data_folder must hold LJSpeech-1.1/"
        " (metadata.csv, wavs/); download it with --download"
    )


def split_lists(splits_dir: str | Path = SPLITS_DIR) -> dict[str, str]:
    """``{LJ id: split}`` from ``splits/<split>.txt`` (one relative wav path per line)."""
    out: dict[str, str] = {}
    for split in SPLITS:
        path = Path(splits_dir) / f"{split}.txt"
        for line in read_text_file(path, "split list").splitlines():
            if line.strip():
                out[Path(line.strip()).stem] = split
    return out


def read_metadata(path: Path) -> dict[str, tuple[str, str]]:
    """``{ID: (raw text, normalised text)}``; a malformed line raises, naming file and line."""
    out: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(read_text_file(path, "metadata.csv").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 3:
            raise CodecError(f"{path}:{n}: expected 3 fields ID|raw text|normalised text, got {len(fields)}")
        utt, raw, norm = (f.strip() for f in fields)
        if utt in out:
            raise CodecError(f"{path}:{n}: duplicate ID {utt}")
        out[utt] = (raw, norm)
    return out


def prepare_ljspeech(
    data_folder: str | Path,
    save_folder: str | Path,
    splits: list[str] | tuple[str, ...] = SPLITS,
    skip_prep: bool = False,
) -> dict[str, int]:
    """Write ``<save_folder>/<split>.csv`` for LJSpeech; returns rows per split.

    Skipped (returns the saved counts) when the CSVs exist and were made with the same options.
    Raises :class:`CodecError` naming the file for a missing ``metadata.csv``, a malformed or
    non-UTF-8 line, or unreadable audio; a clip without text (or a row without its clip) is
    reported and left out.
    """
    data_folder = Path(data_folder).resolve()
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CodecError(f"unknown LJSpeech split(s) {unknown}; choose from {list(SPLITS)}")
    options = {"data_folder": str(data_folder), "splits": list(splits)}
    cache: dict = {}

    def load() -> tuple[Path, dict, dict, list[Path]]:
        if not cache:
            root = corpus_root(data_folder)
            meta = read_metadata(root / "metadata.csv")
            wavs_dir = root / "wavs"
            if not wavs_dir.is_dir():
                raise CodecError(f"{wavs_dir}: missing; the LJSpeech-1.1 archive is not fully extracted")
            cache.update(root=root, meta=meta, lists=split_lists(), wavs=sorted(wavs_dir.glob("*.wav")))
        return cache["root"], cache["meta"], cache["lists"], cache["wavs"]

    def build(split: str, report: PrepareReport) -> list[dict]:
        root, meta, lists, wavs = load()
        rows = []
        present = set()
        for wav in wavs:
            utt = wav.stem
            present.add(utt)
            where = lists.get(utt)
            if where is None:
                if split == list(splits)[0]:
                    report.skip("unlisted", wav, "not in the lmloss split lists (not an LJSpeech-1.1 clip)")
                continue
            if where != split:
                continue
            if utt not in meta or not meta[utt][1]:
                report.skip(split, wav, f"no text in {root / 'metadata.csv'}")
                continue
            raw, norm = meta[utt]
            rows.append({
                "ID": utt,
                "duration": duration_of(wav),
                "wav": data_root_relative(wav, data_folder),
                "spk_id": "LJ",
                "lang": "en",
                "text": norm,
                "raw_text": raw,
            })
        for utt in sorted(set(meta) - present):
            if lists.get(utt) == split:
                report.skip(split, root / "wavs" / f"{utt}.wav", f"listed in {root / 'metadata.csv'} but the audio is missing")
        return rows

    return run_prepare("ljspeech", save_folder, list(splits), options, build, skip_prep)


def download_ljspeech(data_folder: Path, splits=None) -> None:
    """Stage 0: fetch and extract LJSpeech-1.1 into ``data_folder`` (online users only)."""
    for archive in ARCHIVES:
        download_archive(archive, data_folder)


if __name__ == "__main__":
    sys.exit(prepare_cli(prepare_ljspeech, __doc__.split("\n")[0], SPLITS, SPLITS, download_ljspeech))
