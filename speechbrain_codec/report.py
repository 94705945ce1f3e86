"""Markdown tables generated from ``results.json`` (never typed by hand)."""

from __future__ import annotations

import json
import os

from .utils import atomic_write_text

__all__ = ["results_table", "main"]

COLUMNS = [
    ("System", None),
    ("Nominal b/s", "nominal_bitrate"),
    ("Payload b/s", "payload_bitrate"),
    ("File b/s", "file_bitrate"),
    ("PESQ-wb", "pesq_wb"),
    ("STOI", "stoi"),
    ("WER %", "wer"),
    ("dWER %", "dwer"),
    ("Utts", "utterances"),
]


def _fmt(key: str | None, value) -> str:
    if value is None:
        return "–"
    if key in ("wer", "dwer"):
        return f"{100 * value:.1f}"
    if key in ("pesq_wb",):
        return f"{value:.2f}"
    if key == "stoi":
        return f"{value:.3f}"
    if key and key.endswith("bitrate"):
        return f"{value:.0f}"
    return str(value)


def results_table(results: dict) -> str:
    """One row per system, in the order of ``results["systems"]``; a "Dedup b/s" column
    (variable-rate unit codecs) appears when a system reports it."""
    columns = list(COLUMNS)
    if any("dedup_bitrate" in e["summary"] for e in results["systems"].values()):
        columns.insert(4, ("Dedup b/s", "dedup_bitrate"))
    lines = ["| " + " | ".join(c for c, _ in columns) + " |", "|" + "---|" * len(columns)]
    for name, entry in results["systems"].items():
        s = entry["summary"]
        cells = [name] + [_fmt(k, s.get(k)) for _, k in columns[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="speechbrain-codec report")
    p.add_argument("results", help="results.json")
    p.add_argument("--out", help="Markdown file to write (printed in any case)")
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    table = results_table(results)
    notes = "\n".join(f"- {k}: {v}" for k, v in results.get("protocol", {}).items())
    text = f"{table}\n{notes}\n"
    if args.out:
        atomic_write_text(args.out, text)
    print(table)
    return 0
