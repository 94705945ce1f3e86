"""Deterministic training items: long segments of consecutive utterances (the LM-loss study's
"bs1" examples) and fixed chunks of each utterance (FocalCodec-S).

The LM-loss codec (lmloss.md §1.4) never crops: every training item is a run of consecutive
utterances (sorted by ID) of one chapter, concatenated until the audio reaches ``seconds``
(30 s). A *valid seed* is an utterance from which the following utterances of its group reach
that length; item ``i`` starts at seed ``i``. Validation takes every ``stride``-th seed (5),
at most ``limit`` of them (100).

:func:`concat_segments` turns a manifest (``{ID: row}``) into such items; each item is the
seed's row with ``members`` (the IDs, in order) and ``duration`` (their total) replaced. The
trainer (:mod:`speechbrain_codec.bin.train_codec`, ``concat_seconds``) loads the members' audio,
cached features and word alignments and concatenates them in lock-step (word times offset by
the audio before them).

:func:`fixed_chunks` (FocalCodec-S §1.3, the trainer's ``chunk_seconds``) cuts every utterance
into fixed chunks ``(chunk_id, utt_id, start, stop)`` (samples), ``chunk_id =
"<utterance ID>@<start sample>"``, in manifest row order; the pseudo-label cache
(:mod:`speechbrain_codec.bin.pseudo_labels`) is made for, and keyed by, the same list.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import torch

from ..utils import CodecError

__all__ = ["Chunk", "chunk_id", "chunks_sha256", "concat_segments", "cut_chunk", "dropped_line", "fixed_chunks",
           "group_of"]


def group_of(row: dict, group: str | None) -> str:
    """The group of a manifest row: a column's value, ``id_prefix:N`` (the first N characters of
    the ID: ``id_prefix:5`` is LJSpeech's chapter, ``LJ021``), or one group (``None``)."""
    if group is None:
        return ""
    if group.startswith("id_prefix:"):
        return row["ID"][: int(group.split(":", 1)[1])]
    if group not in row:
        raise CodecError(f"concat_group {group!r}: not a manifest column (columns: {', '.join(row)}); "
                         "use a column or id_prefix:N")
    return str(row[group])


def concat_segments(rows: dict[str, dict], seconds: float, group: str | None = None, stride: int = 1,
                    limit: int | None = None) -> dict[str, dict]:
    """Items of consecutive utterances of one group reaching ``seconds`` (see the module docstring).

    Utterances are taken in ID order; a group's last utterances, which cannot reach ``seconds``
    with what follows them, start no item. Every ``stride``-th seed is kept, at most ``limit``.

    Raises :class:`CodecError` when no utterance can start an item (the corpus, or every group,
    is shorter than ``seconds``), naming the longest group.

    Example
    -------
    >>> rows = {f"A-{i}": {"ID": f"A-{i}", "duration": 4.0} for i in range(4)}
    >>> rows.update({f"B-{i}": {"ID": f"B-{i}", "duration": 6.0} for i in range(2)})
    >>> items = concat_segments(rows, 10.0, group="id_prefix:1")
    >>> {k: (v["members"], v["duration"]) for k, v in items.items()}
    {'A-0': (['A-0', 'A-1', 'A-2'], 12.0), 'A-1': (['A-1', 'A-2', 'A-3'], 12.0), 'B-0': (['B-0', 'B-1'], 12.0)}
    >>> list(concat_segments(rows, 10.0, group="id_prefix:1", stride=2))
    ['A-0', 'B-0']
    """
    if seconds <= 0:
        raise CodecError(f"concat_seconds must be positive, got {seconds}")
    ids = sorted(rows)
    missing = [u for u in ids if rows[u].get("duration") in (None, "")]
    if missing:
        raise CodecError(f"concat_seconds needs the manifests' duration column; {missing[0]} has none "
                         "(run the data preparation again)")
    seeds: list[tuple[str, list[str], float]] = []
    totals: dict[str, float] = {}
    for i, uid in enumerate(ids):
        g = group_of(rows[uid], group)
        totals[g] = totals.get(g, 0.0) + float(rows[uid]["duration"])
        members, total = [], 0.0
        for other in ids[i:]:
            if group_of(rows[other], group) != g:
                break
            members.append(other)
            total += float(rows[other]["duration"])
            if total >= seconds:
                seeds.append((uid, members, total))
                break
    if not seeds:
        longest = max(totals.items(), key=lambda kv: kv[1]) if totals else ("", 0.0)
        where = f" (longest group {longest[0]!r}: {longest[1]:.1f} s)" if group is not None else \
            f" (all of it: {longest[1]:.1f} s)"
        raise CodecError(f"no run of consecutive utterances reaches concat_seconds = {seconds} s{where}; "
                         "lower concat_seconds or add data")
    kept = seeds[::max(1, int(stride))]
    if limit is not None:
        kept = kept[: int(limit)]
    return {uid: {**rows[uid], "members": members, "duration": round(total, 6)} for uid, members, total in kept}


