#!/usr/bin/env python3
"""LibriSpeech -> one CSV manifest per split (train-clean-100, dev-clean, test-clean, ...).

Layout read: ``<data_folder>/<split>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` with one
``<spk>-<chapter>.trans.txt`` per chapter (``<ID> <UPPER CASE TEXT>`` per line). ``--data_folder``
may also be the parent of a ``LibriSpeech/`` folder (what the archives extract to).

``text`` = the transcript lower-cased (LibriSpeech has no punctuation; the only normalisation any
spec asks for before scoring: focalcodec_s.md §1.4 lower-cases, lmloss.md §1.7 applies Whisper's
English normaliser at scoring time); ``raw_text`` = the transcript line as published. ``spk_id`` =
the speaker folder; rows sorted by ID. Splits used by the specs: FocalCodec-S trains on
train-clean-100 and tests on test-clean (focalcodec_s.md §1.1); LM-loss TTR pretraining uses the
three training sets and dev-clean (lmloss.md §1.6); DP-SLM assumes the 960 h (dpslm.md).

Usage: python recipes/LibriSpeech/librispeech_prepare.py --data_folder DIR --save_folder DIR [--splits ...] [--download]
"""

from __future__ import annotations

import sys
from pathlib import Path

from speechbrain_codec.dataio.prepare import corpus_root as shared_corpus_root
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

SPLITS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean", "test-other")
DEFAULT_SPLITS = ("train-clean-100", "dev-clean", "test-clean")

#: Stage 0 (openslr resource 12). SHA-256 from torchaudio 2.11 ``torchaudio/datasets/librispeech.py``
#: (_CHECKSUMS); openslr itself publishes MD5s on https://www.openslr.org/12/.
_SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
ARCHIVES = {
    split: Archive(
        url=f"https://www.openslr.org/resources/12/{split}.tar.gz",
        checksum=digest,
        algorithm="sha256",
        extracts_to=f"LibriSpeech/{split}",
        source="torchaudio 2.11 torchaudio/datasets/librispeech.py",
    )
    for split, digest in _SHA256.items()
}


def corpus_root(data_folder: str | Path, splits) -> Path:
    """The folder holding the split folders: ``data_folder`` or ``data_folder/LibriSpeech``."""
    return shared_corpus_root(data_folder, "LibriSpeech", (*splits, *SPLITS))


def read_transcripts(path: Path) -> dict[str, str]:
    """``{ID: text}`` of one ``.trans.txt``; a malformed line raises, naming file and line."""
    out: dict[str, str] = {}
    for n, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        if not text.strip():
            raise CodecError(f"{path}:{n}: expected '<ID> <text>', got {line.strip()!r}")
        out[utt] = text.strip()
    return out


def prepare_librispeech(
    data_folder: str | Path,
    save_folder: str | Path,
    splits: list[str] | tuple[str, ...] = DEFAULT_SPLITS,
    skip_prep: bool = False,
) -> dict[str, int]:
    """Write ``<save_folder>/<split>.csv`` for each LibriSpeech split; returns rows per split.

    Skipped when the CSVs exist and were made with the same options. Raises
    :class:`CodecError` naming the file for a missing split folder or chapter transcript, a
    malformed or non-UTF-8 transcript, or unreadable audio; a clip without a transcript line
    (or a line without its clip) is reported and left out.
    """
    data_folder = Path(data_folder).resolve()
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CodecError(f"unknown LibriSpeech split(s) {unknown}; choose from {list(SPLITS)}")
    options = {"data_folder": str(data_folder), "splits": list(splits)}

    def build(split: str, report: PrepareReport) -> list[dict]:
        split_dir = corpus_root(data_folder, splits) / split
        if not split_dir.is_dir():
            raise CodecError(f"{split_dir}: split folder missing; download it (--download) or leave it out of --splits")
        rows = []
        for chapter in sorted(p for p in split_dir.glob("*/*") if p.is_dir()):
            spk, chap = chapter.parent.name, chapter.name
            trans = read_transcripts(chapter / f"{spk}-{chap}.trans.txt")
            flacs = {p.stem: p for p in chapter.glob("*.flac")}
            for utt, flac in sorted(flacs.items()):
                if utt not in trans:
                    report.skip(split, flac, f"no line in {chapter / f'{spk}-{chap}.trans.txt'}")
                    continue
                rows.append({
                    "ID": utt,
                    "duration": duration_of(flac),
                    "wav": data_root_relative(flac, data_folder),
                    "spk_id": spk,
                    "lang": "en",
                    "text": trans[utt].lower(),
                    "raw_text": trans[utt],
                })
            for utt in sorted(set(trans) - set(flacs)):
                report.skip(split, chapter / f"{utt}.flac", "in the transcript but the audio is missing")
        return sorted(rows, key=lambda r: r["ID"])

    return run_prepare("librispeech", save_folder, list(splits), options, build, skip_prep)


def download_librispeech(data_folder: Path, splits) -> None:
    """Stage 0: fetch and extract the requested splits into ``data_folder/LibriSpeech``."""
    for split in splits:
        download_archive(ARCHIVES[split], data_folder)


if __name__ == "__main__":
    sys.exit(prepare_cli(prepare_librispeech, __doc__.split("\n")[0], SPLITS, DEFAULT_SPLITS, download_librispeech))
