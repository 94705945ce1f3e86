"""Tables and plots generated from ``results.json`` (never typed by hand).

``speechbrain-codec report results.json [--format default|focalcodec_s|lmloss|dpslm]
[--out table.md] [--plots DIR]``. The default table shows every metric present in the results;
the presets follow the column layouts of the papers the recipes reproduce. Plots (PNG):
dWER (or dCER) versus bitrate, as DP-SLM draws it, and PESQ / STOI versus bitrate.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .utils import atomic_write_text, save_png

__all__ = ["results_table", "plot_results", "merge_results", "protocol_caption", "paired_table", "main", "FORMATS"]

PERCENT = {"wer", "dwer", "cer", "dcer", "dwer_utt", "dcer_utt", "wer_median", "cer_median", "voicing_error"}
INTEL = ("wer", "dwer", "cer", "dcer", "dwer_utt", "dcer_utt", "wer_median", "cer_median")
NO_CI = {"nominal_bitrate", "payload_bitrate", "side_info_bitrate", "side_info_bits", "file_bitrate", "dedup_bitrate",
         "encode_rtf", "decode_rtf", "utterances", "stage", "frame_rate", "_rate"}
SIDE_INFO = {"side_info_bitrate", "side_info_bits"}
# (header, summary key, decimals); the default table keeps the columns present in the results
# (side information: where some system sends any; its rate is part of the payload rate)
DEFAULT = [
    ("System", None, 0), ("Nominal b/s", "nominal_bitrate", 0), ("Payload b/s", "payload_bitrate", 0),
    ("Side info b/s", "side_info_bitrate", 1), ("Side info bits/utt", "side_info_bits", 0),
    ("File b/s", "file_bitrate", 0), ("Dedup b/s", "dedup_bitrate", 0),
    ("PESQ-wb", "pesq_wb", 2), ("PESQ-nb", "pesq_nb", 2), ("STOI", "stoi", 3), ("ESTOI", "estoi", 3),
    ("WARP-Q", "warpq", 2), ("F0 RMSE Hz", "f0_rmse", 1), ("V/UV err %", "voicing_error", 1),
    ("Spk sim", "spk_sim", 3), ("DNSMOS", "dnsmos_ovrl", 2), ("PLCMOS", "plcmos", 2), ("UTMOS", "utmos", 2),
    ("WER %", "wer", 1), ("dWER %", "dwer", 1), ("CER %", "cer", 1), ("dCER %", "dcer", 1),
    ("dWER_utt %", "dwer_utt", 1), ("dCER_utt %", "dcer_utt", 1),
    ("Enc RTF", "encode_rtf", 3), ("Dec RTF", "decode_rtf", 3), ("Utts", "utterances", 0),
]
FORMATS = {
    "default": DEFAULT,
    # FocalCodec: UTMOS, dWER (Whisper-large-v3), Sim (WavLM-base-sv)
    "focalcodec": [("System", None, 0), ("Bitrate (b/s)", "_rate", 1), ("UTMOS", "utmos", 2), ("dWER %", "dwer", 2),
                   ("Sim", "spk_sim", 3)],
    # LLaSA / XCodec2 codec table: WER, STOI, PESQ-NB, PESQ-WB, SPK-SIM, UTMOS
    "llasa": [("System", None, 0), ("Bitrate (b/s)", "_rate", 1), ("WER %", "wer", 2), ("STOI", "stoi", 3),
              ("PESQ-NB", "pesq_nb", 2), ("PESQ-WB", "pesq_wb", 2), ("SPK-SIM", "spk_sim", 3), ("UTMOS", "utmos", 2)],
    # FocalCodec-S bilingual fine-tuning: Exp | Stage | Freq | Bitrate | dCER | MOS | PESQ | STOI
    # (dCER / dWER per utterance against the ground truth, as the seed's; then ours, corpus-level)
    "focalcodec_s": [("Exp", None, 0), ("Stage", "stage", 0), ("Freq (Hz)", "frame_rate", 1),
                     ("Bitrate (b/s)", "nominal_bitrate", 1), ("dCER %", "dcer_utt", 2), ("dWER %", "dwer_utt", 2),
                     ("MOS", "_mos", 2), ("PESQ", "pesq_wb", 2), ("STOI", "stoi", 3),
                     ("CER %", "cer", 1), ("WER %", "wer", 1)],
    # LM-loss codec: WER, PESQ, WARP-Q per configuration
    "lmloss": [("System", None, 0), ("Bitrate (b/s)", "nominal_bitrate", 1), ("WER %", "wer", 1),
               ("PESQ", "pesq_wb", 2), ("WARP-Q", "warpq", 3), ("STOI", "stoi", 3)],
    # DP-SLM: bitrate after dedup against dWER
    # (R x H: the deduplicated units; the payload also holds the run lengths where a codec sends them)
    "dpslm": [("System", None, 0), ("Bitrate (b/s)", "_rate", 1), ("Payload b/s", "payload_bitrate", 1),
              ("median WER %", "wer_median", 2), ("dWER %", "dwer", 1), ("WER %", "wer", 1)],
}


def _value(summary: dict, key: str):
    if key == "_mos":  # UTMOS where measured, else DNSMOS overall (the table notes which)
        return summary.get("utmos", summary.get("dnsmos_ovrl"))
    if key == "_rate":
        return _rate(summary)
    return summary.get(key)


def _rate(summary: dict):
    """The bitrate a system is placed at: after dedup, else payload, else nominal."""
    for key in ("dedup_bitrate", "payload_bitrate", "nominal_bitrate"):
        if summary.get(key) is not None:
            return summary[key]
    return None


def _fmt(key: str | None, value, decimals: int, ci=None) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    scale = 100 if key in PERCENT else 1
    text = f"{scale * value:.{decimals}f}" if decimals else f"{value:.0f}" if isinstance(value, float) else str(value)
    if ci:
        text += f" ({scale * ci[0]:.{max(decimals, 1)}f}–{scale * ci[1]:.{max(decimals, 1)}f})"
    return text


def _asr_columns(results: dict) -> tuple[list[str], set[str]]:
    """The ASR labels of the run (primary first) and those the systems trained against."""
    proto = results.get("protocol", {})
    labels = list(proto.get("asr_labels") or [])
    for entry in results["systems"].values():
        for label in entry["summary"].get("by_asr", {}):
            if label not in labels:
                labels.append(label)
    trained = {label for e in results["systems"].values() for label, v in e["summary"].get("by_asr", {}).items()
               if v.get("trained_against")}
    if not trained and proto.get("training_asrs") and proto.get("independent_asrs") is not None:
        trained = {lab for lab in labels if lab not in proto["independent_asrs"]}
    return labels, trained


def _cell_value(summary: dict, key: str, label: str | None, primary: bool):
    if key in INTEL and label is not None and not primary:
        entry = summary.get("by_asr", {}).get(label, {})
        return entry.get(key), entry.get("ci95", {}).get(key)
    value = _value(summary, key)
    ci_key = {"_mos": "utmos" if "utmos" in summary else "dnsmos_ovrl"}.get(key, key)
    return value, summary.get("ci95", {}).get(ci_key)


def results_table(results: dict, fmt: str = "default", ci: bool = True) -> str:
    """One row per system, in the order of ``results["systems"]``; each mean with its bootstrap
    95 % interval (``ci``), intelligibility columns per ASR, the protocol under the table."""
    columns = FORMATS[fmt]
    systems = results["systems"]
    if fmt == "default":
        present = {k for e in systems.values() for k, v in e["summary"].items()
                   if v is not None and not (k in SIDE_INFO and not v)}
        present |= {k for e in systems.values() for v in e["summary"].get("by_asr", {}).values()
                    for k, x in v.items() if x is not None}
        columns = [c for c in columns if c[1] is None or c[1] in present]
    labels, trained = _asr_columns(results)
    spk = results.get("protocol", {}).get("speaker_model")
    expanded = []  # (header, key, decimals, asr label, primary)
    for header, key, decimals in columns:
        if key in INTEL and labels:
            for i, label in enumerate(labels):
                mark = "†" if label in trained else ""
                expanded.append((f"{header} [{label}{mark}]", key, decimals, label, i == 0))
        elif key == "spk_sim" and spk:
            expanded.append((f"{header} [{spk.split(' (')[0]}]", key, decimals, None, True))
        else:
            expanded.append((header, key, decimals, None, True))
    lines = ["| " + " | ".join(c[0] for c in expanded) + " |", "|" + "---|" * len(expanded)]
    for name, entry in systems.items():
        s = entry["summary"]
        label = name
        if s.get("failed"):
            label += f" ({s['failed']} of {s.get('utterances', '?')} failed: worst values)"
        cells = [label]
        for _, key, decimals, asr, primary in expanded[1:]:
            value, interval = _cell_value(s, key, asr, primary)
            cells.append(_fmt(key, value, decimals, interval if ci and key not in NO_CI else None))
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if fmt == "focalcodec_s":
        mos = "UTMOS" if any("utmos" in e["summary"] for e in systems.values()) else "DNSMOS P.835 overall"
        notes.append(f"MOS = {mos}.")
    if trained:
        notes.append(f"† the ASR the systems trained against ({', '.join(sorted(trained))}): not an independent check.")
    incomplete = {name: e["summary"]["incomplete"] for name, e in systems.items() if e["summary"].get("incomplete")}
    if incomplete:
        notes.append("Incomplete (utterances without a value, not in that mean): " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {n}" for k, n in inc.items()) for name, inc in incomplete.items()))
    if ci:
        notes.append("(a–b): bootstrap 95 % interval over utterances.")
    caption = protocol_caption(results)
    out = "\n".join(lines) + "\n"
    if notes or caption:
        out += "\n" + "\n".join([*notes, caption]).strip() + "\n"
    return out


def protocol_caption(results: dict) -> str:
    """One line naming the protocol: preset (and what was modified), ASRs, models, test set."""
    proto = results.get("protocol", {})
    preset = proto.get("preset")
    parts = []
    if preset:
        text = f"Protocol: {preset['name']} ({preset['title']}; {preset['source']})"
        if preset.get("modified"):
            text += " MODIFIED: " + ", ".join(f"{k}={v}" for k, v in preset["modified"].items())
        parts.append(text)
    else:
        parts.append("Protocol: custom (no --protocol preset)")
    if proto.get("asrs"):
        parts.append("ASR " + ", ".join(proto["asrs"]))
    if proto.get("normaliser"):
        parts.append("normaliser " + proto["normaliser"].split(":")[0])
    if proto.get("speaker_model"):
        parts.append("speaker " + proto["speaker_model"])
    if proto.get("mos_predictor"):
        parts.append("MOS " + proto["mos_predictor"])
    if results.get("test_set"):
        parts.append("test set " + results["test_set"])
    return "; ".join(parts) + "."


def paired_table(results: dict, keys: set[str] | None = None) -> str:
    """The paired tests (first system against each other one) as a Markdown table."""
    rows = [t for t in results.get("paired", []) if keys is None or t["metric"].split(" [")[0] in keys]
    if not rows:
        return ""
    lines = ["| A | B | metric | A − B (95 % CI) | p (paired bootstrap) | p (Wilcoxon signed-rank) | utts |",
             "|---|---|---|---|---|---|---|"]
    for t in rows:
        key = t["metric"].split(" [")[0]
        d = _fmt(key, t["difference"], 3 if key not in PERCENT else 1, t["ci95"])
        pw = "–" if t.get("p_wilcoxon") is None else f"{t['p_wilcoxon']:.3g}"
        pb = f"{t['p_bootstrap']:.3g}" if t["p_bootstrap"] > 0 else f"< {1 / t.get('resamples', 1000):.3g}"
        lines.append(f"| {t['a']} | {t['b']} | {t['metric']} | {d} | {pb} | {pw} | {t['utterances']} |")
    return "\n".join(lines) + "\n"


def merge_results(runs: list[dict]) -> dict:
    """Results of the same systems on the same manifest, one file per ASR, as one: the first
    file's summaries, each file's intelligibility under ``by_asr[<its ASR>]``."""
    from .utils import CodecError

    base = json.loads(json.dumps(runs[0]))
    if len(runs) == 1:
        return base
    labels = []
    for run in runs:
        if set(run["systems"]) != set(base["systems"]) or run.get("manifest") != base.get("manifest"):
            raise CodecError("report: the results files score different systems or manifests; merge only one "
                             "evaluation's files (one per ASR)")
        for i, label in enumerate(run.get("protocol", {}).get("asr_labels") or []):
            if label in labels:
                continue
            labels.append(label)
            for name, entry in run["systems"].items():
                s = entry["summary"]
                src = s.get("by_asr", {}).get(label) if s.get("by_asr") else None
                if src is None and i == 0:
                    src = {k: s.get(k) for k in INTEL}
                    src["ci95"] = {k: v for k, v in s.get("ci95", {}).items() if k in INTEL}
                base["systems"][name]["summary"].setdefault("by_asr", {})[label] = src
    trained = {a for run in runs for a in run.get("protocol", {}).get("training_asrs", [])}
    proto = base["protocol"]
    proto["asr_labels"] = labels
    proto["asrs"] = [a for run in runs for a in run.get("protocol", {}).get("asrs", [])]
    proto["training_asrs"] = sorted(trained)
    proto["independent_asrs"] = [lab for run in runs for lab in run.get("protocol", {}).get("independent_asrs", labels)
                                 if lab in labels]
    for name in base["systems"]:
        for label, entry in base["systems"][name]["summary"].get("by_asr", {}).items():
            entry["trained_against"] = bool(trained) and label not in proto["independent_asrs"]
    base["paired"] = list(runs[0].get("paired", []))
    for run in runs[1:]:  # the other files' tests of their ASR's metrics, named by the ASR
        label = (run.get("protocol", {}).get("asr_labels") or ["?"])[0]
        base["paired"] += [dict(t, metric=f"{t['metric']} [{label}]") for t in run.get("paired", [])
                           if t["metric"] in INTEL]
    return base


def plot_results(results: dict, folder: str | os.PathLike) -> list[Path]:
    """Write ``intelligibility_vs_bitrate.png`` and ``quality_vs_bitrate.png``; returns paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(name, _rate(e["summary"]), e["summary"]) for name, e in results["systems"].items()]
    points = [p for p in points if p[1]]
    folder = Path(folder)
    written = []
    intel = "dwer" if any(s.get("dwer") is not None for _, _, s in points) else "dcer"
    panels = [("intelligibility_vs_bitrate.png", [(intel, f"{intel[1:].upper()} vs original (d{intel[1:].upper()}, %)")]),
              ("quality_vs_bitrate.png", [("pesq_wb", "PESQ-wb"), ("stoi", "STOI")])]
    for filename, metrics in panels:
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
        for ax, (key, label) in zip(axes[0], metrics):
            for name, rate, s in points:
                if s.get(key) is None:
                    continue
                y = 100 * s[key] if key in PERCENT else s[key]
                ax.scatter(rate, y)
                ax.annotate(name, (rate, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xscale("log")
            ax.set_xlabel("bitrate (b/s; after dedup where variable)")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        fig.tight_layout()
        save_png(fig, folder / filename)
        written.append(folder / filename)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .utils import CodecError

    p = argparse.ArgumentParser(prog="speechbrain-codec report")
    p.add_argument("results", nargs="+", help="results.json (several: one evaluation per ASR, merged)")
    p.add_argument("--format", default=None, choices=sorted(FORMATS),
                   help="column layout (default: the evaluation protocol's, else default)")
    p.add_argument("--out", help="Markdown file to write (printed in any case)")
    p.add_argument("--plots", help="folder for PNG plots")
    p.add_argument("--no-ci", action="store_true", help="means only, without their bootstrap intervals")
    args = p.parse_args(argv)
    runs = []
    for path in args.results:
        try:
            with open(path, encoding="utf-8") as f:
                runs.append(json.load(f))
        except (OSError, json.JSONDecodeError) as err:
            raise CodecError(f"{path}: cannot read results ({err}); run the evaluate stage first") from err
        if "systems" not in runs[-1]:
            raise CodecError(f"{path}: not a results.json of speechbrain-codec evaluate (no 'systems')")
    results = merge_results(runs)
    fmt = args.format or (results.get("protocol", {}).get("preset") or {}).get("report_format") or "default"
    table = results_table(results, fmt, ci=not args.no_ci)
    shown = {k for _, k, _ in FORMATS[fmt] if k}
    paired = paired_table(results, shown | {"pesq_wb", "stoi"} if fmt == "default" else shown)
    notes = "\n".join(f"- {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}"
                      for k, v in results.get("protocol", {}).items())
    text = table + (f"\nPaired tests:\n\n{paired}" if paired else "")
    if args.out:
        atomic_write_text(args.out, f"{text}\n{notes}\n")
    if args.plots:
        for path in plot_results(results, args.plots):
            print(f"plot: {path}")
    print(text)
    return 0
