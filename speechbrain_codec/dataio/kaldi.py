"""Kaldi-style data directories: ``wav.scp``, ``segments``, ``text``, ``utt2spk``.

A Kaldi data directory lists recordings and utterances in plain-text tables, one entry a line,
the key first:

* ``wav.scp`` — ``<recording-id> <path>`` or ``<recording-id> <command> |``: a command whose
  standard output is the audio (``sox in.flac -t wav - |``, ``ffmpeg -i in.mp3 -f wav - |``,
  ``flac -dc in.flac |``, ``sph2pipe -f wav in.sph |``). Commands are run (argument list, no
  shell; relative paths from ``base``) only for those programs, one program per line, and only
  when it is installed; anything else is refused with one line naming the file, the line and
  the fix. Kaldi ``ark:`` offsets (``foo.ark:1234``) are refused the same way.
* ``segments`` (optional) — ``<utterance-id> <recording-id> <start s> <end s>`` (end ``-1``:
  to the end of the recording). Without it every recording is one utterance of the same ID.
* ``text`` (optional) — ``<utterance-id> <transcript>``.
* ``utt2spk`` (optional) — ``<utterance-id> <speaker-id>``; without it the speaker is the
  utterance ID (Kaldi's own convention for unknown speakers).

:func:`read_kaldi_dir` reads and cross-checks them (an utterance of ``text`` that no
``wav.scp`` / ``segments`` entry names is an error; an utterance without text is kept with
``text=None``). :func:`materialise` writes one utterance as an audio file the rest of the
toolkit can read: a plain recording without a segment is used in place (no copy); a piped
recording is run once and stored as ``<folder>/<recording>.wav``; a segment is cut from its
recording into ``<folder>/<utterance>.wav``. Files are written atomically and reused on a
second run.

Example
-------
>>> import tempfile, os, numpy as np, soundfile as sf
>>> d = tempfile.mkdtemp()
>>> sf.write(os.path.join(d, "a.wav"), np.zeros(16000, "float32"), 16000)
>>> _ = open(os.path.join(d, "wav.scp"), "w").write("rec1 a.wav\\n")
>>> _ = open(os.path.join(d, "text"), "w").write("rec1 hello world\\n")
>>> [(u.utt_id, u.text, u.speaker) for u in read_kaldi_dir(d)]
[('rec1', 'hello world', 'rec1')]
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..utils import CodecError, atomic_path

__all__ = [
    "PIPE_PROGRAMS",
    "WavEntry",
    "KaldiUtterance",
    "read_table",
    "read_wav_scp",
    "read_segments",
    "read_kaldi_dir",
    "is_kaldi_dir",
    "materialise",
]

#: programs a ``wav.scp`` pipe may run
PIPE_PROGRAMS = ("sox", "ffmpeg", "flac", "sph2pipe")
_ARK_OFFSET = re.compile(r":\d+$")


@dataclass(frozen=True)
class WavEntry:
    """One ``wav.scp`` line: a ``path`` (absolute) or a ``command`` (argument list)."""

    recording: str
    path: Path | None
    command: tuple[str, ...] | None
    where: str  # "wav.scp:LINE", for messages


@dataclass(frozen=True)
class KaldiUtterance:
    """One utterance of a Kaldi directory (``start`` / ``end`` in seconds from ``segments``,
    ``end=None``: to the end of the recording)."""

    utt_id: str
    wav: WavEntry
    start: float | None
    end: float | None
    text: str | None
    speaker: str


def read_table(path: str | os.PathLike, what: str, min_fields: int = 2) -> dict[str, tuple[str, int]]:
    """``{key: (rest of the line, line number)}`` of a Kaldi table; blank lines are skipped.

    Raises
    ------
    CodecError
        Not UTF-8, a line with fewer than ``min_fields`` fields, or a duplicate key (naming the
        file and line).
    """
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8").lstrip("\ufeff").splitlines()
    except UnicodeDecodeError as err:
        raise CodecError(f"{path}: not UTF-8 ({err.reason} at byte {err.start}); re-save {path.name} as UTF-8") from None
    out: dict[str, tuple[str, int]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2 or len(line.split()) < min_fields:
            raise CodecError(f"{path}:{n}: expected '<id> {what}', got {line.strip()!r}")
        key, rest = parts
        if key in out:
            raise CodecError(f"{path}:{n}: duplicate id {key} (first on line {out[key][1]})")
        out[key] = (rest.strip(), n)
    return out


def read_wav_scp(path: str | os.PathLike, base: str | os.PathLike | None = None) -> dict[str, WavEntry]:
    """``{recording: WavEntry}``; relative paths are taken from ``base`` (default: the folder of
    ``wav.scp``). Pipe commands are parsed and checked here (program allowed), not run."""
    path = Path(path)
    base = Path(base) if base is not None else path.parent
    out = {}
    for rec, (rest, n) in read_table(path, "<path> or <command> |").items():
        where = f"{path}:{n}"
        if rest.endswith("|"):
            cmd = rest[:-1].strip()
            if "|" in cmd:
                raise CodecError(f"{where}: a chain of pipes ({rest!r}) is not run; convert the audio to files and "
                                 "list their paths in wav.scp")
            try:
                argv = tuple(shlex.split(cmd))
            except ValueError as err:
                raise CodecError(f"{where}: cannot parse the command {cmd!r} ({err})") from None
            prog = os.path.basename(argv[0]) if argv else ""
            if prog not in PIPE_PROGRAMS:
                raise CodecError(f"{where}: the pipe runs {prog or 'nothing'!r}; only {', '.join(PIPE_PROGRAMS)} pipes "
                                 "are run: convert the audio to files and list their paths in wav.scp")
            out[rec] = WavEntry(rec, None, argv, where)
            continue
        if len(rest.split()) != 1 and not Path(rest).exists():
            raise CodecError(f"{where}: {rest!r} is neither one path nor a command ending in '|'")
        p = Path(rest)
        p = p if p.is_absolute() else base / p
        if not p.exists() and _ARK_OFFSET.search(rest):
            raise CodecError(f"{where}: {rest!r} is a Kaldi archive offset (ark); extract the audio to files "
                             "(e.g. wav-copy ark:... ark,t:- or Kaldi's extract-segments) and list their paths")
        out[rec] = WavEntry(rec, p, None, where)
    return out


def read_segments(path: str | os.PathLike) -> dict[str, tuple[str, float, float | None, str]]:
    """``{utterance: (recording, start s, end s or None, "segments:LINE")}``."""
    path = Path(path)
    out = {}
    for utt, (rest, n) in read_table(path, "<recording> <start> <end>", min_fields=4).items():
        fields = rest.split()
        if len(fields) != 3:
            raise CodecError(f"{path}:{n}: expected '<utterance> <recording> <start> <end>', got {utt} {rest!r}")
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise CodecError(f"{path}:{n}: start and end must be seconds, got {fields[1]!r} {fields[2]!r}") from None
        if start < 0 or (end != -1 and end <= start):
            raise CodecError(f"{path}:{n}: segment {utt} runs from {start} to {end} s; end must be after start (or -1)")
        out[utt] = (fields[0], start, None if end == -1 else end, f"{path}:{n}")
    return out


def is_kaldi_dir(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a ``wav.scp``."""
    return (Path(folder) / "wav.scp").is_file()


