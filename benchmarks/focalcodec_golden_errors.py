#!/usr/bin/env python3
"""Largest differences between our FocalCodec lobes and the reference's golden tensors.

For each case of ``../shared/golden/focalcodec``: load the reference state dict into our lobes,
run :func:`speechbrain_codec.focalcodec.trace` on the golden input and print, per tensor, the
maximum absolute error (float tensors) or the number of differing tokens (int tensors). The test
suite asserts 1e-5; this shows how far inside that bound each stage is. Saves
``benchmarks/results/focalcodec_golden_errors.json``.

    python benchmarks/focalcodec_golden_errors.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from speechbrain_codec.focalcodec import load_focalcodec, trace

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden" / "focalcodec"


def main() -> None:
    torch.set_num_threads(2)
    results = {}
    for case in ("focalcodec_50hz", "focalcodec_25hz", "focalcodec_12_5hz", "focalcodec_50hz_2k_causal"):
        codec = load_focalcodec(str(GOLDEN / case)).requires_grad_(False)
        io = load_file(str(GOLDEN / case / "io.safetensors"))
        out = trace(codec, io["sig"], [k[len("debug."):] for k in io if k.startswith("debug.")])
        errors = {}
        for key, value in out.items():
            ref = io[key]
            if ref.dtype == torch.int64:
                errors[key] = int((value.long() != ref).sum())
            else:
                errors[key] = float((value.float() - ref).abs().max())
        results[case] = errors
        floats = {k: v for k, v in errors.items() if isinstance(v, float)}
        worst = max(floats, key=floats.get)
        print(f"{case}: tokens differing {sum(v for v in errors.values() if isinstance(v, int))}; "
              f"largest float error {floats[worst]:.1e} ({worst}); encoder feats {errors['feats']:.1e}")
    out_path = ROOT / "benchmarks" / "results" / "focalcodec_golden_errors.json"
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {out_path}")


if __name__ == "__main__":
    main()
