"""Long training segments made of consecutive utterances (the LM-loss study's "bs1" examples).

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
"""

from __future__ import annotations

from ..utils import CodecError

__all__ = ["concat_segments", "group_of"]


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