# ---------------------------------------------------------------------------- fixed chunks


class Chunk(NamedTuple):
    """One fixed chunk of a manifest utterance: ``samples [start, stop)`` at the codec's rate."""

    chunk_id: str  # "<utterance ID>@<start sample>"
    utt_id: str
    start: int
    stop: int


def chunk_id(utt_id: str, start: int) -> str:
    """The ID of the chunk of ``utt_id`` starting at sample ``start``: ``"<utt_id>@<start>"``."""
    return f"{utt_id}@{int(start)}"


def fixed_chunks(rows: dict[str, dict], chunk_seconds: float, hop_seconds: float | None = None,
                 sample_rate: int = 16000) -> list[Chunk]:
    """Every fixed chunk of every utterance, in manifest row order (FocalCodec-S §1.3).

    An utterance of ``L`` samples (its manifest ``duration`` × ``sample_rate``, rounded) gives
    ``n = floor((L - C) / H) + 1`` chunks of ``C`` samples (``chunk_seconds``) every ``H``
    samples (``hop_seconds``, default ``chunk_seconds``: no overlap), starting at 0; the tail
    remainder is dropped, and so is every utterance shorter than one chunk. The list depends on
    the rows, their order and durations and the three settings only: the trainer and the
    pseudo-label cache (:mod:`speechbrain_codec.bin.pseudo_labels`) build the same one.

    Raises :class:`CodecError` for a non-positive setting or a row without a duration.

    Example
    -------
    >>> rows = {u: {"ID": u, "duration": d} for u, d in [("a", 3.0), ("b", 2.99), ("c", 5.5), ("d", 8.0)]}
    >>> [c.chunk_id for c in fixed_chunks(rows, 3.0, 2.5, 16000)]
    ['a@0', 'c@0', 'c@40000', 'd@0', 'd@40000', 'd@80000']
    >>> fixed_chunks(rows, 3.0, 2.5, 16000)[-1]
    Chunk(chunk_id='d@80000', utt_id='d', start=80000, stop=128000)
    """
    hop_seconds = chunk_seconds if hop_seconds is None else hop_seconds
    size, hop = round(float(chunk_seconds) * sample_rate), round(float(hop_seconds) * sample_rate)
    if size <= 0 or hop <= 0:
        raise CodecError(f"chunk_seconds ({chunk_seconds}) and the chunk hop ({hop_seconds}) must be positive")
    chunks: list[Chunk] = []
    for uid, row in rows.items():
        duration = row.get("duration")
        if duration in (None, ""):
            raise CodecError(f"chunk_seconds needs the manifests' duration column; {uid} has none "
                             "(run the data preparation again)")
        length = round(float(duration) * sample_rate)
        if length < size:
            continue
        for i in range((length - size) // hop + 1):
            chunks.append(Chunk(chunk_id(uid, i * hop), uid, i * hop, i * hop + size))
    return chunks


def dropped_line(rows: dict[str, dict], chunks: list[Chunk], chunk_seconds: float) -> str:
    """``"dropped N of M utterances shorter than 3.0 s"``: the utterances ``chunks`` has none of."""
    kept = {c.utt_id for c in chunks}
    return f"dropped {sum(u not in kept for u in rows)} of {len(rows)} utterances shorter than {float(chunk_seconds)} s"


def chunks_sha256(chunks: list[Chunk]) -> str:
    """SHA-256 of the chunk ID list (in order): what a pseudo-label cache was made for."""
    return hashlib.sha256("\n".join(c.chunk_id for c in chunks).encode()).hexdigest()


def cut_chunk(sig: torch.Tensor, start: int, stop: int, sample_rate: int, where: str = "",
              tolerance_seconds: float = 0.01) -> torch.Tensor:
    """``sig[start:stop]`` of a whole utterance ``[T]``; a clip up to ``tolerance_seconds`` shorter
    than its manifest duration (durations are rounded to the millisecond, resampling rounds
    too) is zero-padded, a shorter one raises :class:`CodecError` naming ``where``.

    Example
    -------
    >>> cut_chunk(torch.arange(10.0), 6, 11, 1000).tolist()
    [6.0, 7.0, 8.0, 9.0, 0.0]
    """
    if sig.shape[0] < stop:
        if stop - sig.shape[0] > tolerance_seconds * sample_rate:
            raise CodecError(f"{where}: {sig.shape[0] / sample_rate:.3f} s of audio, but the manifest's duration "
                             f"plans a chunk up to {stop / sample_rate:.3f} s; fix its duration (run the data "
                             "preparation again)")
        sig = torch.nn.functional.pad(sig, (0, stop - sig.shape[0]))
    return sig[start:stop]
