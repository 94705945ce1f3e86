"""Listening tests with webMUSHRA: stimuli and configurations in, mean ± 95% CI tables out.

``make`` draws items with a seeded generator from the IDs all systems share (sorted first, so
the draw is portable), loudness-normalises every clip to the same integrated loudness (ITU-R
BS.1770 via pyloudnorm; -24 LUFS by default, as the LM-loss paper), writes dual-mono 16-bit
stereo WAVs (what the browser player needs) and a webMUSHRA YAML:

* ``mushra``: per item one MUSHRA page (ITU-R BS.1534): the original as open reference (webMUSHRA
  adds the hidden reference itself), every system, and low-pass anchors (3.5 kHz by default)
  written as files, so the anchors are part of the stimuli set and reproducible;
* ``semantic``: per item one ``likert_multi_stimulus`` page showing the transcript, with the
  original and every system unlabeled, rated on the LM-loss paper's 7-point "does the speech
  match the text" scale.

Trial pages sit in a ``random`` block. ``parse`` reads webMUSHRA's ``mushra.csv`` / ``lms.csv``
and writes per-system mean ± 95% confidence intervals (t distribution over ratings), optionally
after BS.1534 post-screening (listeners who rate the hidden reference below 90 in more than 15%
of trials are excluded).
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import numpy as np

from .utils import CodecError, atomic_path, atomic_write_json, atomic_write_text, save_png

__all__ = ["make_test", "parse_results", "SEMANTIC_SCALE", "main"]

SEMANTIC_SCALE = [
    (1, "None of the words match the text"),
    (2, "Many words do not match"),
    (3, ""),
    (4, "Some sounds are missing or swapped"),
    (5, ""),
    (6, "The words match, some pronunciations are odd"),
    (7, "Matches the text perfectly"),
]


def _normalised(sig: np.ndarray, sr: int, lufs: float) -> np.ndarray:
    import pyloudnorm

    if len(sig) >= int(0.4 * sr) and np.any(sig):
        meter = pyloudnorm.Meter(sr)
        loudness = meter.integrated_loudness(sig)
        if np.isfinite(loudness):
            sig = pyloudnorm.normalize.loudness(sig, loudness, lufs)
    peak = np.max(np.abs(sig)) if len(sig) else 0.0
    return sig * (0.99 / peak) if peak > 0.99 else sig  # never clip: scale down instead


def _lowpass(sig: np.ndarray, sr: int, cutoff: float) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(8, cutoff, btype="low", fs=sr, output="sos")
    return sosfiltfilt(sos, sig)


def _write_dual_mono(path: Path, sig: np.ndarray, sr: int) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.stack([sig, sig], axis=1), sr, subtype="PCM_16", format="WAV")


def make_test(
    out_dir: str | os.PathLike,
    reference: str | os.PathLike,
    systems: dict[str, str | os.PathLike],
    kind: str = "mushra",
    n_items: int = 10,
    items: list[str] | None = None,
    seed: int = 42,
    lufs: float = -24.0,
    anchors: tuple[float, ...] = (3500.0,),
    texts: dict[str, str] | None = None,
    sample_rate: int = 16000,
    test_id: str | None = None,
    data_root: str | os.PathLike | None = None,
) -> Path:
    """Write stimuli under ``out_dir/resources`` and ``out_dir/<test_id>.yaml``; returns the yaml.

    ``reference`` is a folder of ``<ID>.wav`` or a manifest (its ``wav`` paths, with
    ``data_root``; its ``text`` fills ``texts`` when not given). Every system folder holds
    ``<ID>.wav``. Any rate and channel count is converted.
    The config's audio paths are ``configs/resources/...`` as webMUSHRA expects when
    ``out_dir`` is copied to its ``configs/`` folder.
    """
    import yaml

    from .dataio import load_audio

    if kind not in ("mushra", "semantic"):
        raise CodecError(f"unknown listening test kind {kind!r}: mushra or semantic")
    if Path(reference).is_file():
        from .dataio import read_manifest

        rows = read_manifest(reference, data_root)
        ref_paths = {uid: Path(r["wav"]) for uid, r in rows.items()}
        texts = texts or {uid: r.get("text", "") for uid, r in rows.items()}
    else:
        ref_paths = {p.stem: p for p in Path(reference).glob("*.wav")}
    ids = set(ref_paths)
    for name, folder in systems.items():
        ids &= {p.stem for p in Path(folder).glob("*.wav")}
    if items is None:
        if len(ids) < n_items:
            raise CodecError(f"only {len(ids)} items are decoded by every system; need {n_items}")
        items = random.Random(seed).sample(sorted(ids), n_items)
    missing = [i for i in items if i not in ids]
    if missing:
        raise CodecError(f"items {missing} are missing from the reference or a system folder")
    if kind == "semantic" and (texts is None or any(not texts.get(i) for i in items)):
        raise CodecError("a semantic test needs the transcript of every item (texts)")
    test_id = test_id or f"{kind}_test"
    out_dir = Path(out_dir)
    res = out_dir / "resources" / test_id

    def stimulus(name: str, item: str, sig: np.ndarray) -> str:
        path = res / name / f"{item}.wav"
        _write_dual_mono(path, _normalised(sig, sample_rate, lufs), sample_rate)
        return f"configs/resources/{test_id}/{name}/{item}.wav"

    pages = []
    volume_stimulus = None
    for item in items:
        ref = load_audio(ref_paths[item], sample_rate, notices=False).numpy().astype(np.float64)
        ref_path = stimulus("reference", item, ref)
        volume_stimulus = volume_stimulus or ref_path
        stimuli = {}
        for name, folder in systems.items():
            sig = load_audio(Path(folder) / f"{item}.wav", sample_rate, notices=False).numpy().astype(np.float64)
            stimuli[name] = stimulus(name, item, sig)
        if kind == "mushra":
            for cutoff in anchors:
                name = f"anchor{int(cutoff / 100)}"
                stimuli[name] = stimulus(name, item, _lowpass(ref, sample_rate, cutoff))
            pages.append({
                "type": "mushra", "id": f"trial_{item}", "name": "Overall similarity",
                "content": "Rate how similar each sample sounds to the reference (0: not similar at all, "
                           "100: sounds the same).",
                "showWaveform": False, "enableLooping": True, "reference": ref_path,
                "createAnchor35": False, "createAnchor70": False, "stimuli": stimuli,
            })
        else:
            stimuli = {"original": ref_path, **stimuli}
            pages.append({
                "type": "likert_multi_stimulus", "id": f"trial_{item}", "name": "Does the speech match the text?",
                "content": f"Text: <b>{texts[item]}</b><br>Rate only how well each sample matches the text, "
                           "ignoring audio quality and voice.",
                "mustRate": True, "mustPlayback": "ended", "stimuli": stimuli,
                "response": [{"value": v, "label": label or str(v)} for v, label in SEMANTIC_SCALE],
            })
    config = {
        "testname": f"{'MUSHRA overall similarity' if kind == 'mushra' else 'Semantic MOS'} ({test_id})",
        "testId": test_id, "bufferSize": 2048, "stopOnErrors": True, "showButtonPreviousPage": True,
        "remoteService": "service/write.php",
        "pages": [
            {"type": "generic", "id": "welcome", "name": "Welcome",
             "content": f"{len(items)} trials. Please use headphones in a quiet room."},
            {"type": "volume", "id": "volume", "name": "Volume", "content": "Set a comfortable level.",
             "stimulus": volume_stimulus, "defaultVolume": 0.5},
            ["random", *pages],
            {"type": "finish", "name": "Thank you", "content": "Thank you for taking part.",
             "showResults": False, "writeResults": True,
             "questionnaire": [{"type": "text", "label": "Participant code", "name": "code"}]},
        ],
    }
    yaml_path = out_dir / f"{test_id}.yaml"
    atomic_write_text(yaml_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    atomic_write_json(out_dir / f"{test_id}.items.json",
                      {"items": items, "seed": seed, "lufs": lufs, "systems": list(systems), "kind": kind})
    return yaml_path


def _ci95(values: list[float]) -> tuple[float, float]:
    from scipy import stats

    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < 2:
        return float(arr.mean()), float("nan")
    half = stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    return float(arr.mean()), float(half)


def parse_results(csv_path: str | os.PathLike, screening: bool = False) -> dict:
    """Per-system mean ± 95% CI from webMUSHRA's ``mushra.csv`` or ``lms.csv``."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CodecError(f"{csv_path}: no such results file (webMUSHRA writes results/<testId>/mushra.csv or lms.csv)")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise CodecError(f"{csv_path}: no ratings")
    header = list(rows[0])
    if "rating_stimulus" in header:
        kind, stim_col, score_col = "mushra", "rating_stimulus", "rating_score"
    elif "stimuli_rating" in header:
        kind, stim_col, score_col = "semantic", "stimuli", "stimuli_rating"
    else:
        raise CodecError(f"{csv_path}: neither a webMUSHRA mushra.csv nor lms.csv (columns {header})")
    # listener = the participant fields between session_test_id and trial_id
    pcols = header[1 : header.index("trial_id")]
    listener = lambda r: "|".join(r[c] for c in pcols) or "anonymous"  # noqa: E731
    excluded: list[str] = []
    if screening and kind == "mushra":
        for who in sorted({listener(r) for r in rows}):
            ref = [float(r[score_col]) for r in rows if listener(r) == who and r[stim_col] == "reference"]
            if ref and np.mean(np.asarray(ref) < 90) > 0.15:
                excluded.append(who)
    scores: dict[str, list[float]] = {}
    for r in rows:
        if listener(r) in excluded:
            continue
        try:
            scores.setdefault(r[stim_col].strip(), []).append(float(str(r[score_col]).strip()))
        except ValueError:
            raise CodecError(f"{csv_path}: rating {r[score_col]!r} of {r[stim_col]} is not a number") from None
    systems = {}
    for name, vals in scores.items():
        mean, half = _ci95(vals)
        systems[name] = {"mean": mean, "ci95": half, "ratings": len(vals)}
    return {"kind": kind, "file": str(csv_path), "listeners": len({listener(r) for r in rows}) - len(excluded),
            "excluded_listeners": excluded, "systems": systems}


