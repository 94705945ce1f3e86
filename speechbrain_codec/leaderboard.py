"""One table and two Pareto plots from every recipe's ``results.json``, beside the published points.

``speechbrain-codec leaderboard results/*.json [DIR ...] [--out leaderboard.md] [--plots DIR]
[--json leaderboard.json] [--no-published]`` (also ``python -m speechbrain_codec.leaderboard``).
A folder is searched for ``results*.json``. Every system of every file is a row that says its
source (the recipe folder), its kind (ours, classical baseline, the original, published), its
protocol (the ``--protocol`` preset, ``*`` when an option modified it, else the ASR it was
scored with) and its test set. Rows are grouped by protocol: one section, one set of columns per
protocol, so numbers of different protocols never share a column; the published points
(:mod:`speechbrain_codec.published_points`, each citing its spec section) appear in their
protocol's section. Each row has its bitrate band (<= 0.3, 0.3-0.7, 0.7-1.0, > 1.0 kb/s).

Plots: ``leaderboard_intelligibility.png`` (bitrate versus the protocol's intelligibility
metric: dWER, else dWER_utt / dCER_utt / median WER / WER; lower is better) and
``leaderboard_quality.png`` (bitrate versus UTMOS / MOS / DNSMOS / PESQ / STOI / MUSHRA; higher
is better), one panel per protocol, bands shaded, published points hollow, the Pareto front
(no other point is both cheaper and better) drawn through the points it holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .report import PERCENT, _rate
from .utils import CodecError, atomic_write_json, atomic_write_text, one_line_errors, save_png

__all__ = ["collect", "band", "pareto_front", "leaderboard_table", "plot_leaderboard", "main", "BANDS"]

BANDS = [(300.0, "<= 0.3 kb/s"), (700.0, "0.3-0.7 kb/s"), (1000.0, "0.7-1.0 kb/s"), (float("inf"), "> 1.0 kb/s")]
# the columns a section may show, in this order (lower-is-better first)
INTEL = ["dwer", "dwer_utt", "dcer_utt", "wer_median", "wer", "cer"]
QUALITY = ["utmos", "mos_q", "dnsmos_ovrl", "dnsmos", "pesq_wb", "pesq_nb", "stoi", "spk_sim", "mushra", "semantic_mos"]
HEADERS = {"dwer": "dWER %", "dwer_utt": "dWER_utt %", "dcer_utt": "dCER_utt %", "wer_median": "median WER %",
           "wer": "WER %", "cer": "CER %", "utmos": "UTMOS", "mos_q": "MOS_Q", "dnsmos_ovrl": "DNSMOS ovrl",
           "dnsmos": "DNSMOS", "pesq_wb": "PESQ-wb", "pesq_nb": "PESQ-nb", "stoi": "STOI", "spk_sim": "Spk sim",
           "mushra": "MUSHRA", "semantic_mos": "semantic MOS"}
BASELINE_PREFIXES = ("codec2", "opus")


def band(rate: float | None) -> str:
    """The bitrate band of a rate in b/s.

    >>> band(137.5), band(300), band(550), band(798), band(5387)
    ('<= 0.3 kb/s', '<= 0.3 kb/s', '0.3-0.7 kb/s', '0.7-1.0 kb/s', '> 1.0 kb/s')
    """
    if rate is None:
        return "–"
    return next(name for top, name in BANDS if rate <= top)


def pareto_front(points: list[tuple[float, float]], lower_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both bitrate and metric, by bitrate.

    >>> pareto_front([(100, 0.3), (200, 0.1), (150, 0.4), (300, 0.1)])
    [0, 1]
    """
    sign = 1 if lower_is_better else -1
    order = sorted(range(len(points)), key=lambda i: (points[i][0], sign * points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if sign * points[i][1] < best:
            front.append(i)
            best = sign * points[i][1]
    return front


def _source(path: Path) -> str:
    parts = path.resolve().parts
    if "exp" in parts:
        i = len(parts) - 1 - parts[::-1].index("exp")
        parts = parts[:i]
    else:
        parts = path.resolve().parent.parts
    if "recipes" in parts:
        return "/".join(parts[parts.index("recipes") + 1:]) or path.parent.name
    return "/".join(parts[-2:])


def _protocol_of(results: dict) -> tuple[str, str]:
    proto = results.get("protocol", {})
    preset = proto.get("preset")
    if preset:
        name = preset["name"] + ("*" if preset.get("modified") else "")
        title = preset["title"] + (f" — modified: {', '.join(preset['modified'])}" if preset.get("modified") else "")
        return name, title
    asrs = proto.get("asrs") or [proto.get("asr", "none")]
    return f"custom ({', '.join(asrs)})", "no --protocol preset: compare within this section only"


def _files(paths: list[str]) -> list[Path]:
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += sorted(path.rglob("results*.json"))
        elif path.is_file():
            out.append(path)
        else:
            raise CodecError(f"{p}: no such results file or folder (run a recipe's evaluate stage first)")
    return out


def collect(paths: list[str], published: bool = True) -> list[dict]:
    """Every system of every results file (and the published points) as leaderboard rows."""
    from .published_points import points

    rows = []
    for path in _files(paths):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise CodecError(f"{path}: not readable as JSON ({err})") from err
        if not isinstance(results, dict) or "systems" not in results:
            raise CodecError(f"{path}: not a results.json of speechbrain-codec evaluate (no 'systems')")
        protocol, title = _protocol_of(results)
        test_set = results.get("test_set") or Path(results.get("manifest", "?")).name
        for name, entry in results["systems"].items():
            s = entry["summary"]
            kind = "original" if name == "original" else "baseline" if name.lower().startswith(BASELINE_PREFIXES) else "ours"
            metrics = {k: s[k] for k in INTEL + QUALITY if s.get(k) is not None}
            rows.append({"system": name, "source": _source(path), "file": str(path), "kind": kind,
                         "protocol": protocol, "protocol_title": title, "test_set": test_set,
                         "bitrate": None if kind == "original" else _rate(s), "metrics": metrics,
                         "ci95": {k: v for k, v in s.get("ci95", {}).items() if k in metrics},
                         "failed": s.get("failed", 0), "utterances": s.get("utterances")})
    if published:
        for p in points():
            rows.append({"system": p["system"], "source": p["source"], "file": None, "kind": p["kind"],
                         "protocol": p["protocol"], "protocol_title": p["protocol"], "test_set": p["test_set"],
                         "bitrate": p["bitrate"], "metrics": p["metrics"], "ci95": {}, "note": p.get("note", ""),
                         "failed": 0, "utterances": None, "published": True})
    return rows


def _fmt(key: str, value, ci=None) -> str:
    if value is None:
        return "–"
    scale = 100 if key in PERCENT else 1
    decimals = 1 if key in PERCENT or key in ("mushra",) else 3 if key in ("stoi", "spk_sim") else 2
    text = f"{scale * value:.{decimals}f}"
    if ci:
        text += f" ({scale * ci[0]:.{decimals}f}–{scale * ci[1]:.{decimals}f})"
    return text


def _sections(rows: list[dict]) -> dict[str, list[dict]]:
    sections: dict[str, list[dict]] = {}
    for row in rows:
        sections.setdefault(row["protocol"], []).append(row)
    for items in sections.values():
        items.sort(key=lambda r: (r["bitrate"] is None, r["bitrate"] or 0.0, r["kind"] != "ours", r["system"]))
    return sections


def leaderboard_table(rows: list[dict]) -> str:
    """Markdown: one section per protocol, rows by bitrate."""
    out = ["# Leaderboard", "",
           "Rows of different protocols are in different sections: their numbers are not comparable. "
           "(a–b): bootstrap 95 % interval over utterances; published rows cite the spec section they come from.", ""]
    for protocol, items in _sections(rows).items():
        keys = [k for k in INTEL + QUALITY if any(k in r["metrics"] for r in items)]
        out += [f"## {protocol}", "", f"{items[0]['protocol_title']}", ""]
        header = ["System", "Kind", "Source", "Test set", "Band", "Bitrate b/s", *(HEADERS[k] for k in keys)]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        notes = []
        for r in items:
            name = r["system"] + (f" ({r['failed']} failed: worst values)" if r.get("failed") else "")
            if r.get("note"):
                notes.append(f"- {r['system']}: {r['note']}")
            rate = "–" if r["bitrate"] is None else f"{r['bitrate']:.1f}"
            cells = [name, r["kind"], r["source"], r["test_set"], band(r["bitrate"]), rate,
                     *(_fmt(k, r["metrics"].get(k), r["ci95"].get(k)) for k in keys)]
            out.append("| " + " | ".join(cells) + " |")
        if notes:
            out += ["", *dict.fromkeys(notes)]
        out.append("")
    return "\n".join(out)


def _panel_key(items: list[dict], keys: list[str]) -> str | None:
    return next((k for k in keys if any(k in r["metrics"] and r["bitrate"] for r in items)), None)


def plot_leaderboard(rows: list[dict], folder: str | os.PathLike) -> list[Path]:
    """``leaderboard_intelligibility.png`` and ``leaderboard_quality.png`` in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    sections = _sections(rows)
    for filename, keys, lower in (("leaderboard_intelligibility.png", INTEL, True),
                                  ("leaderboard_quality.png", QUALITY, False)):
        panels = [(p, items, _panel_key(items, keys)) for p, items in sections.items()]
        panels = [x for x in panels if x[2]]
        fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4), squeeze=False)
        for ax, (protocol, items, key) in zip(axes[0], panels):
            pts = [r for r in items if r["bitrate"] and key in r["metrics"]]
            scale = 100 if key in PERCENT else 1
            for i, (lo, top) in enumerate(zip([50.0, 300.0, 700.0], [300.0, 700.0, 1000.0])):
                ax.axvspan(lo, top, alpha=0.05 + 0.05 * (i % 2), color="grey")
            for r in pts:
                y = scale * r["metrics"][key]
                published = r.get("published")
                ax.scatter(r["bitrate"], y, facecolors="none" if published else None,
                           edgecolors="C1" if published else None, color=None if published else
                           ("C2" if r["kind"] == "baseline" else "C0"), marker="o" if r["kind"] != "baseline" else "s")
                ax.annotate(r["system"] + (" (published)" if published else ""), (r["bitrate"], y),
                            textcoords="offset points", xytext=(3, 3), fontsize=6)
            front = [pts[i] for i in pareto_front([(r["bitrate"], r["metrics"][key]) for r in pts], lower)]
            if len(front) > 1:
                ax.step([r["bitrate"] for r in front], [scale * r["metrics"][key] for r in front], where="post",
                        color="k", linewidth=0.8, label="Pareto front")
                ax.legend(fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel("bitrate (b/s); bands 0.3 / 0.7 / 1.0 kb/s")
            ax.set_ylabel(HEADERS[key])
            ax.set_title(protocol, fontsize=9)
            ax.grid(True, alpha=0.3)
        fig.tight_layout()
        save_png(fig, folder / filename)
        written.append(folder / filename)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="speechbrain-codec leaderboard", description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", help="results.json files and/or folders searched for results*.json")
    p.add_argument("--out", help="Markdown file to write (printed in any case)")
    p.add_argument("--plots", help="folder for the two Pareto plots (PNG)")
    p.add_argument("--json", help="the rows as JSON")
    p.add_argument("--no-published", action="store_true", help="leave out the published points")
    args = p.parse_args(argv)
    rows = collect(args.results, published=not args.no_published)
    if not any(r["file"] for r in rows):
        raise CodecError("no results.json found in " + ", ".join(args.results))
    table = leaderboard_table(rows)
    if args.out:
        atomic_write_text(args.out, table)
    if args.json:
        atomic_write_json(args.json, rows)
    if args.plots:
        for path in plot_leaderboard(rows, args.plots):
            print(f"plot: {path}")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(one_line_errors(main)())
