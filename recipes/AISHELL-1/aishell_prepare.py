#!/usr/bin/env python3
"""AISHELL-1 -> train/dev/test CSV manifests.

Layout read: ``<data_folder>/data_aishell/wav/{train,dev,test}/<spk>/<ID>.wav`` and
``<data_folder>/data_aishell/transcript/aishell_transcript_v0.8.txt`` (``<ID> <words separated by
spaces>`` per line). ``--data_folder`` may also be the ``data_aishell`` folder itself. The
official archive holds one ``wav/<spk>.tar.gz`` per speaker: ``--download`` extracts them, and
the script stops with that advice when it finds them unextracted.

``text`` = the transcript with the word-separating spaces removed and lower-cased (the CER
normalisation of focalcodec_s.md §1.4: "lower-case and delete all spaces", punctuation kept);
``raw_text`` = the space-separated words as published. Some clips of the official release have
no transcript: they are reported (in the log and the stamp file) and left out, as the corpus'
own recipes do. ``lang`` = ``zh``.

Usage: python recipes/AISHELL-1/aishell_prepare.py --data_folder DIR --save_folder DIR [--splits train dev test] [--download]
"""

from __future__ import annotations

import logging
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
    safe_extract,
)
from speechbrain_codec.utils import CodecError

logger = logging.getLogger("speechbrain_codec")
SPLITS = ("train", "dev", "test")
TRANSCRIPT = Path("transcript") / "aishell_transcript_v0.8.txt"

#: Stage 0 (openslr resource 33). The project has no published checksum it can cite for this
#: archive, so none is given: the download says "checksum unknown: verify by hand" and prints the
#: file's digest to compare with the MD5 listed on https://www.openslr.org/33/.
ARCHIVES = [
    Archive(
        url="https://www.openslr.org/resources/33/data_aishell.tgz",
        checksum=None,
        algorithm="md5",
        extracts_to="data_aishell/" + TRANSCRIPT.as_posix(),
        source="none (verify by hand against https://www.openslr.org/33/)",
    )
]


def corpus_root(data_folder: str | Path) -> Path:
    """The ``data_aishell`` folder: ``data_folder/data_aishell`` or ``data_folder`` itself."""
    data_folder = Path(data_folder)
    for cand in (data_folder / "data_aishell", data_folder):
        if (cand / "wav").is_dir() or (cand / "transcript").is_dir():
            return cand
    raise CodecError(
        f"{data_folder / 'data_aishell'}: missing; --data_folder must hold data_aishell/ (wav/, transcript/);"
        " download it with --download"
    )


def extract_speaker_archives(data_aishell: Path) -> None:
    """Extract every ``wav/<spk>.tar.gz`` of the official archive in place, then delete it."""
    for tgz in sorted((Path(data_aishell) / "wav").glob("*.tar.gz")):
        safe_extract(tgz, tgz.parent)
        tgz.unlink()


def read_transcripts(path: Path) -> dict[str, str]:
    """``{ID: space-separated words}``; a malformed line raises, naming file and line."""
    out: dict[str, str] = {}
    for n, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        utt, _, words = line.strip().partition(" ")
        if not words.strip():
            raise CodecError(f"{path}:{n}: expected '<ID> <words>', got {line.strip()!r}")
        out[utt] = " ".join(words.split())
    return out


def normalize_zh(words: str) -> str:
    """The CER normalisation of focalcodec_s.md §1.4: lower-case, all spaces removed.

    >>> normalize_zh("而 对 楼市 成交 抑制 作用")
    '而对楼市成交抑制作用'
    """
    return "".join(words.split()).lower()


def prepare_aishell(
    data_folder: str | Path,
    save_folder: str | Path,
    splits: list[str] | tuple[str, ...] = SPLITS,
    skip_prep: bool = False,
) -> dict[str, int]:
    """Write ``<save_folder>/<split>.csv`` for AISHELL-1; returns rows per split.

    Skipped when the CSVs exist and were made with the same options. Raises
    :class:`CodecError` naming the file for a missing transcript file or split folder, a
    malformed or non-UTF-8 transcript, unextracted speaker archives or unreadable audio; clips
    without a transcript are reported and left out.
    """
    data_folder = Path(data_folder).resolve()
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise CodecError(f"unknown AISHELL-1 split(s) {unknown}; choose from {list(SPLITS)}")
    options = {"data_folder": str(data_folder), "splits": list(splits)}
    cache: dict = {}

    def build(split: str, report: PrepareReport) -> list[dict]:
        root = corpus_root(data_folder)
        if not cache:
            cache["trans"] = read_transcripts(root / TRANSCRIPT)
        trans = cache["trans"]
        split_dir = root / "wav" / split
        if not split_dir.is_dir():
            packed = sorted((root / "wav").glob("*.tar.gz"))
            if packed:
                raise CodecError(
                    f"{split_dir}: missing, but {packed[0]} and {len(packed) - 1} more speaker archives are not"
                    " extracted; run with --download (it extracts them) or untar them in wav/"
                )
            raise CodecError(f"{split_dir}: split folder missing; the data_aishell archive is not fully extracted")
        rows = []
        for wav in sorted(split_dir.glob("*/*.wav")):
            utt = wav.stem
            if utt not in trans:
                report.skip(split, wav, f"no transcript in {root / TRANSCRIPT}")
                continue
            rows.append({
                "ID": utt,
                "duration": duration_of(wav),
                "wav": data_root_relative(wav, data_folder),
                "spk_id": wav.parent.name,
                "lang": "zh",
                "text": normalize_zh(trans[utt]),
                "raw_text": trans[utt],
            })
        return rows

    return run_prepare("aishell", save_folder, list(splits), options, build, skip_prep)


def download_aishell(data_folder: Path, splits=None) -> None:
    """Stage 0: fetch ``data_aishell.tgz``, extract it and its per-speaker archives."""
    for archive in ARCHIVES:
        download_archive(archive, data_folder, after_extract=lambda tmp: extract_speaker_archives(tmp / "data_aishell"))
    extract_speaker_archives(Path(data_folder) / "data_aishell")  # an archive extracted by hand


if __name__ == "__main__":
    sys.exit(prepare_cli(prepare_aishell, __doc__.split("\n")[0], SPLITS, SPLITS, download_aishell))
