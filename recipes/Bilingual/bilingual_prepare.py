#!/usr/bin/env python3
"""Mix the prepared manifests of two (or more) languages into one CSV per split, by hours, seeded.

Inputs are folders written by the dataset scripts (``<split>.csv`` + ``<dataset>_prepare.json``,
whose recorded data folder tells where each corpus lives), e.g. AISHELL-1 (zh) and LibriSpeech
(en) for the FocalCodec-S bilingual fine-tuning (focalcodec_s.md §1.1: Exp G ~25 h + ~25 h, Exp
H-K ~50 h zh + ~50 h en from AISHELL-1 and LibriSpeech train-clean-100; the authors published no
selection rule, so this one is ours: shuffle each language's rows with the seed and keep them in
that order while the running total stays within the hours asked).

Each output row keeps its ``lang``; ``wav`` is rewritten relative to one common ``{data_root}``
(``--data_root``, default the deepest folder holding every corpus), recorded in the stamp.
A split without ``--hours`` takes every row of its inputs.

Usage:
  python recipes/Bilingual/bilingual_prepare.py --save_folder DIR \\
      --source zh=exp/AISHELL-1/data --source en=exp/LibriSpeech/data \\
      [--split train=zh:train,en:train-clean-100 ...] [--hours train:zh=50,en=50 ...] [--seed 1234]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import sys
from pathlib import Path

from speechbrain_codec.dataio import read_manifest
from speechbrain_codec.dataio.prepare import PrepareReport, run_prepare
from speechbrain_codec.utils import CodecError

logger = logging.getLogger("speechbrain_codec")

DEFAULT_SPLITS = {
    "train": {"zh": "train", "en": "train-clean-100"},
    "valid": {"zh": "dev", "en": "dev-clean"},
    "test": {"zh": "test", "en": "test-clean"},
}
DEFAULT_HOURS = {"train": {"zh": 50.0, "en": 50.0}}  # Exp H-K of focalcodec_s.md §1.1


def source_data_folder(folder: Path) -> Path:
    """The corpus folder recorded in the one ``*_prepare.json`` stamp of a prepared folder."""
    stamps = sorted(Path(folder).glob("*_prepare.json"))
    if len(stamps) != 1:
        raise CodecError(
            f"{folder}: expected one <dataset>_prepare.json (written by the dataset's prepare script), found"
            f" {[s.name for s in stamps]}; run that script first"
        )
    try:
        return Path(json.loads(stamps[0].read_text(encoding="utf-8"))["options"]["data_folder"])
    except (ValueError, KeyError) as err:
        raise CodecError(f"{stamps[0]}: unreadable stamp ({err}); run the dataset's prepare script again") from None


def select_by_hours(rows: list[dict], hours: float | None, seed: str) -> list[dict]:
    """Rows shuffled with ``seed`` and kept while the total stays within ``hours`` (all if None).

    >>> rows = [{"ID": str(i), "duration": 1800.0} for i in range(5)]
    >>> len(select_by_hours(rows, 1.0, "1")), len(select_by_hours(rows, None, "1"))
    (2, 5)
    """
    if hours is None:
        return list(rows)
    order = list(rows)
    random.Random(seed).shuffle(order)
    budget, total, out = hours * 3600.0, 0.0, []
    for row in order:
        if total + float(row["duration"]) <= budget:
            out.append(row)
            total += float(row["duration"])
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_bilingual(
    save_folder: str | Path,
    sources: dict[str, str | Path],
    splits: dict[str, dict[str, str]] | None = None,
    hours: dict[str, dict[str, float]] | None = None,
    seed: int = 1234,
    data_root: str | Path | None = None,
    skip_prep: bool = False,
) -> dict[str, int]:
    """Write ``<save_folder>/<split>.csv`` mixing the languages; returns rows per split.

    Parameters
    ----------
    save_folder : path
        Output folder (CSVs + ``bilingual_prepare.json``, which records ``data_root``).
    sources : dict
        ``{lang: prepared folder}``.
    splits : dict
        ``{output split: {lang: input split}}``; default train/valid/test from AISHELL-1 and
        LibriSpeech split names.
    hours : dict
        ``{output split: {lang: hours}}``; a split or language not named keeps every row.
    seed : int
        Shuffling seed (the same seed and inputs give the same rows).
    data_root : path, optional
        The ``{data_root}`` of the mixed CSVs; default the common parent of the corpora.
    """
    splits = splits if splits is not None else DEFAULT_SPLITS
    hours = hours if hours is not None else DEFAULT_HOURS
    roots = {lang: source_data_folder(Path(folder)) for lang, folder in sources.items()}
    common = Path(data_root).resolve() if data_root else Path(os.path.commonpath([str(r) for r in roots.values()]))
    prefix = {}
    for lang, root in roots.items():
        rel = Path(os.path.relpath(root, common))
        if rel.parts and rel.parts[0] == "..":
            raise CodecError(f"{root}: the {lang} corpus is not inside --data_root {common}")
        prefix[lang] = "{data_root}" + ("" if rel == Path(".") else "/" + rel.as_posix())
    inputs = {}
    for split, per_lang in splits.items():
        for lang, in_split in per_lang.items():
            if lang not in sources:
                raise CodecError(f"split {split} names language {lang}, which has no --source")
            path = Path(sources[lang]) / f"{in_split}.csv"
            if not path.is_file():
                raise CodecError(f"{path}: missing; prepare split {in_split} with the {lang} dataset's prepare script")
            inputs[(split, lang)] = path
    options = {
        "sources": {lang: str(Path(f).resolve()) for lang, f in sources.items()},
        "inputs": {f"{s}:{lang}": _sha256(p) for (s, lang), p in inputs.items()},
        "splits": splits,
        "hours": hours,
        "seed": seed,
        "data_root": str(common),
    }

    def build(split: str, report: PrepareReport) -> list[dict]:
        out = []
        for lang in splits[split]:
            rows = list(read_manifest(inputs[(split, lang)]).values())
            for row in rows:
                if row.get("lang") and row["lang"] != lang:
                    raise CodecError(f"{inputs[(split, lang)]}: row {row['ID']} has lang {row['lang']}, given as {lang}")
                row["lang"] = lang
                row["wav"] = row["wav"].replace("{data_root}", prefix[lang], 1)
            want = hours.get(split, {}).get(lang)
            chosen = select_by_hours(rows, want, f"{seed}-{split}-{lang}")
            got = sum(float(r["duration"]) for r in chosen) / 3600
            if want is not None and got < 0.99 * want:
                logger.warning("%s %s: asked for %.2f h, the input holds only %.2f h", split, lang, want, got)
            logger.info("%s: %s %d utterances, %.3f h", split, lang, len(chosen), got)
            out.extend(sorted(chosen, key=lambda r: r["ID"]))
        return out

    counts = run_prepare("bilingual", save_folder, list(splits), options, build, skip_prep)
    if counts:
        logger.info("bilingual manifests use data_root=%s", common)
    return counts


def _parse_map(items: list[str], what: str, cast=str) -> dict[str, dict]:
    """``["train=zh:train,en:train-clean-100"]`` -> ``{"train": {"zh": "train", "en": ...}}``
    (``--hours`` uses ``train:zh=50,en=50``)."""
    out: dict[str, dict] = {}
    for item in items:
        sep_out, sep_in = ("=", ":") if what == "split" else (":", "=")
        name, _, rest = item.partition(sep_out)
        try:
            out[name] = {k: cast(v) for k, v in (p.split(sep_in, 1) for p in rest.split(","))}
        except ValueError:
            raise CodecError(f"--{what} {item!r}: expected e.g. "
                             + ("train=zh:train,en:train-clean-100" if what == "split" else "train:zh=50,en=50")) from None
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--source", action="append", required=True, help="LANG=FOLDER of a prepared dataset (repeat)")
    parser.add_argument("--split", action="append", default=None,
                        help="OUT=LANG:IN,LANG:IN (repeat; default train/valid/test from AISHELL-1 + LibriSpeech)")
    parser.add_argument("--hours", action="append", default=None, help="OUT:LANG=H,LANG=H (repeat; default train:zh=50,en=50)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--data_root", default=None, help="common {data_root} of the mixed CSVs")
    parser.add_argument("--skip_prep", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        sources = dict(s.split("=", 1) for s in args.source)
        counts = prepare_bilingual(
            args.save_folder, sources,
            splits=_parse_map(args.split, "split") if args.split else None,
            hours=_parse_map(args.hours, "hours", float) if args.hours else None,
            seed=args.seed, data_root=args.data_root, skip_prep=args.skip_prep,
        )
    except (CodecError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if counts:
        logger.info("manifests in %s: %s", args.save_folder, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
