"""Write a resampled, end-padded 16-bit copy of a manifest's audio, and its manifest.

    python -m speechbrain_codec.bin.resample_corpus --manifest data/train.csv --data-root CORPUS \
        --out-folder exp/wavs_16khz --out-manifest exp/data/train.csv --sample-rate 16000 --pad-multiple 1280

The LM-loss study's "wavs_16khz" copy (lmloss.md §1.1): every clip resampled to 16 kHz, zero-padded
at the end to the next multiple of ``--pad-multiple`` samples (a multiple is left alone), written as
16-bit PCM WAV. The new manifest keeps every column, with ``wav`` = ``{data_root}/<ID>.wav``
(``{data_root}`` = ``--out-folder``) and ``duration`` the padded length. Clips already written
(same length) are kept, so an interrupted run resumes; each file is written atomically. A clip
that cannot be read, is empty or not finite stops the run with a message naming it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from ..dataio import audio_info, load_audio, save_audio, write_manifest
from ..utils import CodecError, one_line_errors


def padded_length(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (``n`` itself when it is one).

    Example
    -------
    >>> padded_length(1280, 1280), padded_length(1281, 1280), padded_length(5, 1)
    (1280, 2560, 5)
    """
    return -(-n // multiple) * multiple


def resample_corpus(manifest: str, data_root: str, out_folder: str, out_manifest: str, sample_rate: int = 16000,
                    pad_multiple: int = 1) -> int:
    """Write the copies and the manifest (module docstring); returns the number of clips."""
    from ..dataio import read_manifest

    rows = read_manifest(manifest, data_root)
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        fields = list(csv.DictReader(f).fieldnames or [])
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, row in rows.items():
        dst = out / f"{uid}.wav"
        n = None
        if dst.is_file():
            try:
                info = audio_info(dst)
                if info.samplerate == sample_rate and info.frames % pad_multiple == 0:
                    n = info.frames
            except CodecError:
                n = None
        if n is None:
            sig = load_audio(row["wav"], sample_rate, notices=False)
            if sig.numel() == 0:
                raise CodecError(f"{row['wav']}: empty audio; remove {uid} from {manifest} or replace the file")
            if not torch.isfinite(sig).all():
                raise CodecError(f"{row['wav']}: NaN or infinite samples; replace the file")
            n = padded_length(sig.numel(), pad_multiple)
            save_audio(dst, torch.nn.functional.pad(sig, (0, n - sig.numel())), sample_rate)
        written.append({**row, "wav": f"{{data_root}}/{uid}.wav", "duration": round(n / sample_rate, 6)})
    write_manifest(out_manifest, written, fields)
    return len(written)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--out-folder", required=True)
    p.add_argument("--out-manifest", required=True)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--pad-multiple", type=int, default=1)
    args = p.parse_args(argv)
    n = resample_corpus(args.manifest, args.data_root, args.out_folder, args.out_manifest, args.sample_rate,
                        args.pad_multiple)
    print(f"{args.out_manifest}: {n} clips at {args.sample_rate} Hz in {args.out_folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
