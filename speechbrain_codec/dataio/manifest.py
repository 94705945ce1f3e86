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
        Missing file (with the stage that writes it), missing columns, duplicate IDs, or text
        that is not UTF-8.

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
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as err:
        raise CodecError(f"{path}: not UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8") from None
    if rows and not {"ID", "wav"} <= set(rows[0]):
        raise CodecError(f"{path}: needs columns ID and wav, has {list(rows[0])}")
    out: dict[str, dict] = {}
    for row in rows:
        if row["ID"] in out:
            raise CodecError(f"{path}: duplicate ID {row['ID']}")
        if data_root is not None:
            row["wav"] = row["wav"].replace("{data_root}", str(data_root))
        if "duration" in row and row["duration"] not in (None, ""):
            row["duration"] = float(row["duration"])
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
