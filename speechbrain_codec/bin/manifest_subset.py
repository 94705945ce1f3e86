"""Write the rows of a manifest in a language and/or with a transcript (order and columns kept).

    python -m speechbrain_codec.bin.manifest_subset test.csv english.csv --lang en --with_text

Prints the number of rows written. Used by the shared listening stage (the semantic test needs
transcripts an English listener can read).
"""

from __future__ import annotations

import argparse
import csv
import sys

from ..dataio import write_manifest
from ..utils import CodecError


def subset(src: str, dst: str, langs: list[str] | None = None, with_text: bool = False) -> int:
    """Rows of ``src`` whose ``lang`` is in ``langs`` (any when None) and, with ``with_text``,
    whose ``text`` is not empty, written to ``dst`` with ``src``'s columns; returns their number."""
    try:
        with open(src, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows, fields = list(reader), list(reader.fieldnames or [])
    except FileNotFoundError:
        raise CodecError(f"{src}: manifest missing; it is written by the data preparation stage") from None
    for need, asked in (("lang", langs), ("text", with_text)):
        if asked and need not in fields:
            raise CodecError(f"{src}: no {need} column (columns: {', '.join(fields)})")
    kept = [r for r in rows if (not langs or r["lang"] in langs) and (not with_text or r["text"].strip())]
    write_manifest(dst, kept, fields)
    return len(kept)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--lang", action="append", help="keep this language (repeatable)")
    p.add_argument("--with_text", action="store_true", help="keep rows with a transcript only")
    args = p.parse_args(argv)
    try:
        print(subset(args.manifest, args.out, args.lang, args.with_text))
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
