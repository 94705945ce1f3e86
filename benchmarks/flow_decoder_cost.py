#!/usr/bin/env python3
"""Cost of the Learnable-Speech flow decoder per second of audio, and the token stream's bitrate.

Published size (learnable_speech.md §2.2, variant A): 6561-token embedding 512, upsampling
encoder (6 + 4 blocks, 8 heads, FFN 2048, x2), U-Net estimator (256 channels, 56 transformer
blocks, 8 x 64 heads) on 4 x 80 channels; inference = 10 Euler steps on the cosine grid with
CFG 0.7 (two estimator passes per step), random weights (the cost does not depend on them).
Times ``--seconds`` of audio (25 Hz tokens -> 50 Hz latents), median of ``--repeats`` runs
after one warm-up, and merges the figures into benchmarks/results/flow_decoder_cost.json
under the device's name.

    python benchmarks/flow_decoder_cost.py --device cpu --threads 2
    python benchmarks/flow_decoder_cost.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from speechbrain_codec.flow_matching import FlowDecoder
from speechbrain_codec.speech_tokens import S3SpeechTokenizer

OUT = Path(__file__).parent / "results" / "flow_decoder_cost.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cfg", type=float, default=0.7)
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    flow = FlowDecoder(vocab_size=6561, latent_dim=80, upsample=2, spk_dim=192).eval().to(dev)
    n_params = sum(p.numel() for p in flow.parameters())
    est_params = sum(p.numel() for p in flow.decoder.estimator.parameters())
    token_rate = 25.0
    n_tok = round(a.seconds * token_rate)
    toks = torch.randint(0, 6561, (1, n_tok), device=dev)
    lens = torch.tensor([n_tok], device=dev)
    spk = torch.randn(1, 192, device=dev)

    def once() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        flow.inference(toks, lens, spk, n_steps=a.steps, cfg_rate=a.cfg)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    once()
    times = [once() for _ in range(a.repeats)]
    med = statistics.median(times)
    bitrate = token_rate * math.log2(6561)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or platform.machine()} cpu"
    key = f"{dev.type}" + (f"_{a.threads}threads" if dev.type == "cpu" else "")
    result = {"device": name, "threads": a.threads if dev.type == "cpu" else None, "audio_seconds": a.seconds,
              "steps": a.steps, "cfg": a.cfg, "estimator_passes": a.steps * (2 if a.cfg else 1),
              "seconds": times, "median_seconds": med, "seconds_per_audio_second": med / a.seconds,
              "parameters": n_params, "estimator_parameters": est_params, "torch": torch.__version__}
    out = Path(a.out)
    data = json.loads(out.read_text()) if out.is_file() else {}
    data["token_stream"] = {"token_rate_hz": token_rate, "vocab_size": 6561, "bits_per_token": math.log2(6561),
                            "nominal_bitrate": bitrate,
                            "s3tokenizer_interface_bitrate": S3SpeechTokenizer.frame_rate * math.log2(6561)}
    data.setdefault("flow_decoder", {})[key] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"flow decoder ({n_params / 1e6:.1f} M parameters, estimator {est_params / 1e6:.1f} M) on {name}: "
          f"{med:.3f} s for {a.seconds:g} s of audio ({a.steps} Euler steps, CFG {a.cfg}) = "
          f"{med / a.seconds:.3f} s per second of audio")
    print(f"token stream: {token_rate:g} Hz x log2(6561) = {bitrate:.1f} b/s")


if __name__ == "__main__":
    main()
