#!/usr/bin/env python3
"""TODO_Dataset -> train / valid / test CSV manifests (a generic manifest or a Kaldi directory).

Template of a dataset's preparation script: ``tools/new_recipe.py`` copies it to
``recipes/<Dataset>/<dataset>_prepare.py`` and fills the settings block below (or copy it by
hand and fill them). One such script per dataset, shared by every system recipe of it.

Input, ``--data_folder`` (the ``{data_root}`` of the manifests written):

* ``SOURCE = "manifest"``: a table ``<data_folder>/<MANIFEST>`` (``.tsv``: tab-separated,
  otherwise comma-separated; UTF-8), one utterance a row. Columns (first name found wins):
  ID ``ID|utt_id|id|utt``; audio ``wav|path|audio|file`` (relative to the table's folder, absolute,
  or ``{data_root}/...``); optional speaker ``spk_id|speaker|spk``, transcript
  ``text|transcript|sentence``, language ``lang|language``, split ``split|subset``, duration
  (read from the audio header when absent).
* ``SOURCE = "kaldi"``: a Kaldi data directory (``wav.scp``, optional ``segments``, ``text``,
  ``utt2spk``; see :mod:`speechbrain_codec.dataio.kaldi`), or a folder of them named after their
  splits (``train``, ``dev``/``valid``/``val``, ``test``/``eval``). Piped ``wav.scp`` entries and
  segments are written once as WAV files under ``<save_folder>/audio/``.

Splits: the table's ``split`` column or the Kaldi sub-directories when present, else a
deterministic split by utterance ID (SHA-1 of the ID: ``HELD_OUT`` of the utterances each to
valid and test, at least one each). ``text`` is the transcript normalised with the language's
text normaliser (:mod:`speechbrain_codec.textnorm`; the name from ``hparams/language.yaml``'s
``text_normaliser``, else ``NORMALISER``, else the language's default), ``raw_text`` the
transcript as given, ``lang`` the language code (Whisper's code where Whisper knows the
language: the Whisper losses prompt with it). The sample rates found are logged: the codec
resamples other rates on loading.

Usage: python <dataset>_prepare.py --data_folder DIR --save_folder DIR [--hparams hparams/language.yaml]
       [--split_names train,valid,test] [--max_per_split N]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import sys
from collections import Counter
from pathlib import Path

import yaml

from speechbrain_codec.dataio import audio_info
from speechbrain_codec.dataio.kaldi import is_kaldi_dir, materialise, read_kaldi_dir
from speechbrain_codec.dataio.prepare import PrepareReport, data_root_relative, run_prepare
from speechbrain_codec.textnorm import get_normaliser, whisper_language
from speechbrain_codec.utils import CodecError

logger = logging.getLogger("speechbrain_codec")

# ---------------------------------------------------------------- settings (tools/new_recipe.py fills these)
DATASET = "TODO_Dataset"       # the dataset's name (stamp file, messages)
LANG = "TODO_lang"             # the language code of utterances without a lang column
SOURCE = "manifest"            # manifest | kaldi
MANIFEST = "manifest.tsv"      # SOURCE manifest: the table, relative to --data_folder
NORMALISER = None              # a textnorm name (latin, cjk, none, module:function); None: the language's
SPLITS = ("train", "valid", "test")  # the manifests written (--split_names renames them for a recipe)
HELD_OUT = 0.05                # share of utterances for valid and for test when the input has no split
# ----------------------------------------------------------------

COLUMNS = {
    "ID": ("ID", "utt_id", "id", "utt"),
    "wav": ("wav", "path", "audio", "file"),
    "spk_id": ("spk_id", "speaker", "spk"),
    "text": ("text", "transcript", "sentence"),
    "lang": ("lang", "language"),
    "split": ("split", "subset"),
    "duration": ("duration",),
}
#: split names of the input -> the role they play (train / valid / test)
ROLES = {"train": "train", "dev": "valid", "valid": "valid", "val": "valid", "test": "test", "eval": "test"}


def lang_code(lang: str) -> str:
    """Whisper's code where Whisper knows the language (``pol`` -> ``pl``), else ``lang``."""
    try:
        return whisper_language(lang)
    except CodecError:
        return lang


