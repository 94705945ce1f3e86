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

from .utils import atomic_path, atomic_write_text

__all__ = ["results_table", "plot_results", "main", "FORMATS"]

PERCENT = {"wer", "dwer", "cer", "dcer", "dwer_utt", "dcer_utt", "voicing_error"}
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
    ("Enc RTF", "encode_rtf", 3), ("Dec RTF", "decode_rtf", 3), ("Utts", "utterances", 0),
]
FORMATS = {
    "default": DEFAULT,
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
              ("dWER %", "dwer", 1), ("WER %", "wer", 1)],
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


def _fmt(key: str | None, value, decimals: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if key in PERCENT:
        value = 100 * value
    return f"{value:.{decimals}f}" if decimals else f"{value:.0f}" if isinstance(value, float) else str(value)


def results_table(results: dict, fmt: str = "default") -> str:
    """One row per system, in the order of ``results["systems"]``."""
    columns = FORMATS[fmt]
    systems = results["systems"]
    if fmt == "default":
        present = {k for e in systems.values() for k, v in e["summary"].items()
                   if v is not None and not (k in SIDE_INFO and not v)}
        columns = [c for c in columns if c[1] is None or c[1] in present]
    lines = ["| " + " | ".join(c for c, _, _ in columns) + " |", "|" + "---|" * len(columns)]
    for name, entry in systems.items():
        s = entry["summary"]
        cells = [name] + [_fmt(k, _value(s, k), d) for _, k, d in columns[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    if fmt == "focalcodec_s":
        mos = "UTMOS" if any("utmos" in e["summary"] for e in systems.values()) else "DNSMOS P.835 overall"
        lines.append(f"\nMOS = {mos}.")
    return "\n".join(lines) + "\n"


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
        with atomic_path(folder / filename) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        written.append(folder / filename)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="speechbrain-codec report")
    p.add_argument("results", help="results.json")
    p.add_argument("--format", default="default", choices=sorted(FORMATS))
    p.add_argument("--out", help="Markdown file to write (printed in any case)")
    p.add_argument("--plots", help="folder for PNG plots")
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    table = results_table(results, args.format)
    notes = "\n".join(f"- {k}: {v}" for k, v in results.get("protocol", {}).items())
    if args.out:
        atomic_write_text(args.out, f"{table}\n{notes}\n")
    if args.plots:
        for path in plot_results(results, args.plots):
            print(f"plot: {path}")
    print(table)
    return 0