def read_kaldi_dir(folder: str | os.PathLike, base: str | os.PathLike | None = None) -> list[KaldiUtterance]:
    """The utterances of a Kaldi data directory, sorted by ID (see the module docstring).

    Raises
    ------
    CodecError
        No ``wav.scp``; a ``segments`` line naming a recording ``wav.scp`` lacks; a ``text`` or
        ``utt2spk`` entry for an utterance that does not exist; any malformed line.
    """
    folder = Path(folder)
    scp = folder / "wav.scp"
    if not scp.is_file():
        raise CodecError(f"{scp}: missing; a Kaldi data directory needs wav.scp (and optionally segments, text, utt2spk)")
    wavs = read_wav_scp(scp, base)
    if not wavs:
        raise CodecError(f"{scp}: no recording listed")
    seg_path = folder / "segments"
    if seg_path.is_file():
        segs = read_segments(seg_path)
        for utt, (rec, _, _, where) in segs.items():
            if rec not in wavs:
                raise CodecError(f"{where}: utterance {utt} is cut from recording {rec}, which {scp} does not list")
    else:
        segs = {rec: (rec, None, None, "") for rec in wavs}
    texts = {k: v for k, (v, _) in read_table(folder / "text", "<transcript>").items()} if (folder / "text").is_file() else {}
    spks = {}
    if (folder / "utt2spk").is_file():
        for utt, (spk, n) in read_table(folder / "utt2spk", "<speaker>").items():
            if len(spk.split()) != 1:
                raise CodecError(f"{folder / 'utt2spk'}:{n}: expected '<utterance> <speaker>', got {utt} {spk!r}")
            spks[utt] = spk
    for name, table in (("text", texts), ("utt2spk", spks)):
        unknown = sorted(set(table) - set(segs))
        if unknown:
            what = "segments" if seg_path.is_file() else "wav.scp"
            raise CodecError(f"{folder / name}: {len(unknown)} utterance(s) not in {what}, e.g. {unknown[0]}; "
                             "the directory's files do not match (re-run the data preparation that made them)")
    return [
        KaldiUtterance(utt, wavs[rec], start, end, texts.get(utt), spks.get(utt, utt))
        for utt, (rec, start, end, _) in sorted(segs.items())
    ]


