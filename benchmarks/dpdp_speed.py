#!/usr/bin/env python3
"""DPDP speed: the O(T K) implementation against a plain O(T^2 K) one of the same recursion.

Prints and saves (``--out``, JSON) the timings for T = 500 and 1000 frames, K = 500, D = 1024
(the golden setup: lambda 1500, 5% neighbours), checks that both give identical units, and
runs one hour of 50 Hz frames (T = 180000, K = 500, D = 64) through the fast one to show its
time and memory. Run on an idle machine: ``python benchmarks/dpdp_speed.py``.

The reference's own timing (TorchScript, torch 2.13, same VM type, see
``shared/golden/dpdp/README.md``) is 0.094 s (T = 500) and 0.334 s (T = 1000).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from speechbrain_codec.quantizers.dpdp import dedup, dpdp, dpdp_reference

REFERENCE_SECONDS = {500: 0.094, 1000: 0.334}


def speechlike(n_frames: int, dim: int, n_codes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and codebook drawn like the golden data (segments around class centres)."""
    rng = np.random.default_rng(seed)
    r = np.sqrt(64 / dim)
    centres = rng.normal(0, 3 * r, size=(50, dim))

    def draw(n):
        out, filled = np.empty((n, dim), dtype=np.float32), 0
        while filled < n:
            length = 1 + rng.poisson(3)
            mean = centres[rng.integers(50)] + rng.normal(0, r, size=dim)
            m = min(length, n - filled)
            out[filled : filled + m] = mean + rng.normal(0, 1.5 * r, size=(m, dim))
            filled += m
        return out

    pool = draw(5000)
    codebook = pool[rng.choice(5000, n_codes, replace=False)]
    return torch.from_numpy(draw(n_frames)), torch.from_numpy(codebook)


def timeit(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dpdp_speed.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-hour", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
               "torch": torch.__version__, "rows": []}
    lmbda, neighbours = 1500.0, 25
    for n_frames in (500, 1000):
        x, cb = speechlike(n_frames, 1024, 500)
        dpdp(x, cb, lmbda, neighbours)  # warm-up
        fast_t = timeit(lambda: dpdp(x, cb, lmbda, neighbours), 7)
        plain_t = timeit(lambda: dpdp_reference(x, cb, lmbda, neighbours), 2)
        same = bool(np.array_equal(dpdp(x, cb, lmbda, neighbours), dpdp_reference(x, cb, lmbda, neighbours)))
        row = {
            "T": n_frames, "K": 500, "D": 1024, "lambda": lmbda, "num_neighbors": neighbours,
            "fast_median_s": statistics.median(fast_t), "plain_O(T2K)_median_s": statistics.median(plain_t),
            "identical_units": same,
            "speedup_vs_plain": statistics.median(plain_t) / statistics.median(fast_t),
            "speedup_vs_reference_timing": REFERENCE_SECONDS[n_frames] / statistics.median(fast_t),
        }
        results["rows"].append(row)
        print(f"T={n_frames:5d} K=500 D=1024: fast {row['fast_median_s'] * 1e3:7.1f} ms | plain O(T^2K) "
              f"{row['plain_O(T2K)_median_s'] * 1e3:8.1f} ms | x{row['speedup_vs_plain']:.1f} vs plain, "
              f"x{row['speedup_vs_reference_timing']:.1f} vs the reference's {REFERENCE_SECONDS[n_frames]} s | "
              f"identical units: {same}")
    if not args.skip_hour:
        x, cb = speechlike(180_000, 64, 500, seed=1)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        units = dpdp(x, cb, lmbda, neighbours)
        seconds = time.perf_counter() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        n_units = len(dedup(units)[0])
        results["hour"] = {"T": 180_000, "K": 500, "D": 64, "seconds": seconds,
                           "peak_rss_growth_MB": (rss1 - rss0) / 1024, "units_after_dedup": n_units}
        print(f"1 h at 50 Hz (T=180000, K=500, D=64): {seconds:.1f} s, peak RSS grew "
              f"{(rss1 - rss0) / 1024:.0f} MB (input features 46 MB), {n_units} units after dedup")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
