"""What every ``recipes/<Dataset>/<dataset>_prepare.py`` shares.

A preparation script walks a corpus in its own published layout and writes one CSV manifest per
split with the columns :data:`PREPARE_FIELDS` (``ID, duration, wav, spk_id, lang, text,
raw_text``; ``wav`` relative to ``{data_root}`` = the ``--data_folder``). This module holds the
parts that are the same for every corpus:

* :func:`run_prepare`: the skip logic (a JSON stamp of the options beside the CSVs; a second run
  with the same options does nothing, a run with other options redoes the work), atomic CSV
  writes (the stamp is removed first and written last, so an interrupted run is never mistaken
  for a finished one), and the report of skipped utterances.
* :func:`read_text_file`, :func:`duration_of`, :func:`data_root_relative`: reading transcripts
  (UTF-8, errors naming the file and byte), durations from the audio header (soundfile), and
  ``{data_root}``-relative paths.
* :class:`Archive`, :func:`download_archive`: stage 0, the official archives with their published
  checksums; download to a temporary name, verify, extract, rename. Never run in CI.
* :func:`prepare_cli`: the command line ``--data_folder --save_folder [--splits ...] [--download]``.

Every problem raises :class:`~speechbrain_codec.utils.CodecError` naming the file, or (for a
single utterance without text) is reported and skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..utils import CodecError, atomic_write_json
from .audio import audio_info
from .manifest import MANIFEST_FIELDS, write_manifest

__all__ = [
    "PREPARE_FIELDS",
    "PrepareReport",
    "read_text_file",
    "duration_of",
    "data_root_relative",
    "stamp_path",
    "skip",
    "run_prepare",
    "Archive",
    "verify_checksum",
    "download_archive",
    "prepare_cli",
]

logger = logging.getLogger("speechbrain_codec")

#: Manifest columns written by every preparation script: the library's manifest columns plus the
#: untouched transcript (``text`` is normalised as the dataset's README says).
PREPARE_FIELDS = MANIFEST_FIELDS + ["raw_text"]

#: Bumped when the CSV contents change for the same options, so old outputs are redone.
PREPARE_VERSION = 1


# --------------------------------------------------------------------------------------------
# reading the corpus
# --------------------------------------------------------------------------------------------
def read_text_file(path: str | os.PathLike, what: str = "transcript") -> str:
    """The UTF-8 text of ``path``; a missing or non-UTF-8 file raises, naming the file.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> _ = open(p, "wb").write(b"caf\\xe9")
    >>> try:
    ...     read_text_file(p)
    ... except CodecError as err:
    ...     print(str(err).split(": ", 1)[1][:9], "at byte 3" in str(err))
    not UTF-8 True
    """
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{path}: {what} missing; the corpus layout is incomplete (re-extract the archive)")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CodecError(
            f"{path}: not UTF-8 ({err.reason} at byte {err.start}); re-save the {what} as UTF-8"
        ) from None
    return text.lstrip("\ufeff")


def duration_of(path: str | os.PathLike) -> float:
    """Duration in seconds (3 decimals) from the audio header; unreadable audio raises, naming it."""
    info = audio_info(path)
    return round(info.frames / info.samplerate, 3)


def data_root_relative(path: str | os.PathLike, data_folder: str | os.PathLike) -> str:
    """``{data_root}/<path relative to data_folder>`` with forward slashes.

    Example
    -------
    >>> data_root_relative("/data/LJSpeech-1.1/wavs/LJ001-0001.wav", "/data")
    '{data_root}/LJSpeech-1.1/wavs/LJ001-0001.wav'
    """
    rel = Path(os.path.relpath(Path(path), Path(data_folder)))
    if rel.parts and rel.parts[0] == "..":
        raise CodecError(f"{path}: not inside the data folder {data_folder}")
    return "{data_root}/" + rel.as_posix()


@dataclass
class PrepareReport:
    """Utterances left out of the manifests, with the reason and the file concerned."""

    skipped: dict[str, list[str]] = field(default_factory=dict)
    max_lines: int = 10

    def skip(self, split: str, path: str | os.PathLike, reason: str) -> None:
        items = self.skipped.setdefault(split, [])
        items.append(f"{path}: {reason}")
        if len(items) <= self.max_lines:
            logger.warning("skipped %s: %s", path, reason)
        elif len(items) == self.max_lines + 1:
            logger.warning("(further skipped utterances of split %s are listed in the stamp file)", split)

    def counts(self) -> dict[str, int]:
        return {split: len(items) for split, items in self.skipped.items()}


# --------------------------------------------------------------------------------------------
# skip logic and writing
# --------------------------------------------------------------------------------------------
def corpus_root(data_folder: str | os.PathLike, corpus: str, split_names: Iterable[str]) -> Path:
    """The folder holding a corpus's split folders: ``data_folder`` itself or
    ``data_folder/<corpus>`` (the archives' top folder), whichever holds one of ``split_names``."""
    data_folder = Path(data_folder)
    names = list(split_names)
    for cand in (data_folder, data_folder / corpus):
        if any((cand / s).is_dir() for s in names):
            return cand
    return data_folder / corpus if (data_folder / corpus).is_dir() else data_folder


def stamp_path(save_folder: str | os.PathLike, dataset: str) -> Path:
    """The options stamp written beside the CSVs: ``<save_folder>/<dataset>_prepare.json``."""
    return Path(save_folder) / f"{dataset}_prepare.json"


def skip(save_folder: str | os.PathLike, dataset: str, splits: Sequence[str], options: dict) -> bool:
    """True when every split's CSV exists and the stamp records the same options.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> skip(d, "demo", ["train"], {"a": 1})
    False
    """
    stamp = stamp_path(save_folder, dataset)
    if not stamp.is_file() or not all((Path(save_folder) / f"{s}.csv").is_file() for s in splits):
        return False
    try:
        saved = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return saved.get("options") == _jsonable(options)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def run_prepare(
    dataset: str,
    save_folder: str | os.PathLike,
    splits: Sequence[str],
    options: dict,
    build_split: Callable[[str, PrepareReport], list[dict]],
    skip_prep: bool = False,
    fields: list[str] | None = None,
) -> dict[str, int]:
    """Write ``<save_folder>/<split>.csv`` for each split unless done with the same options.

    Parameters
    ----------
    dataset : str
        Name used for the stamp file (``<dataset>_prepare.json``).
    save_folder : path
        Where the CSVs and the stamp go.
    splits : list of str
        Splits to write, in order.
    options : dict
        Everything the output depends on (JSON-serialisable; the data folder, the splits, …).
    build_split : callable
        ``build_split(split, report) -> rows``; raises :class:`CodecError` on a bad layout and
        calls ``report.skip`` for an utterance it leaves out.
    skip_prep : bool
        Do nothing at all (SpeechBrain's ``skip_prep``).
    fields : list of str, optional
        CSV columns, default :data:`PREPARE_FIELDS`.

    Returns
    -------
    dict
        Rows per split (read back from the stamp when skipped); ``{}`` with ``skip_prep``.
    """
    if skip_prep:
        return {}
    save_folder = Path(save_folder)
    options = dict(options, version=PREPARE_VERSION)
    stamp = stamp_path(save_folder, dataset)
    if skip(save_folder, dataset, splits, options):
        rows = json.loads(stamp.read_text(encoding="utf-8")).get("rows", {})
        logger.info("%s: manifests in %s are up to date with these options, skipped", dataset, save_folder)
        return {s: rows.get(s, 0) for s in splits}
    if stamp.exists():
        stamp.unlink()  # from here on the old outputs no longer count as done
    report = PrepareReport()
    built: dict[str, list[dict]] = {}
    for split in splits:
        rows = build_split(split, report)
        if not rows:
            raise CodecError(f"{dataset}: split {split} has no usable utterance; check the data folder")
        ids = [r["ID"] for r in rows]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise CodecError(f"{dataset}: split {split} has duplicate IDs {dup}")
        built[split] = rows
    for split, rows in built.items():
        write_manifest(save_folder / f"{split}.csv", rows, fields or PREPARE_FIELDS)
        hours = sum(float(r["duration"]) for r in rows) / 3600
        logger.info("%s: %s.csv: %d utterances, %.2f h", dataset, split, len(rows), hours)
    counts = {s: len(r) for s, r in built.items()}
    atomic_write_json(stamp, {
        "options": _jsonable(options),
        "rows": counts,
        "hours": {s: round(sum(float(r["duration"]) for r in rows) / 3600, 4) for s, rows in built.items()},
        "skipped": report.skipped,
    })
    if report.skipped:
        logger.warning("%s: skipped utterances per split %s (listed in %s)", dataset, report.counts(), stamp)
    return counts


# --------------------------------------------------------------------------------------------
# stage 0: download
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Archive:
    """An official archive of a corpus.

    Attributes
    ----------
    url : str
        Where it is published.
    checksum : str or None
        The published digest (hex); ``None`` when the project has no checksum from a source it
        can cite: the download then proceeds with "checksum unknown: verify by hand".
    algorithm : str
        ``"sha256"`` or ``"md5"``.
    extracts_to : str
        A path (relative to the download folder) that exists once the archive is extracted;
        its presence skips the download.
    source : str
        Where the checksum comes from.
    """

    url: str
    checksum: str | None
    algorithm: str = "sha256"
    extracts_to: str = ""
    source: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: str | os.PathLike, archive: Archive) -> str:
    """Compare ``path`` with the archive's published digest; returns the digest.

    Raises
    ------
    CodecError
        On a mismatch, naming the file, the URL and both digests.
    """
    path = Path(path)
    got = _digest(path, archive.algorithm)
    if archive.checksum is None:
        logger.warning(
            "%s: checksum unknown: verify by hand (%s of the file: %s; compare with the one published at %s)",
            archive.filename, archive.algorithm, got, archive.url.rsplit("/", 1)[0],
        )
    elif got.lower() != archive.checksum.lower():
        raise CodecError(
            f"{path}: {archive.algorithm} {got} differs from the published {archive.checksum} of {archive.url};"
            " the download is corrupt or not the official archive (removed; download again)"
        )
    return got