def results_markdown(summary: dict) -> str:
    scale = "0–100" if summary["kind"] == "mushra" else "1–7"
    lines = [f"| System | Mean ({scale}) | ± 95% CI | Ratings |", "|---|---|---|---|"]
    for name, s in sorted(summary["systems"].items(), key=lambda kv: -kv[1]["mean"]):
        lines.append(f"| {name} | {s['mean']:.2f} | {s['ci95']:.2f} | {s['ratings']} |")
    lines.append(f"\n{summary['listeners']} listeners" + (
        f"; excluded by BS.1534 post-screening: {', '.join(summary['excluded_listeners'])}" if summary["excluded_listeners"] else ""))
    return "\n".join(lines) + "\n"


def plot_listening(summary: dict, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(summary["systems"].items(), key=lambda kv: -kv[1]["mean"])
    fig, ax = plt.subplots(figsize=(1.2 * len(items) + 2, 4))
    ax.bar([k for k, _ in items], [v["mean"] for _, v in items],
           yerr=[0 if np.isnan(v["ci95"]) else v["ci95"] for _, v in items], capsize=4)
    ax.set_ylabel("MUSHRA score" if summary["kind"] == "mushra" else "semantic MOS (1–7)")
    ax.set_ylim(0, 100 if summary["kind"] == "mushra" else 7)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="speechbrain-codec listening", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="stimuli + webMUSHRA config")
    m.add_argument("out_dir")
    m.add_argument("--reference", required=True, help="folder of original <ID>.wav, or a manifest")
    m.add_argument("--data-root", help="{data_root} of the reference manifest")
    m.add_argument("--system", action="append", default=[], metavar="NAME=FOLDER", required=True)
    m.add_argument("--kind", default="mushra", choices=["mushra", "semantic"])
    m.add_argument("--items", type=int, default=10)
    m.add_argument("--item-list", help="file with one ID per line (instead of a seeded draw)")
    m.add_argument("--seed", type=int, default=42)
    m.add_argument("--lufs", type=float, default=-24.0)
    m.add_argument("--anchors", default="3500", help="comma-separated low-pass cut-offs in Hz ('' for none)")
    m.add_argument("--test-id")
    r = sub.add_parser("parse", help="webMUSHRA results CSV -> mean ± 95% CI")
    r.add_argument("csv")
    r.add_argument("--screening", action="store_true", help="ITU-R BS.1534 listener post-screening")
    r.add_argument("--out", help="folder for summary.json, summary.md, summary.png")
    args = p.parse_args(argv)
    if args.cmd == "make":
        systems = dict(s.split("=", 1) for s in args.system)
        items = Path(args.item_list).read_text().split() if args.item_list else None
        anchors = tuple(float(a) for a in args.anchors.split(",") if a.strip())
        path = make_test(args.out_dir, args.reference, systems, args.kind, args.items, items, args.seed,
                         args.lufs, anchors, None, test_id=args.test_id, data_root=args.data_root)
        print(f"wrote {path}; copy {args.out_dir} into webMUSHRA's configs/ and open ?config={path.name}")
        return 0
    summary = parse_results(args.csv, args.screening)
    text = results_markdown(summary)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "summary.json", summary)
        atomic_write_text(out / "summary.md", text)
        plot_listening(summary, out / "summary.png")
    print(text)
    return 0
