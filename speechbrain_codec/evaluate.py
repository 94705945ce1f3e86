"""Evaluate decoded systems against a reference manifest and write ``results.json``.

For every system (a folder of ``<ID>.wav`` files, optionally with ``bitrate.json``) and every
utterance of the manifest: compensate the delay (log-mel envelope cross-correlation, refined on
the waveform), then PESQ wideband, STOI and, for English, pocketsphinx WER against the
ground-truth text and dWER against the transcript of the original. Problems with one utterance
(missing file, silent audio, missing transcript) are recorded for that utterance and the rest of
the evaluation completes. The reference itself is scored as the row ``original``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from .dataio import load_audio, read_manifest
from .metrics import PocketsphinxASR, align_delay, normalize_text, pesq_score, stoi_score, word_errors
from .utils import CodecError, atomic_write_json

__all__ = ["evaluate_systems", "PROTOCOL"]

logger = logging.getLogger("speechbrain_codec")

SAMPLE_RATE = 16000
PROTOCOL = {
    "sample_rate": SAMPLE_RATE,
    "alignment": "delay compensated per utterance: log-mel energy envelope cross-correlation "
    "(10 ms frames, +-250 ms), refined on the waveform within +-5 ms",
    "pesq": "ITU-T P.862.2 wideband (pesq package), mean over utterances",
    "stoi": "STOI (pystoi), mean over utterances",
    "asr": "pocketsphinx 5 en-us (English utterances only); hypothesis level-matched to the "
    "reference, 1e-4 dither, rounded to int16",
    "wer": "corpus WER against the ground-truth text; text case-folded, punctuation removed",
    "dwer": "corpus WER against the pocketsphinx transcript of the original",
    "bitrate": "nominal = frame rate x sum log2(codebook size); payload/file = measured bits / "
    "total duration",
}


def _score_one(ref: np.ndarray, deg: np.ndarray) -> dict:
    if np.max(np.abs(deg)) < 1e-6:
        raise CodecError("decoded audio is silent")
    r, d, delay = align_delay(ref, deg, SAMPLE_RATE)
    return {"delay": delay, "pesq": pesq_score(r, d, SAMPLE_RATE), "stoi": stoi_score(r, d, SAMPLE_RATE), "_aligned": (r, d)}


def evaluate_systems(
    manifest: str | os.PathLike,
    systems: dict[str, str | os.PathLike],
    data_root: str | os.PathLike | None = None,
    asr: bool = True,
) -> dict:
    """Score each system folder against the manifest; returns the results dictionary."""
    rows = read_manifest(manifest, data_root)
    recognizer = PocketsphinxASR() if asr else None
    results: dict = {"protocol": PROTOCOL, "manifest": str(manifest), "systems": {}}
    refs, ref_hyp = {}, {}
    for uid, row in rows.items():
        try:
            refs[uid] = load_audio(row["wav"], SAMPLE_RATE, notices=False).numpy()
        except CodecError as err:
            logger.warning("%s: reference unusable, skipped: %s", uid, err)
    for name, folder in [("original", None), *systems.items()]:
        t0 = time.time()
        per_utt: dict = {}
        errs = refs_n = derrs = drefs_n = 0
        for uid, ref in refs.items():
            row, entry = rows[uid], {}
            per_utt[uid] = entry
            try:
                deg = ref if folder is None else load_audio(Path(folder) / f"{uid}.wav", SAMPLE_RATE).numpy()
                scores = _score_one(ref, deg)
                r, d = scores.pop("_aligned")
                entry.update(scores)
            except (CodecError, ValueError, RuntimeError) as err:  # pesq raises RuntimeError subclasses
                entry["error"] = str(err)
                logger.warning("%s / %s: not scored: %s", name, uid, err)
                continue
            lang = row.get("lang", "en") or "en"
            if recognizer is None or not lang.startswith("en"):
                continue
            hyp = normalize_text(recognizer.transcribe(d, SAMPLE_RATE, level_ref=r))
            entry["hyp"] = hyp
            if folder is None:
                ref_hyp[uid] = hyp
            text = normalize_text(row.get("text") or "")
            if text:
                e, n = word_errors(text, hyp)
                entry["wer"] = e / n
                errs, refs_n = errs + e, refs_n + n
            else:
                entry["wer_note"] = "no transcript; WER skipped"
            if uid in ref_hyp and ref_hyp[uid]:
                e, n = word_errors(ref_hyp[uid], hyp)
                entry["dwer"] = e / n
                derrs, drefs_n = derrs + e, drefs_n + n
        scored = [u for u in per_utt.values() if "pesq" in u]
        summary = {
            "utterances": len(scored),
            "failed": len(per_utt) - len(scored),
            "pesq_wb": float(np.mean([u["pesq"] for u in scored])) if scored else None,
            "stoi": float(np.mean([u["stoi"] for u in scored])) if scored else None,
            "wer": errs / refs_n if refs_n else None,
            "dwer": derrs / drefs_n if drefs_n else None,
            "eval_seconds": round(time.time() - t0, 2),
        }
        if folder is not None and (Path(folder) / "bitrate.json").is_file():
            summary.update(json.loads((Path(folder) / "bitrate.json").read_text()))
        results["systems"][name] = {"summary": summary, "utterances": per_utt}
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="speechbrain-codec evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--system", action="append", default=[], metavar="NAME=FOLDER")
    p.add_argument("--no-asr", action="store_true")
    p.add_argument("--out", required=True, help="results.json to write")
    args = p.parse_args(argv)
    systems = {}
    for spec in args.system:
        name, sep, folder = spec.partition("=")
        if not sep:
            raise CodecError(f"--system {spec}: expected NAME=FOLDER")
        if not Path(folder).is_dir():
            raise CodecError(f"{folder}: system folder missing; run the stage that decodes {name}")
        systems[name] = folder
    results = evaluate_systems(args.manifest, systems, args.data_root, asr=not args.no_asr)
    atomic_write_json(args.out, results)
    return 0
