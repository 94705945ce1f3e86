#!/usr/bin/env python3
"""Whisper pseudo-label cache of the fixed training chunks (FocalCodec-S §3.3–3.4).

    python -m speechbrain_codec.bin.pseudo_labels --manifest EXP/data/train.csv --data_folder DATA \
        --whisper openai/whisper-small --output EXP/labels/train --chunk_seconds 3 --hop_seconds 2.5 \
        [--batch_size 16] [--device cuda] [--language en] [--max_new_tokens 224] \
        [--dtype float32|bfloat16] [--sample_rate 16000] [--shard_size 1024] [--overwrite true]

The chunks are those the generic trainer trains on
(:func:`speechbrain_codec.dataio.segments.fixed_chunks`: the same function, the same manifest,
``--chunk_seconds`` / ``--hop_seconds`` / ``--sample_rate`` as the trainer's ``chunk_seconds`` /
``chunk_hop_seconds`` (``valid_chunk_hop_seconds`` for the validation manifest) / ``sample_rate``):
files shorter than one chunk are dropped (one line says how many), chunk IDs are
``<utterance ID>@<start sample>``. Each chunk of clean audio (the manifest's ``wav``, mono, at
``--sample_rate``, resampled to 16 kHz for Whisper) is transcribed greedily by
:meth:`speechbrain_codec.losses.WhisperTokenLoss.pseudo_labels` (``WhisperTokenLoss(--whisper,
target="pseudo")``: temperature 0, no timestamps, ``--max_new_tokens`` at most; the online
decoding of the loss, here ``--batch_size`` chunks per ``generate`` call, under ``--dtype``
autocast), its language token forced from the row's ``lang`` column; rows without one get
``--language`` (default ``en``), and one line says how many (the reference silently prompted
Mandarin as English when the column was missing, §6.1 bug 9).

**Files** in ``--output``:

* ``settings.json``: written first; what the labels depend on: ``whisper`` (the source as given),
  ``manifest`` (its path, for the record), ``chunk_seconds``, ``hop_seconds``, ``sample_rate``,
  ``n_chunks``, ``chunks_sha256`` (SHA-256 of the chunk ID list, in order), ``language``,
  ``max_new_tokens``, ``dtype``, ``shard_size``, ``format``;
* ``shards/<k>.json`` (``k`` = 00000, 00001, ...): ``{chunk_id: {"tokens": [...], "lang": "zh"}}``
  of chunks ``k·shard_size`` to ``(k+1)·shard_size - 1`` of the list, each written atomically as
  soon as it is decoded; removed once ``labels.json`` is written;
* ``labels.json``: ``{chunk_id: {"tokens": [token ids, no prompt, no end-of-text], "lang": ...}}``
  of every chunk, in chunk order (atomic);
* ``stamp.json``, written last (atomic; the cache is complete when it exists): the settings plus
  ``labels_sha256`` (of ``labels.json``), ``utterances``, ``dropped`` and ``rows_without_lang``.

**Resuming.** A run that stops (or is killed) leaves its finished shards; the same command again
decodes only the missing ones, and does nothing when ``stamp.json`` is there. A folder made with
other settings (another Whisper, manifest chunk list, chunk length, hop, rate, token limit,
dtype...) is refused with one line naming what differs; ``--overwrite true`` discards it and
starts again.

**Training with it**: the trainer's ``label_cache: <--output>`` (``valid_label_cache`` for the
validation chunks; :mod:`speechbrain_codec.bin.train_codec`) gives every chunk its ``pseudo_labels``,
which ``WhisperTokenLoss(target="pseudo")`` then uses instead of decoding online. The trainer checks
``stamp.json`` against its own chunk list (one line naming the mismatch and this command
otherwise) and records the SHA-256 of ``labels.json`` in its training configuration, so a
regenerated cache is never mixed into a resumed run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from ..dataio import load_audio, read_manifest
from ..dataio.segments import Chunk, chunks_sha256, cut_chunk, dropped_line, fixed_chunks
from ..utils import CodecError, atomic_write_json, one_line_errors

__all__ = ["main", "run", "LabelCache", "cache_settings", "regenerate_command", "LABELS", "STAMP", "SETTINGS"]

FORMAT = 1
LABELS, STAMP, SETTINGS, SHARDS = "labels.json", "stamp.json", "settings.json", "shards"
# the settings a trainer's chunk list must agree with
PLAN_KEYS = ("chunk_seconds", "hop_seconds", "sample_rate", "n_chunks", "chunks_sha256")


def regenerate_command(manifest, data_folder, whisper, output, chunk_seconds, hop_seconds, sample_rate=16000,
                       overwrite: bool = True, **extra) -> str:
    """The command line that (re)makes the cache ``output`` for these settings."""
    args = ["python", "-m", "speechbrain_codec.bin.pseudo_labels", "--manifest", manifest, "--data_folder",
            data_folder, "--whisper", whisper, "--output", output, "--chunk_seconds", chunk_seconds,
            "--hop_seconds", hop_seconds]
    if int(sample_rate) != 16000:
        args += ["--sample_rate", sample_rate]
    for key, value in extra.items():
        if value is not None:
            args += [f"--{key}", value]
    if overwrite:
        args += ["--overwrite", "true"]
    return shlex.join(str(a) for a in args)


def cache_settings(chunks: list[Chunk], chunk_seconds: float, hop_seconds: float, sample_rate: int, **extra) -> dict:
    """The settings record of a cache of ``chunks`` (``extra``: whisper, manifest, ...)."""
    return {"format": FORMAT, "chunk_seconds": float(chunk_seconds), "hop_seconds": float(hop_seconds),
            "sample_rate": int(sample_rate), "n_chunks": len(chunks), "chunks_sha256": chunks_sha256(chunks), **extra}


def _differences(there: dict, here: dict, keys) -> list[str]:
    return [f"{k}: {there.get(k)!r} in the cache, {here.get(k)!r} here" for k in keys if there.get(k) != here.get(k)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LabelCache:
    """A finished pseudo-label cache folder (``stamp.json`` + ``labels.json``), checked against
    the chunk list it is used for.

    Parameters
    ----------
    folder : str
        The ``--output`` of this script.
    expected : dict
        :func:`cache_settings` of the user's chunk list; every key of ``PLAN_KEYS`` must agree.
    command : str
        The command that regenerates the cache, quoted in every error.
    what : str
        How the errors name the folder (the trainer: ``label_cache``).
    """

    def __init__(self, folder: str, expected: dict | None = None, command: str = "", what: str = "label cache") -> None:
        self.folder, self.what = Path(folder), what
        self.command = command or "python -m speechbrain_codec.bin.pseudo_labels --manifest ... --output ..."
        stamp, labels = self.folder / STAMP, self.folder / LABELS
        if not stamp.is_file() or not labels.is_file():
            state = "no such folder" if not self.folder.is_dir() else "unfinished (no stamp.json / labels.json)"
            raise CodecError(f"{what} {self.folder}: {state}; make it with: {self.command}")
        self.stamp = json.loads(stamp.read_text(encoding="utf-8"))
        self.sha256 = _sha(labels)
        if self.stamp.get("labels_sha256") != self.sha256:
            raise CodecError(f"{what} {self.folder}: labels.json does not match its stamp.json (edited, or copied "
                             f"half-way); regenerate it: {self.command}")
        if expected is not None:
            differs = _differences(self.stamp, expected, PLAN_KEYS)
            if differs:
                raise CodecError(f"{what} {self.folder} was made for another chunk list ({'; '.join(differs)}); "
                                 f"regenerate it: {self.command}")
        self.labels = json.loads(labels.read_text(encoding="utf-8"))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, chunk: str) -> bool:
        return chunk in self.labels

    def tokens(self, chunk: str) -> list[int]:
        """The label token ids of ``chunk``; a chunk not in the cache raises :class:`CodecError`."""
        entry = self.labels.get(chunk)
        if entry is None:
            raise CodecError(f"chunk {chunk} is not in the {self.what} {self.folder}; regenerate it: {self.command}")
        return list(entry["tokens"])

    def lang(self, chunk: str) -> str:
        return self.labels[chunk]["lang"]


# ---------------------------------------------------------------------------- the script


def _bool(text: str) -> bool:
    if str(text).lower() in ("true", "1", "yes"):
        return True
    if str(text).lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"true or false, not {text!r}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m speechbrain_codec.bin.pseudo_labels",
                                description="Whisper pseudo-labels of every fixed chunk of a manifest (resumable).")
    p.add_argument("--manifest", required=True, help="train.csv / valid.csv (ID, duration, wav, lang, ...)")
    p.add_argument("--data_folder", required=True, help="{data_root} of the manifest")
    p.add_argument("--whisper", required=True, help="Whisper hub id or folder (openai/whisper-small)")
    p.add_argument("--output", required=True, help="the cache folder (the trainer's label_cache)")
    p.add_argument("--chunk_seconds", type=float, required=True, help="chunk length (the trainer's chunk_seconds)")
    p.add_argument("--hop_seconds", type=float, default=None,
                   help="chunk hop (chunk_hop_seconds for train, valid_chunk_hop_seconds for valid); "
                        "default --chunk_seconds")
    p.add_argument("--sample_rate", type=int, default=16000, help="the codec's input rate (the trainer's sample_rate)")
    p.add_argument("--batch_size", type=int, default=16, help="chunks per generate call")
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    p.add_argument("--language", default="en", help="language of the rows without lang")
    p.add_argument("--max_new_tokens", type=int, default=224)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="autocast dtype of decoding")
    p.add_argument("--shard_size", type=int, default=1024, help="chunks per resumable shard")
    p.add_argument("--overwrite", type=_bool, default=False, help="true: discard a cache made with other settings")
    args = p.parse_args(argv)
    if args.hop_seconds is None:
        args.hop_seconds = args.chunk_seconds
    if args.batch_size < 1 or args.shard_size < 1:
        p.error("--batch_size and --shard_size must be at least 1")
    return args


def _command_of(args: argparse.Namespace) -> str:
    extra = {k: getattr(args, k) for k in ("language", "max_new_tokens", "dtype")
             if getattr(args, k) != {"language": "en", "max_new_tokens": 224, "dtype": "float32"}[k]}
    return regenerate_command(args.manifest, args.data_folder, args.whisper, args.output, args.chunk_seconds,
                              args.hop_seconds, args.sample_rate, **extra)


class _Audio:
    """Whole utterances, the last one kept (the chunks of an utterance are consecutive)."""

    def __init__(self, rows: dict, sample_rate: int) -> None:
        self.rows, self.sample_rate, self.uid, self.sig = rows, sample_rate, None, None

    def chunk(self, c: Chunk) -> torch.Tensor:
        if c.utt_id != self.uid:
            self.uid, self.sig = c.utt_id, load_audio(self.rows[c.utt_id]["wav"], self.sample_rate, notices=False)
        return cut_chunk(self.sig, c.start, c.stop, self.sample_rate, self.rows[c.utt_id]["wav"])


def _shard_done(path: Path, ids: list[str]) -> bool:
    if not path.is_file():
        return False
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))) == ids
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def main(argv: list[str] | None = None) -> dict:
    """Make (or finish) the cache; returns the stamp plus ``decoded`` / ``reused`` chunk counts."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.output)
    rows = read_manifest(args.manifest, args.data_folder)
    chunks = fixed_chunks(rows, args.chunk_seconds, args.hop_seconds, args.sample_rate)
    print(f"{Path(args.manifest).name}: {dropped_line(rows, chunks, args.chunk_seconds)}; {len(chunks)} chunks of "
          f"{args.chunk_seconds} s every {args.hop_seconds} s")
    if not chunks:
        raise CodecError(f"{args.manifest}: no utterance is as long as --chunk_seconds {args.chunk_seconds}")
    kept = list(dict.fromkeys(c.utt_id for c in chunks))
    lang = {u: (rows[u].get("lang") or "").strip() or None for u in kept}
    without = [u for u in kept if lang[u] is None]
    if without:
        print(f"{len(without)} of {len(kept)} utterances have no lang (e.g. {without[0]}): their chunks are "
              f"prompted with <|{args.language}|> (--language)")
    settings = cache_settings(chunks, args.chunk_seconds, args.hop_seconds, args.sample_rate, whisper=args.whisper,
                              manifest=str(args.manifest), language=args.language,
                              max_new_tokens=args.max_new_tokens, dtype=args.dtype, shard_size=args.shard_size)
    command = _command_of(args)
    if out.is_dir() and (out / SETTINGS).is_file():
        there = json.loads((out / SETTINGS).read_text(encoding="utf-8"))
        # the manifest's path and the shard size do not change the labels (a shard of other
        # chunks is decoded again)
        keys = [k for k in sorted(set(there) | set(settings)) if k not in ("manifest", "shard_size")]
        differs = _differences(there, settings, keys)
        if differs and not args.overwrite:
            raise CodecError(f"{out} holds pseudo-labels made with other settings ({'; '.join(differs)}); "
                             f"regenerate it: {command} (or choose another --output)")
        if differs:
            print(f"--overwrite: discarding {out} ({'; '.join(differs)})")
            shutil.rmtree(out)
        elif (out / STAMP).is_file() and (out / LABELS).is_file():
            stamp = json.loads((out / STAMP).read_text(encoding="utf-8"))
            if stamp.get("labels_sha256") == _sha(out / LABELS):
                print(f"{out}: up to date ({len(chunks)} chunks)")
                return {**stamp, "decoded": 0, "reused": len(chunks)}
    elif out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            raise CodecError(f"{out} is not empty and holds no pseudo-label settings.json; choose another --output "
                             "or pass --overwrite true to replace it")
        shutil.rmtree(out)
    atomic_write_json(out / SETTINGS, settings)
    (out / STAMP).unlink(missing_ok=True)  # complete again only once labels.json is rewritten

    from ..losses import WhisperTokenLoss

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loss = WhisperTokenLoss(args.whisper, target="pseudo", language=args.language, sample_rate=args.sample_rate,
                            max_new_tokens=args.max_new_tokens, dtype=args.dtype).to(device)
    audio = _Audio(rows, args.sample_rate)
    size = args.shard_size
    n_shards = (len(chunks) + size - 1) // size
    decoded = reused = 0
    labels: dict[str, dict] = {}
    began = time.time()
    for k in range(n_shards):
        part = chunks[k * size : (k + 1) * size]
        path = out / SHARDS / f"{k:05d}.json"
        ids = [c.chunk_id for c in part]
        if _shard_done(path, ids):
            labels.update(json.loads(path.read_text(encoding="utf-8")))
            reused += len(part)
            continue
        shard = {}
        for b in range(0, len(part), args.batch_size):
            batch = part[b : b + args.batch_size]
            sig = torch.stack([audio.chunk(c) for c in batch]).to(device)
            langs = [lang[c.utt_id] or args.language for c in batch]
            for c, lg, toks in zip(batch, langs, loss.pseudo_labels(sig, langs, batched=True)):
                shard[c.chunk_id] = {"tokens": [int(t) for t in toks], "lang": lg}
        atomic_write_json(path, shard)
        labels.update(shard)
        decoded += len(part)
        print(f"shard {k + 1}/{n_shards}: {decoded + reused}/{len(chunks)} chunks ({time.time() - began:.0f} s)",
              flush=True)
    atomic_write_json(out / LABELS, {c.chunk_id: labels[c.chunk_id] for c in chunks})
    stamp = {**settings, "labels_sha256": _sha(out / LABELS), "utterances": len(rows),
             "dropped": len(rows) - len(kept), "rows_without_lang": len(without)}
    atomic_write_json(out / STAMP, stamp)
    shutil.rmtree(out / SHARDS, ignore_errors=True)
    empty = sum(not v["tokens"] for v in labels.values())
    print(f"wrote {out / LABELS}: {len(chunks)} chunks ({decoded} decoded now, {reused} from earlier shards; "
          f"{empty} with empty labels)")
    return {**stamp, "decoded": decoded, "reused": reused}


@one_line_errors
def run(argv: list[str] | None = None) -> int:
    """:func:`main` with one-line errors; returns the exit status."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run())
