"""Word alignments of a manifest: ``<out>/<ID>.TextGrid`` per utterance (a ``words`` tier).

    python -m speechbrain_codec.bin.align --manifest exp/data/train.csv --data-root DATA --out exp/align \
        [--aligner auto|mfa|pocketsphinx|ctc:<hub id or folder>] [--text-column text]

``auto`` (default) runs Montreal Forced Aligner (``english_us_arpa`` acoustic model and dictionary,
as the LM-loss study) when ``mfa`` is on PATH, else the offline pocketsphinx aligner. Utterances
whose TextGrid exists are skipped (an interrupted run resumes); each file is written atomically.
An utterance without text stops the run with a message naming it. With the offline aligner, words
its dictionary lacks are left out of that utterance's alignment and listed in ``<out>/oov.json``
(Montreal Forced Aligner handles them with its G2P model).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ..alignment import CTCAligner, MFAAligner, PocketsphinxAligner, write_textgrid
from ..alignment import _clean_words as _clean
from ..dataio import load_audio, read_manifest
from ..utils import CodecError, atomic_write_json, one_line_errors


def choose(aligner: str):
    """The aligner of ``--aligner`` (``auto``: MFA when installed, else pocketsphinx)."""
    if aligner == "auto":
        aligner = "mfa" if shutil.which("mfa") else "pocketsphinx"
    if aligner == "mfa":
        return "mfa", MFAAligner()
    if aligner == "pocketsphinx":
        return aligner, PocketsphinxAligner()
    if aligner.startswith("ctc:"):
        return aligner, CTCAligner(aligner[4:])
    raise CodecError(f"--aligner {aligner}: auto, mfa, pocketsphinx or ctc:<hub id or folder>")


def align_manifest(manifest: str, data_root: str, out: str, aligner: str = "auto", text_column: str = "text") -> dict:
    """Align every utterance without a TextGrid yet; returns ``{"aligner", "aligned", "skipped"}``."""
    rows = read_manifest(manifest, data_root)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    todo = {u: r for u, r in rows.items() if not (folder / f"{u}.TextGrid").is_file()}
    for uid, row in todo.items():
        if not str(row.get(text_column, "")).strip():
            raise CodecError(f"{manifest}: utterance {uid} has no {text_column}; it cannot be aligned "
                             "(remove it from the manifest or add its transcript)")
    name, backend = choose(aligner)
    if name == "mfa" and todo:
        items = {}
        for uid, row in todo.items():
            sig = load_audio(row["wav"], 16000, notices=False).numpy()
            items[uid] = (sig, 16000, str(row[text_column]))
        with tempfile.TemporaryDirectory() as tmp:
            corpus = MFAAligner.prepare_corpus(Path(tmp) / "corpus", items)
            words = backend.run(corpus, Path(tmp) / "aligned")
        for uid, (sig, sr, _) in items.items():
            if uid not in words:
                raise CodecError(f"MFA gave no alignment for {uid} (out-of-vocabulary words or a bad clip); "
                                 "see MFA's log")
            write_textgrid(folder / f"{uid}.TextGrid", words[uid], len(sig) / sr)
    else:
        oov_file = folder / "oov.json"
        oov = json.loads(oov_file.read_text(encoding="utf-8")) if oov_file.is_file() else {}
        for uid, row in todo.items():
            sig = load_audio(row["wav"], 16000, notices=False).numpy()
            text = str(row[text_column])
            missing = backend.missing_words(text) if hasattr(backend, "missing_words") else []
            if missing:  # the offline dictionary lacks them: aligned without them, listed in oov.json
                oov[uid] = missing
                text = " ".join(w for w in _clean(text) if w not in set(missing))
                atomic_write_json(oov_file, oov)
            write_textgrid(folder / f"{uid}.TextGrid", backend.align(sig, 16000, text), len(sig) / 16000)
        if oov:
            print(f"{len(oov)} utterances have words the {name} dictionary lacks, left out of their alignments "
                  f"(listed in {oov_file}; MFA would align them)", file=sys.stderr)
    return {"aligner": name, "aligned": len(todo), "skipped": len(rows) - len(todo)}


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--aligner", default="auto")
    p.add_argument("--text-column", default="text")
    args = p.parse_args(argv)
    info = align_manifest(args.manifest, args.data_root, args.out, args.aligner, args.text_column)
    print(f"{args.out}: {info['aligned']} utterances aligned with {info['aligner']}, {info['skipped']} already done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