def safe_extract(tar_path: Path, dest: Path) -> None:
    """Extract ``tar_path`` into ``dest``, refusing members that would land outside it."""
    try:
        with tarfile.open(tar_path) as tar:
            try:
                tar.extractall(dest, filter="data")
            except TypeError:  # Python without extraction filters
                for m in tar.getmembers():
                    target = (dest / m.name).resolve()
                    if not str(target).startswith(str(dest.resolve())) or m.issym() or m.islnk():
                        raise CodecError(f"{tar_path}: unsafe member {m.name}; refusing to extract")
                tar.extractall(dest)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CodecError(f"{tar_path}: cannot be extracted ({err}); download it again") from None


def _merge(src: Path, dst: Path) -> None:
    """Move ``src``'s entries into ``dst``; whole folders move in one rename, nothing is overwritten."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if not target.exists():
            os.replace(entry, target)
        elif entry.is_dir() and target.is_dir():
            _merge(entry, target)


def download_archive(
    archive: Archive,
    dest: str | os.PathLike,
    opener: Callable | None = None,
    after_extract: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``archive`` into ``dest``, verify it, extract it there; skipped when extracted.

    The file is downloaded to a temporary name and checked before anything is extracted; the
    extraction goes to a temporary folder whose contents are then renamed into ``dest`` (so an
    interrupted run leaves no half-extracted corpus that a later run would take as complete).
    ``after_extract(tmp_folder)`` may post-process the extracted tree before the rename.
    ``opener(url)`` returns a file-like response (default :func:`urllib.request.urlopen`).

    Returns
    -------
    Path
        ``dest / archive.extracts_to``.
    """
    dest = Path(dest)
    done = dest / archive.extracts_to
    if archive.extracts_to and done.exists():
        logger.info("%s: %s exists, download skipped", archive.filename, done)
        return done
    dest.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{archive.filename}.part-", dir=dest)
    os.close(fd)
    part = Path(part)
    tmp_dir = None
    try:
        logger.info("downloading %s", archive.url)
        try:
            with (opener or urllib.request.urlopen)(archive.url) as response, open(part, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
        except OSError as err:  # URLError is an OSError
            raise CodecError(f"{archive.url}: download failed ({err}); check the connection or fetch it by hand") from None
        verify_checksum(part, archive)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{archive.filename}.extract-", dir=dest))
        safe_extract(part, tmp_dir)
        if after_extract is not None:
            after_extract(tmp_dir)
        if archive.extracts_to and not (tmp_dir / archive.extracts_to).exists():
            raise CodecError(f"{archive.url}: the archive holds no {archive.extracts_to}; not the expected release")
        _merge(tmp_dir, dest)
    finally:
        part.unlink(missing_ok=True)
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return done


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def prepare_cli(
    prepare_fn: Callable[..., dict[str, int]],
    description: str,
    all_splits: Iterable[str],
    default_splits: Sequence[str],
    download_fn: Callable[[Path, Sequence[str]], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """``--data_folder DIR --save_folder DIR [--splits ...] [--download] [--skip_prep]``.

    Prints ``error: <message>`` (no traceback) and returns 1 on a :class:`CodecError`.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data_folder", required=True, help="the corpus folder ({data_root} of the CSVs)")
    parser.add_argument("--save_folder", required=True, help="where <split>.csv and the options stamp go")
    parser.add_argument("--splits", nargs="+", default=list(default_splits), choices=list(all_splits),
                        help=f"splits to prepare (default: {' '.join(default_splits)})")
    if download_fn is not None:
        parser.add_argument("--download", action="store_true",
                            help="stage 0: download and extract the official archives first (needs internet)")
    parser.add_argument("--skip_prep", action="store_true", help="do nothing (for recipes that pass it through)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if download_fn is not None and args.download:
            download_fn(Path(args.data_folder), args.splits)
        counts = prepare_fn(args.data_folder, args.save_folder, splits=args.splits, skip_prep=args.skip_prep)
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if counts:
        logger.info("manifests in %s: %s", args.save_folder, counts)
    return 0