def _run_pipe(entry: WavEntry, cwd: Path) -> tuple[np.ndarray, int]:
    prog = entry.command[0]
    if shutil.which(prog) is None:
        raise CodecError(f"{entry.where}: the pipe needs {os.path.basename(prog)}, which is not installed; install it "
                         f"(e.g. apt-get install {os.path.basename(prog)}) or convert the audio to files")
    try:
        proc = subprocess.run(list(entry.command), cwd=cwd, capture_output=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CodecError(f"{entry.where}: the pipe failed ({err})") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CodecError(f"{entry.where}: the pipe exited with status {proc.returncode}"
                         f"{': ' + msg[-1] if msg else ''}; run it by hand to see why")
    try:
        sig, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise CodecError(f"{entry.where}: the pipe's output is not audio soundfile reads ({err}); make it write "
                         "WAV to stdout (sox ... -t wav -, ffmpeg ... -f wav -)") from None
    return sig, sr


def _write(path: Path, sig: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), sig, sr, format="WAV", subtype="PCM_16")


def materialise(utt: KaldiUtterance, folder: str | os.PathLike, base: str | os.PathLike | None = None) -> Path:
    """A readable audio file for ``utt`` (see the module docstring); ``base`` is the folder
    pipe commands run in (default: the folder of ``wav.scp``).

    Raises
    ------
    CodecError
        A missing recording, a pipe whose program is not installed or that fails, a segment
        outside its recording; each naming the ``wav.scp`` / ``segments`` line.
    """
    folder = Path(folder)
    entry = utt.wav
    cut = utt.start is not None
    if entry.path is not None and not cut:
        if not entry.path.is_file():
            raise CodecError(f"{entry.where}: {entry.path} does not exist; fix the path in wav.scp")
        return entry.path
    out = folder / f"{utt.utt_id if cut else entry.recording}.wav"
    if out.is_file():
        return out
    cwd = Path(base) if base is not None else Path(entry.where.rsplit(":", 1)[0]).parent
    if entry.path is not None:
        if not entry.path.is_file():
            raise CodecError(f"{entry.where}: {entry.path} does not exist; fix the path in wav.scp")
        try:
            info = sf.info(str(entry.path))
        except (sf.LibsndfileError, RuntimeError) as err:
            raise CodecError(f"{entry.path}: unreadable audio ({err})") from None
        sr, frames = info.samplerate, info.frames
        sig = None
    else:
        full = folder / f"{entry.recording}.wav"
        if full.is_file():
            sig, sr = sf.read(str(full), dtype="float32", always_2d=True)
        else:
            sig, sr = _run_pipe(entry, cwd)
            if cut:  # keep the whole recording once: its other segments reuse it
                _write(full, sig, sr)
        frames = len(sig)
        if not cut:
            _write(out, sig, sr)
            return out
    start = int(round(utt.start * sr))
    stop = frames if utt.end is None else int(round(utt.end * sr))
    if start >= frames or stop > frames + int(0.01 * sr):
        raise CodecError(f"segment {utt.utt_id}: {utt.start}-{utt.end} s is outside recording {entry.recording} "
                         f"({frames / sr:.3f} s, {entry.where}); fix the segments file")
    stop = min(stop, frames)
    if sig is None:
        sig, _ = sf.read(str(entry.path), start=start, stop=stop, dtype="float32", always_2d=True)
    else:
        sig = sig[start:stop]
    _write(out, sig, sr)
    return out
