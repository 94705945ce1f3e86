#!/usr/bin/env python3
"""The SIREN bitrate table (README): for each configuration of siren.md §2.7 that run.sh offers,
the README claim, the configuration arithmetic (the codec's StreamLayout) and the measured rates
of real ``.sbc`` files (``speechbrain_codec.cli.encode_file``) of clips, speaker code included.

The file size depends on the layout and the durations only (fixed-width packing), not on the
weights, so the codecs are built from hparams/codec/siren.yaml with a tiny random 9-layer HuBERT
and tiny widths (offline, seconds).

    python recipes/LJSpeech/siren/bitrate_table.py --clips ../shared/data/en/ljspeech \
        --out recipes/LJSpeech/siren/results/bitrate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: run.sh --config -> (codec overrides, the reference's name and claim)
CONFIGS = {
    "default": ({}, "v0.1.0 default.yaml", "README: \"~68 b/s\" (arithmetic error, siren.md §0)"),
    "improved": ({"semantic_levels": [3] * 8, "semantic_stages": 4, "prosody_levels": [3] * 8, "prosody_stages": 4},
                 "v0.1.0 improved / multispeaker / improved_ljspeech.yaml", "none"),
    "large200": ({"semantic_levels": [3, 3, 3, 3], "semantic_factor": 2, "prosody_levels": [3, 3, 3, 3],
                  "fsq_bound": "sigmoid", "scale_decay": 1.0, "learnable_scales": False},
                 "HEAD ultra200bps_large.yaml (P2 quantiser settings)", "\"~197 b/s\""),
}
TINY = {"hubert_dim": 32, "semantic_hidden": 16, "prosody_hidden": 16, "speaker_dim": 16, "speaker_hidden": 32,
        "fusion_dim": 32, "fusion_layers": 1, "fusion_heads": 2, "vocoder_dim": 32, "vocoder_intermediate": 64,
        "vocoder_dilations": [1], "vocoder_res_dilations": [1], "entropy_layers": 0}


def build(config: str, hubert: str, bitnet: bool = False):
    from speechbrain_codec.training import load_codec_yaml

    overrides = {**TINY, **CONFIGS[config][0], "hubert_source": hubert, "bitnet": bitnet}
    codec, _ = load_codec_yaml(str(HERE / "hparams" / "codec" / "siren.yaml"), overrides)
    return codec.eval()


def measure(codec, clips: list[Path], folder: Path) -> dict:
    """Encode ``clips`` with ``codec`` into ``folder``; the bitrate summary plus per-file facts."""
    from speechbrain_codec.cli import bitrate_summary, encode_file

    facts = [dict(encode_file(codec, clip, folder / f"{clip.stem}.sbc"), file=clip.name) for clip in clips]
    return {"summary": bitrate_summary(codec, facts), "files": facts}


def table(clips: list[Path], hubert: str) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (_, source, claim) in CONFIGS.items():
            codec = build(name, hubert)
            m = measure(codec, clips, Path(tmp))
            s = m["summary"]
            rows[name] = {
                "source": source, "claim": claim,
                "arithmetic": {n: v["arithmetic"] for n, v in codec.layout.summary()["streams"].items()},
                "nominal_bitrate": codec.bitrate, "side_info_bits": codec.side_info_bits,
                "nominal_bitrate_with_side_info": s["nominal_bitrate_with_side_info"],
                "payload_bitrate": s["payload_bitrate"], "side_info_bitrate": s["side_info_bitrate"],
                "file_bitrate": s["file_bitrate"], "header_bitrate": s["header_bitrate"],
            }
    seconds = sum(f["duration"] for f in m["files"])
    return {"clips": [c.name for c in clips], "seconds": seconds, "configs": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", required=True, help="a folder of audio clips (FLAC / WAV)")
    p.add_argument("--out", required=True)
    p.add_argument("--hubert", help="a HuBERT folder (default: a tiny random one, 9 layers)")
    args = p.parse_args(argv)
    clips = sorted(x for x in Path(args.clips).rglob("*") if x.suffix.lower() in (".flac", ".wav"))
    if not clips:
        sys.exit(f"error: no .flac / .wav clip under {args.clips}")
    hubert = args.hubert
    if hubert is None:
        from speechbrain_codec.bin.tiny_models import tiny_hubert

        hubert = str(tiny_hubert(Path(tempfile.mkdtemp()) / "hubert9", layers=9))
    result = table(clips, hubert)
    from speechbrain_codec.utils import atomic_write_json

    atomic_write_json(args.out, result)
    print(f"| config | source | claim | arithmetic | nominal b/s | + speaker code b/s | payload b/s | file b/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in result["configs"].items():
        arith = "; ".join(f"{k}: {v}" for k, v in r["arithmetic"].items())
        print(f"| {name} | {r['source']} | {r['claim']} | {arith} | {r['nominal_bitrate']:.1f} | "
              f"{r['nominal_bitrate_with_side_info']:.1f} | {r['payload_bitrate']:.1f} | {r['file_bitrate']:.1f} |")
    print(f"({len(clips)} clips, {result['seconds']:.1f} s) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
