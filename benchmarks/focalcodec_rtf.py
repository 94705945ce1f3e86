#!/usr/bin/env python3
"""Real-time factors of the real-size FocalCodec stacks (random weights) on 10 s of speech.

Offline: the published non-causal 50 / 25 / 12.5 Hz configurations and the causal 50 Hz
(FocalCodec-Stream, 2048 codes) one. Streaming: the causal 50 Hz model and its progressive
25 / 12.5 Hz growths (FocalCodec-S), chunk by chunk through ``Codec.stream_encoder`` /
``stream_decoder`` (80 ms chunks). RTF = processing seconds / audio seconds (lower is faster);
each figure is the best of ``--repeats`` runs after one warm-up. Also prints the algorithmic
latency. Run on an idle machine:

    python benchmarks/focalcodec_rtf.py [--threads 2] [--device cpu|cuda] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch

from speechbrain_codec.dataio import load_audio
from speechbrain_codec.focalcodec import PUBLISHED, build_focalcodec

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "en" / "librispeech_clean_misc" / "audio" / "2412-153948-0000.flac"


def grown_causal(levels: int) -> dict:
    cfg = copy.deepcopy(PUBLISHED["focalcodec_50hz_2k_causal"])
    comp, decomp = cfg["compressor_config"], cfg["decompressor_config"]
    comp["hidden_dims"] = comp["hidden_dims"] + [1024] * levels
    comp["downscale_factors"] = comp["downscale_factors"] + [2] * levels
    decomp["hidden_dims"] = [1024] * levels + decomp["hidden_dims"]
    decomp["upscale_factors"] = [2] * levels + decomp["upscale_factors"]
    return cfg


def best(fn, repeats: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clip", default=str(CLIP))
    parser.add_argument("--systems", nargs="*", help="subset of the systems (default: all)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "focalcodec_rtf.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sig = load_audio(args.clip, 16000)[: int(args.seconds * 16000)][None].to(device)
    seconds = sig.shape[-1] / 16000
    systems = {
        "focalcodec_50hz": (PUBLISHED["focalcodec_50hz"], False),
        "focalcodec_25hz": (PUBLISHED["focalcodec_25hz"], False),
        "focalcodec_12_5hz": (PUBLISHED["focalcodec_12_5hz"], False),
        "focalcodec_50hz_2k_causal": (PUBLISHED["focalcodec_50hz_2k_causal"], True),
        "focalcodec_s_25hz_causal": (grown_causal(1), True),
        "focalcodec_s_12_5hz_causal": (grown_causal(2), True),
    }
    if args.systems:
        systems = {k: v for k, v in systems.items() if k in args.systems}
    rows = []
    print(f"{seconds:.1f} s of speech, {args.threads} threads, {device}")
    print(f"{'system':28s} {'b/s':>6s} {'params':>8s} {'enc RTF':>8s} {'dec RTF':>8s} {'stream enc':>10s} {'stream dec':>10s} {'latency':>8s}")
    for name, (cfg, causal) in systems.items():
        torch.manual_seed(0)
        codec = build_focalcodec(cfg).to(device).eval()
        with torch.no_grad():
            toks = codec.sig_to_toks(sig)
            row = {
                "system": name,
                "bitrate": codec.bitrate,
                "params_M": sum(p.numel() for p in codec.parameters()) / 1e6,
                "encode_rtf": best(lambda: codec.sig_to_toks(sig), args.repeats, sync) / seconds,
                "decode_rtf": best(lambda: codec.toks_to_sig(toks), args.repeats, sync) / seconds,
            }
            if causal:
                chunk = codec.chunk_size
                frames = chunk // codec.hop_length

                def stream_encode():
                    enc = codec.stream_encoder()
                    return [enc(c) for c in sig.split(chunk, dim=-1)]

                def stream_decode():
                    dec = codec.stream_decoder()
                    return [dec(t) for t in toks.split(frames, dim=1)]

                row["stream_encode_rtf"] = best(stream_encode, max(1, args.repeats - 1), sync) / seconds
                row["stream_decode_rtf"] = best(stream_decode, max(1, args.repeats - 1), sync) / seconds
                row["algorithmic_latency_ms"] = 1000 * codec.algorithmic_latency
                row["stream_equals_offline"] = bool(torch.equal(torch.cat(stream_encode(), 1), toks))
        rows.append(row)
        fmt = lambda k: f"{row[k]:.3f}" if k in row else "-"  # noqa: E731
        lat = f"{row['algorithmic_latency_ms']:.0f} ms" if causal else "-"
        print(f"{name:28s} {row['bitrate']:6.0f} {row['params_M']:7.1f}M {fmt('encode_rtf'):>8s} {fmt('decode_rtf'):>8s} "
              f"{fmt('stream_encode_rtf'):>10s} {fmt('stream_decode_rtf'):>10s} {lat:>8s}")
    result = {"device": str(device), "cpu": platform.processor() or platform.machine(), "threads": args.threads,
              "torch": torch.__version__, "audio_seconds": seconds, "rows": rows}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