def assign_split(utt_id: str, held_out: float = HELD_OUT) -> str:
    """``valid`` / ``test`` for ``held_out`` of the IDs each (SHA-1 of the ID), else ``train``.

    >>> assign_split("BAC009S0150W0121") in ("train", "valid", "test")
    True
    """
    u = int(hashlib.sha1(utt_id.encode("utf-8")).hexdigest()[:12], 16) / float(16**12)
    return "test" if u < held_out else "valid" if u < 2 * held_out else "train"


def _column(fields: list[str], role: str) -> str | None:
    for name in COLUMNS[role]:
        if name in fields:
            return name
    return None


def read_table(path: Path) -> list[dict]:
    """Rows of a manifest table as ``{ID, wav (absolute or {data_root}), spk_id, text, lang, split,
    duration}``; a missing column, a non-UTF-8 file or an empty one raises, naming the file."""
    if not path.is_file():
        raise CodecError(f"{path}: missing; --data_folder must hold {MANIFEST} (the corpus table)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            delimiter = "\t" if path.suffix == ".tsv" else ","
            reader = csv.DictReader(f, delimiter=delimiter)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise CodecError(f"{path}: not UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8") from None
    cols = {role: _column(fields, role) for role in COLUMNS}
    for role in ("ID", "wav"):
        if cols[role] is None:
            raise CodecError(f"{path}: no {role} column (one of {', '.join(COLUMNS[role])}); it has {fields}")
    if not rows:
        raise CodecError(f"{path}: no utterance (header only)")
    out = []
    for n, row in enumerate(rows, 2):
        if None in row:
            raise CodecError(f"{path}: line {n} has more fields than the header; quote the text or use a .tsv")
        get = lambda role: (row.get(cols[role]) or "").strip() if cols[role] else ""  # noqa: E731
        wav = get("wav")
        if not get("ID") or not wav:
            raise CodecError(f"{path}: line {n} has an empty ID or audio path")
        if not wav.startswith("{data_root}") and not Path(wav).is_absolute():
            wav = str(path.parent / wav)
        out.append({"ID": get("ID"), "wav": wav, "spk_id": get("spk_id"), "text": get("text"),
                    "lang": get("lang"), "split": get("split"), "duration": get("duration"), "line": n})
    return out


def _kaldi_rows(folder: Path, audio_dir: Path, split: str) -> list[dict]:
    rows = []
    for u in read_kaldi_dir(folder):
        wav = materialise(u, audio_dir / split)
        rows.append({"ID": u.utt_id, "wav": str(wav), "spk_id": u.speaker, "text": u.text or "", "lang": "",
                     "split": split, "duration": "", "line": 0})
    return rows


def read_corpus(data_folder: Path, save_folder: Path, source: str) -> list[dict]:
    """Every utterance of the corpus (rows as :func:`read_table`'s, ``split`` possibly empty)."""
    if source == "manifest":
        return read_table(data_folder / MANIFEST)
    if source != "kaldi":
        raise CodecError(f"SOURCE must be manifest or kaldi, not {source!r}")
    if is_kaldi_dir(data_folder):
        return _kaldi_rows(data_folder, save_folder / "audio", "")
    subdirs = [d for d in sorted(data_folder.iterdir()) if d.is_dir() and d.name in ROLES and is_kaldi_dir(d)] \
        if data_folder.is_dir() else []
    if not subdirs:
        raise CodecError(f"{data_folder}: neither a Kaldi data directory (wav.scp) nor a folder of them named "
                         f"{'/'.join(ROLES)}; point --data_folder at one")
    return [r for d in subdirs for r in _kaldi_rows(d, save_folder / "audio", d.name)]


def prepare(data_folder, save_folder, hparams=None, max_per_split: int = 0, skip_prep: bool = False,
            split_names: tuple[str, str, str] = SPLITS) -> dict[str, int]:
    """Write ``<save_folder>/<name>.csv`` for the train / valid / test ``split_names``; returns
    rows per split. ``max_per_split`` keeps the first N utterances (by ID) of each."""
    if len(split_names) != 3 or len(set(split_names)) != 3:
        raise CodecError(f"split names must be three different names (train, valid, test), got {list(split_names)}")
    data_folder, save_folder = Path(data_folder).resolve(), Path(save_folder).resolve()
    settings = {"lang": LANG, "text_normaliser": NORMALISER}
    if hparams:
        try:
            loaded = yaml.safe_load(Path(hparams).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise CodecError(f"{hparams}: cannot be read as YAML ({err})") from None
        settings.update({k: loaded[k] for k in settings if loaded.get(k) is not None})
    lang = str(settings["lang"])
    get_normaliser(settings["text_normaliser"], lang)  # an unknown name stops here, before any work
    src = data_folder / MANIFEST if SOURCE == "manifest" else data_folder
    stamp_inputs = sorted(src.rglob("*")) if src.is_dir() else [src]
    digest = hashlib.sha256()
    for p in stamp_inputs:  # the corpus tables (not the audio) are part of the options
        if p.is_file() and (p.suffix in (".tsv", ".csv") or p.name in ("wav.scp", "segments", "text", "utt2spk")):
            digest.update(p.name.encode() + p.read_bytes())
    options = {"data_folder": str(data_folder), "source": SOURCE, "manifest": MANIFEST, "lang": lang,
               "text_normaliser": settings["text_normaliser"], "splits": list(split_names), "held_out": HELD_OUT,
               "max_per_split": max_per_split, "tables_sha256": digest.hexdigest()}
    cache: dict = {}

    role_of = dict(zip(split_names, ("train", "valid", "test")))

    def build(split: str, report: PrepareReport) -> list[dict]:
        if not cache:
            rates: Counter = Counter()
            by_role: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
            for r in read_corpus(data_folder, save_folder, SOURCE):
                given = r["split"]
                if given and given not in ROLES:
                    raise CodecError(f"{src}: utterance {r['ID']} has split {given!r}; use one of {', '.join(ROLES)}")
                role = ROLES[given] if given else assign_split(r["ID"])
                wav = Path(r["wav"].replace("{data_root}", str(data_folder)))
                try:
                    info = audio_info(wav)
                except CodecError as err:
                    report.skip(role, wav, str(err).split(": ", 1)[-1])
                    continue
                rates[info.samplerate] += 1
                raw = r["text"]
                row_lang = lang_code(r["lang"] or lang)
                by_role[role].append({
                    "ID": r["ID"],
                    "duration": round(info.frames / info.samplerate, 3),
                    "wav": data_root_relative(wav, data_folder) if wav.is_relative_to(data_folder) else str(wav),
                    "spk_id": r["spk_id"] or r["ID"],
                    "lang": row_lang,
                    "text": get_normaliser(settings["text_normaliser"], row_lang)(raw),
                    "raw_text": raw,
                })
            for role in ("valid", "test"):  # at least one held-out utterance each
                if not by_role[role] and len(by_role["train"]) > 2:
                    by_role["train"].sort(key=lambda r: hashlib.sha1(r["ID"].encode()).hexdigest())
                    by_role[role].append(by_role["train"].pop(0))
            for role, rows in by_role.items():
                rows.sort(key=lambda r: r["ID"])
                if max_per_split:
                    del rows[max_per_split:]
            logger.info("%s: sample rates %s (utterances per rate)", DATASET, dict(sorted(rates.items())))
            cache.update(by_role)
        return cache[role_of[split]]

    return run_prepare(DATASET.lower(), save_folder, list(split_names), options, build, skip_prep)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_folder", required=True, help="the corpus ({data_root} of the manifests)")
    parser.add_argument("--save_folder", required=True, help="where <split>.csv and the options stamp go")
    parser.add_argument("--hparams", default=None, help="a yaml with lang / text_normaliser (hparams/language.yaml)")
    parser.add_argument("--max_per_split", type=int, default=0, help="keep the first N utterances of each split (CI)")
    parser.add_argument("--split_names", default=",".join(SPLITS),
                        help="the three manifests' names, train,valid,test order (e.g. train,val,test)")
    parser.add_argument("--skip_prep", action="store_true", help="do nothing")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = prepare(args.data_folder, args.save_folder, args.hparams, args.max_per_split, args.skip_prep,
                         tuple(args.split_names.split(",")))
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    logger.info("manifests in %s: %s", args.save_folder, counts)
