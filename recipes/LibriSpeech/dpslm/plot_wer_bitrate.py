#!/usr/bin/env python3
"""DP-SLM's Figure 4 from a results.json: median per-utterance WER versus bitrate, one line per K
(lambda grows right to left), our pairs next to the paper's 24 points (published.json).

    python plot_wer_bitrate.py exp/results/results.json --published published.json --out exp/results

Reads, for every system of results.json whose summary has ``K`` and ``lambda`` (the facts the
resynthesis stage records in ``system.json``): ``bitrate`` (R.H, deduplicated units per second x
their unigram entropy), ``bitrate_bound`` (R.log2 K, what the plain .sbc costs), the .sbc file
and entropy-coded rates, ``wer_median``, ``wer`` (corpus) and ``dwer``. Writes
``wer_vs_bitrate.png`` and ``wer_vs_bitrate.md`` (our table, then the paper's), both from these
two JSON files only; ``wer_vs_bitrate.json`` holds the rows the two were drawn from.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechbrain_codec.utils import atomic_write_json, atomic_write_text, save_png


def _pct(x):
    """Error rates in results.json are fractions; the paper's in %."""
    return None if x is None else 100.0 * float(x)


def our_rows(results: dict) -> list[dict]:
    rows = []
    for name, system in results.get("systems", {}).items():
        s = system.get("summary", {})
        if "K" not in s or "lambda" not in s:
            continue
        rows.append({"system": name, "K": int(s["K"]), "lambda": float(s["lambda"]), "bitrate": s.get("bitrate"),
                     "bitrate_bound": s.get("bitrate_bound"), "units_per_second": s.get("units_per_second"),
                     "entropy_bits": s.get("entropy_bits"), "sbc_file_bitrate": s.get("sbc_file_bitrate"),
                     "sbc_entropy_payload_bitrate": s.get("sbc_entropy_payload_bitrate"),
                     "wer_median": _pct(s.get("wer_median")), "wer": _pct(s.get("wer")), "dwer": _pct(s.get("dwer")),
                     "ulm_nats_per_unit": s.get("ulm_nats_per_unit")})
    if not rows:
        raise SystemExit("error: no DP-SLM system (summary with K and lambda) in the results; run the evaluate stage")
    return sorted(rows, key=lambda r: (r["K"], r["lambda"]))


def _fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def table(rows: list[dict], published: list[dict], original: dict | None) -> str:
    out = ["# DP-SLM: WER versus bitrate", "",
           "Ours (this run; bitrate = R.H over the test clips' deduplicated units, bound = R.log2 K = the plain "
           ".sbc payload; WER in %, median per utterance as the paper, and corpus-level):", "",
           "| K | λ | R (units/s) | H (bits) | bitrate R·H (b/s) | bound R·log2 K (b/s) | .sbc file (b/s) | "
           ".sbc entropy-coded payload (b/s) | median WER | corpus WER | dWER | ULM nats/unit |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['K']} | {r['lambda']:g} | {_fmt(r['units_per_second'], 2)} | {_fmt(r['entropy_bits'], 3)} | "
                   f"{_fmt(r['bitrate'])} | {_fmt(r['bitrate_bound'])} | {_fmt(r['sbc_file_bitrate'])} | "
                   f"{_fmt(r['sbc_entropy_payload_bitrate'])} | {_fmt(r['wer_median'], 2)} | {_fmt(r['wer'], 2)} | "
                   f"{_fmt(r['dwer'], 2)} | {_fmt(r['ulm_nats_per_unit'], 3)} |")
    if original:
        out += ["", f"Original audio through the same ASR: median WER {_fmt(_pct(original.get('wer_median')), 2)} %, "
                    f"corpus WER {_fmt(_pct(original.get('wer')), 2)} %."]
    out += ["", "The paper (Figure 4, values read off the published SVG):", "",
            "| K | λ | bitrate (b/s) | median WER (%) |", "|---|---|---|---|"]
    for p in published:
        out.append(f"| {p['K']} | {p['lambda']:g} | {p['bitrate']:.1f}{' (≈)' if p.get('note') else ''} | "
                   f"{p['wer_median']:.2f} |")
    return "\n".join(out) + "\n"


def plot(rows: list[dict], published: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {}
    for k in sorted({p["K"] for p in published} | {r["K"] for r in rows}):
        colors[k] = f"C{len(colors)}"
    for k in sorted({p["K"] for p in published}):
        pts = sorted((p["bitrate"], p["wer_median"]) for p in published if p["K"] == k)
        ax.plot(*zip(*pts), "--o", color=colors[k], alpha=0.5, markersize=4, label=f"paper K={k}")
    for k in sorted({r["K"] for r in rows}):
        pts = sorted((r["bitrate"], r["wer_median"]) for r in rows if r["K"] == k
                     and r["bitrate"] is not None and r["wer_median"] is not None)
        if pts:
            ax.plot(*zip(*pts), "-s", color=colors[k], markersize=5, label=f"ours K={k}")
    ax.set_xlabel("bitrate R·H (b/s)")
    ax.set_ylabel("median per-utterance WER (%)")
    ax.set_title("DP-SLM resynthesis: WER versus bitrate (λ grows right to left)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results")
    p.add_argument("--published", default=str(Path(__file__).with_name("published.json")))
    p.add_argument("--out", required=True, help="folder for wer_vs_bitrate.{png,md,json}")
    args = p.parse_args(argv)
    try:
        results = json.loads(Path(args.results).read_text())
    except FileNotFoundError:
        print(f"error: {args.results}: missing; it is written by the evaluate stage", file=sys.stderr)
        return 1
    published = json.loads(Path(args.published).read_text())["points"]
    rows = our_rows(results)
    original = results.get("systems", {}).get("original", {}).get("summary")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"results": str(Path(args.results).resolve()), "ours": rows, "published": published}
    atomic_write_json(out / "wer_vs_bitrate.json", doc)
    atomic_write_text(out / "wer_vs_bitrate.md", table(rows, published, original))
    plot(rows, published, out / "wer_vs_bitrate.png")
    print(table(rows, published, original).split("\n\nThe paper")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
