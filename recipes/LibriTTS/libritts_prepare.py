#!/usr/bin/env python3
"""LibriTTS -> one CSV manifest per split (train-clean-100, dev-clean, test-clean, ...).

Layout read: ``<data_folder>/<split>/<spk>/<chapter>/<spk>_<chapter>_<para>_<sent>.wav`` (24 kHz)
with ``<same stem>.normalized.txt`` and ``<same stem>.original.txt`` beside each clip.
``--data_folder`` may also be the parent of a ``LibriTTS/`` folder (what the archives extract to).

``text`` = the ``.normalized.txt`` transcript (numbers and abbreviations expanded, case and
punctuation kept; the file CosyVoice-style LibriTTS recipes read, learnable_speech.md §1.1; SIREN
uses no text, siren.md §1.2); ``raw_text`` = ``.original.txt``. Splits used by the specs: SIREN
trains on train-clean-100 (optionally + train-clean-360 / train-other-500) and holds out every
20th item for validation itself (siren.md §1.1); learnable_speech validates and tests on LibriTTS
dev/test excerpts. Audio stays at 24 kHz.

Usage: python recipes/LibriTTS/libritts_prepare.py --data_folder DIR --save_folder DIR [--splits ...] [--download]
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

#: Stage 0 (openslr resource 60). SHA-256 from torchaudio 2.11 ``torchaudio/datasets/libritts.py``
#: (_CHECKSUMS); openslr itself publishes MD5s on https://www.openslr.org/60/.
_SHA256 = {
    "dev-clean": "da0864e1bd26debed35da8a869dd5c04dfc27682921936de7cff9c8a254dbe1a",
    "dev-other": "d413eda26f3a152ac7c9cf3658ef85504dfb1b625296e5fa83727f5186cca79c",
    "test-clean": "234ea5b25859102a87024a4b9b86641f5b5aaaf1197335c95090cde04fe9a4f5",
    "test-other": "33a5342094f3bba7ccc2e0500b9e72d558f72eb99328ac8debe1d9080402f10d",
    "train-clean-100": "c5608bf1ef74bb621935382b8399c5cdd51cd3ee47cec51f00f885a64c6c7f6b",
    "train-clean-360": "ce7cff44dcac46009d18379f37ef36551123a1dc4e5c8e4eb73ae57260de4886",
    "train-other-500": "e35f7e34deeb2e2bdfe4403d88c8fdd5fbf64865cae41f027a185a6965f0a5df",
}
ARCHIVES = {
    split: Archive(
        url=f"https://www.openslr.org/resources/60/{split}.tar.gz",
        checksum=digest,
        algorithm="sha256",
        extracts_to=f"LibriTTS/{split}",
        source="torchaudio 2.11 torchaudio/datasets/libritts.py",
    )
    for split, digest in _SHA256.items()
}


def corpus_root(data_folder: str | Path, splits) -> Path:
    """The folder holding the split folders: ``data_folder`` or ``data_folder/LibriTTS``."""
    return shared_corpus_root(data_folder, "LibriTTS", (*splits, *SPLITS))


def prepare_libritts(
    data_folder: str | Path,
    save_folder: str | Path,
    splits: list[str] | tuple[str, ...] = DEFAULT_SPLITS,
    skip_prep: bool = False,
) -> dict[str, int]:
    """Write ``<save_folder>/<split>.csv`` for each LibriTTS split; returns rows per split.

    Skipped when the CSVs exist and were made with the same options. Raises
    :class:`CodecError` naming the file for a missing split folder, a non-UTF-8 transcript or
    unreadable audio; a clip without ``.normalized.txt`` is reported and left out (a missing
    ``.original.txt`` is reported and leaves ``raw_text`` empty).
    """
    data_folder = Path(data_folder).resolve()
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CodecError(f"unknown LibriTTS split(s) {unknown}; choose from {list(SPLITS)}")
    options = {"data_folder": str(data_folder), "splits": list(splits)}

    def build(split: str, report: PrepareReport) -> list[dict]:
        split_dir = corpus_root(data_folder, splits) / split
        if not split_dir.is_dir():
            raise CodecError(f"{split_dir}: split folder missing; download it (--download) or leave it out of --splits")
        rows = []
        for wav in sorted(split_dir.glob("*/*/*.wav")):
            norm_path = wav.with_suffix(".normalized.txt")
            if not norm_path.is_file():
                report.skip(split, wav, f"no transcript {norm_path.name}")
                continue
            text = " ".join(read_text_file(norm_path).split())
            if not text:
                report.skip(split, wav, f"empty transcript {norm_path}")
                continue
            orig_path = wav.with_suffix(".original.txt")
            if orig_path.is_file():
                raw = " ".join(read_text_file(orig_path).split())
            else:
                report.skip("missing_original", orig_path, "missing; raw_text left empty (the clip is kept)")
                raw = ""
            rows.append({
                "ID": wav.stem,
                "duration": duration_of(wav),
                "wav": data_root_relative(wav, data_folder),
                "spk_id": wav.parent.parent.name,
                "lang": "en",
                "text": text,
                "raw_text": raw,
            })
        return sorted(rows, key=lambda r: r["ID"])

    return run_prepare("libritts", save_folder, list(splits), options, build, skip_prep)


def download_libritts(data_folder: Path, splits) -> None:
    """Stage 0: fetch and extract the requested splits into ``data_folder/LibriTTS``."""
    for split in splits:
        download_archive(ARCHIVES[split], data_folder)


if __name__ == "__main__":
    sys.exit(prepare_cli(prepare_libritts, __doc__.split("\n")[0], SPLITS, DEFAULT_SPLITS, download_libritts))
