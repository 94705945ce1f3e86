"""Manifests: CSV files with ``ID, duration, wav, spk_id, lang, text``; paths relative to
``{data_root}``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..utils import CodecError, atomic_path

__all__ = ["read_manifest", "write_manifest", "MANIFEST_FIELDS"]

MANIFEST_FIELDS = ["ID", "duration", "wav", "spk_id", "lang", "text"]


def read_manifest(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> dict[str, dict]:
    """Read a manifest into ``{ID: row}``, replacing ``{data_root}`` in ``wav``.

    Raises
    ------
    CodecError
        Missing or empty file (with the stage that writes it), missing columns, a row with
        too few or too many fields, an empty or duplicate ID, a duration that is not a
        number, or text that is not UTF-8 (a UTF-8 byte-order mark is accepted).

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> write_manifest(p, [{"ID": "a", "duration": 1.0, "wav": "{data_root}/a.wav",
    ...                     "spk_id": "s", "lang": "en", "text": "hi"}])
    >>> read_manifest(p, "/data")["a"]["wav"]
    '/data/a.wav'
    """
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{path}: manifest missing; it is written by the data preparation stage")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a UTF-8 byte-order mark is dropped
            reader = csv.DictReader(f)
            rows, lines = [], []
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)  # the row's (last) line in the file
            fields = list(reader.fieldnames or [])
    except UnicodeDecodeError as err:
        raise CodecError(f"{path}: not UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8") from None
    except csv.Error as err:
        raise CodecError(f"{path}: not a CSV manifest ({err})") from None
    if not {"ID", "wav"} <= set(fields):
        raise CodecError(f"{path}: needs columns ID and wav, has {fields}" if fields else
                         f"{path}: empty (no header, no utterances); run the data preparation stage again")
    if not rows:
        raise CodecError(f"{path}: holds no utterances (header only); run the data preparation stage again")
    out: dict[str, dict] = {}
    for line, row in zip(lines, rows):
        if None in row or None in row.values():
            n = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
            raise CodecError(f"{path}: line {line} ({row['ID'] or 'no ID'}) has {n} fields, the header has "
                             f"{len(fields)}; fix the row (a comma inside an unquoted text?)")
        if not row["ID"]:
            raise CodecError(f"{path}: line {line} has an empty ID")
        if row["ID"] in out:
            raise CodecError(f"{path}: duplicate ID {row['ID']}")
        if data_root is not None:
            row["wav"] = row["wav"].replace("{data_root}", str(data_root))
        if "duration" in row and row["duration"] not in (None, ""):
            try:
                row["duration"] = float(row["duration"])
            except ValueError:
                raise CodecError(f"{path}: line {line} ({row['ID']}): duration {row['duration']!r} is not a number "
                                 "(seconds)") from None
        out[row["ID"]] = row
    return out


def write_manifest(path: str | os.PathLike, rows: list[dict], fields: list[str] | None = None) -> None:
    """Write ``rows`` as a CSV manifest atomically."""
    fields = fields or MANIFEST_FIELDS
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
