"""Check that two folders of ``.sbc`` files hold the same tokens (e.g. a causal codec's offline
and streaming encodings), and how far their decoded audio differs.

    python -m speechbrain_codec.bin.compare_bitstreams OFFLINE STREAMING \
        [--decoded OFFLINE_WAVS STREAMING_WAVS] [--out check.json]

Every ``<ID>.sbc`` of the first folder must be in the second with the same streams and the same
tokens frame for frame; the first difference stops it with one line naming the file, the stream
and the frame (exit status 1). ``--decoded`` adds the largest absolute sample difference of each
pair of ``<ID>.wav`` files. ``--out`` writes the facts as JSON (atomically).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..utils import CodecError, atomic_write_json, one_line_errors


def compare(first: str | Path, second: str | Path, decoded: tuple[str, str] | None = None) -> dict:
    """Facts of the comparison; raises :class:`CodecError` at the first token difference."""
    from ..bitstream import read_sbc
    from ..dataio import load_audio

    first, second = Path(first), Path(second)
    files = sorted(first.glob("*.sbc"))
    if not files:
        raise CodecError(f"{first}: no .sbc files (run the encode stage first)")
    frames = 0
    for a in files:
        b = second / a.name
        if not b.is_file():
            raise CodecError(f"{b}: missing ({a} has no counterpart)")
        ta, tb = read_sbc(a).token_dict(), read_sbc(b).token_dict()
        if ta.keys() != tb.keys():
            raise CodecError(f"{a.name}: streams {sorted(ta)} vs {sorted(tb)}")
        for name in ta:
            x, y = np.asarray(ta[name]), np.asarray(tb[name])
            if x.shape != y.shape:
                raise CodecError(f"{a.name}: stream {name}: {x.shape[0]} frames vs {y.shape[0]}")
            diff = np.nonzero((x != y).reshape(len(x), -1).any(axis=1))[0]
            if diff.size:
                raise CodecError(f"{a.name}: stream {name}: tokens differ from frame {int(diff[0])} "
                                 f"({diff.size} of {len(x)} frames)")
            frames += len(x)
    facts: dict = {"files": len(files), "frames": frames, "tokens_equal": True}
    if decoded:
        worst = {}
        for a in files:
            wa, wb = (Path(d) / f"{a.stem}.wav" for d in decoded)
            xa, xb = load_audio(wa, None), load_audio(wb, None)
            if xa.shape != xb.shape:
                raise CodecError(f"{wb}: {xb.numel()} samples, {wa} has {xa.numel()}")
            worst[a.stem] = float((xa - xb).abs().max()) if xa.numel() else 0.0
        facts["decoded_max_abs_diff"] = max(worst.values())
        facts["decoded_max_abs_diff_per_file"] = worst
    return facts


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--decoded", nargs=2, metavar=("FIRST_WAVS", "SECOND_WAVS"))
    p.add_argument("--out")
    args = p.parse_args(argv)
    facts = compare(args.first, args.second, tuple(args.decoded) if args.decoded else None)
    if args.out:
        atomic_write_json(args.out, facts)
    extra = f"; decoded audio within {facts['decoded_max_abs_diff']:.2e}" if "decoded_max_abs_diff" in facts else ""
    print(f"{args.first} = {args.second}: {facts['frames']} frames in {facts['files']} files, equal tokens{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
