#!/usr/bin/env python3
"""Learnable-Speech summary: the token stream's bitrate and the flow decoder's cost, from the
extraction cache's info.json and the synthesis records (stage 9; printed by stage 10).

    python summary.py --exp EXP --out EXP/results/learnable_speech.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechbrain_codec.utils import CodecError, atomic_write_json, one_line_errors


@one_line_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    exp = Path(a.exp)
    info_path = exp / "cache" / "info.json"
    if not info_path.is_file():
        raise CodecError(f"{info_path}: missing; made by stage 4 (extract)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    out = {"token_rate_hz": info["token_rate"], "vocab_size": info["vocab_size"],
           "nominal_token_bitrate": info["token_bitrate"], "latent_rate_hz": info["latent_rate"],
           "latent_dim": info["latent_dim"], "token_source": info["token_source"]}
    for mode in ("resynth", "tts"):
        rec_path = exp / mode / "synthesis.json"
        if not rec_path.is_file():
            continue
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        audio = sum(r["audio_seconds"] for r in rec.values())
        toks = sum(r["tokens"] for r in rec.values())
        out[mode] = {"utterances": len(rec), "audio_seconds": audio,
                     "tokens_per_second": toks / max(audio, 1e-9),
                     "flow_seconds_per_audio_second": sum(r["seconds_flow"] for r in rec.values()) / max(audio, 1e-9),
                     "vae_seconds_per_audio_second": sum(r["seconds_vae"] for r in rec.values()) / max(audio, 1e-9),
                     "prompts_self": sum(r["prompt"] == "self" for r in rec.values())}
    atomic_write_json(a.out, out)
    print(f"token stream: {out['token_rate_hz']:g} Hz x log2({out['vocab_size']}) = "
          f"{out['nominal_token_bitrate']:.1f} b/s ({out['token_source']})")
    for mode in ("resynth", "tts"):
        if mode in out:
            m = out[mode]
            print(f"{mode}: {m['utterances']} utterances, {m['tokens_per_second']:.1f} tokens/s, flow "
                  f"{m['flow_seconds_per_audio_second']:.3f} s and DAC-VAE {m['vae_seconds_per_audio_second']:.3f} s "
                  "per second of audio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
