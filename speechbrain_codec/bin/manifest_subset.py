"""Write the rows of a manifest in a language and/or with a transcript (order and columns kept).

    python -m speechbrain_codec.bin.manifest_subset test.csv english.csv --lang en --with_text
    python -m speechbrain_codec.bin.manifest_subset test.csv test2000.csv --first 2000   # per language

``--first N`` keeps the first N rows of each language (FocalCodec-S tests on the first 2000 rows of
each language's test list, focalcodec_s.md §1.1). Prints the number of rows written. Used by the
shared listening stage (the semantic test needs transcripts an English listener can read).
"""

from __future__ import annotations

import argparse
import csv
import sys

from ..dataio import write_manifest
from ..utils import CodecError, one_line_errors


def subset(src: str, dst: str, langs: list[str] | None = None, with_text: bool = False,
           first: int | None = None) -> int:
    """Rows of ``src`` whose ``lang`` is in ``langs`` (any when None) and, with ``with_text``,
    whose ``text`` is not empty, at most the ``first`` of each language (in file order), written
    to ``dst`` with ``src``'s columns; returns their number."""
    try:
        with open(src, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows, fields = list(reader), list(reader.fieldnames or [])
    except FileNotFoundError:
        raise CodecError(f"{src}: manifest missing; it is written by the data preparation stage") from None
    if first is not None and first < 1:
        raise CodecError(f"--first must be at least 1, not {first}")
    for need, asked in (("lang", langs), ("text", with_text), ("lang", first is not None)):
        if asked and need not in fields:
            raise CodecError(f"{src}: no {need} column (columns: {', '.join(fields)})")
    kept = [r for r in rows if (not langs or r["lang"] in langs) and (not with_text or r["text"].strip())]
    if first is not None:
        per_lang: dict[str, list] = {}
        for r in kept:
            per_lang.setdefault(r["lang"], []).append(r)
        firsts = {id(r) for group in per_lang.values() for r in group[:first]}
        kept = [r for r in kept if id(r) in firsts]
    write_manifest(dst, kept, fields)
    return len(kept)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--lang", action="append", help="keep this language (repeatable)")
    p.add_argument("--with_text", action="store_true", help="keep rows with a transcript only")
    p.add_argument("--first", type=int, help="keep the first N rows of each language")
    args = p.parse_args(argv)
    print(subset(args.manifest, args.out, args.lang, args.with_text, args.first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
