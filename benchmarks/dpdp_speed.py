#!/usr/bin/env python3
"""DPDP speed over a LibriSpeech-size manifest of synthetic features (K = 500, D = 1024).

The recipe's DPDP stage reads cached WavLM-large layer-11 features (1024-d, 50 Hz) utterance by
utterance. This script simulates such a manifest: utterance durations drawn like LibriSpeech's
(normal, mean 12.3 s, sd 4 s, cut to 1.5 - 35 s), features drawn per utterance like the golden
data (``shared/golden/dpdp``: segments around class centres; generation is not timed), a
K = 500 codebook on the data, lambda 1500, ``num_neighbors`` 25 (5 % of K, as DP-SLM) and None.

Timed per configuration (median of ``--repeats`` runs, DPDP + dedup, 2 threads):

* ``previous``: the implementation before this change (float32 GEMM, torch.topk limit, numba
  kernel storing one bit per frame and codeword, Python backtracking), kept here for a
  same-conditions comparison; its units are checked identical to the current ones;
* ``dpdp``: :func:`~speechbrain_codec.quantizers.dpdp.dpdp` per utterance;
* ``dpdp_batch``: :func:`~speechbrain_codec.quantizers.dpdp.dpdp_batch`, utterances sharing one
  GEMM per 4096 frames;
* ``dpdp_many``: the six K = 500 penalties of DP-SLM's grid (0, 600, 1500, 2800, 4500, 7000) in one
  :func:`~speechbrain_codec.quantizers.dpdp.dpdp_batch` call (the distances are shared), reported
  per penalty.

Linearity: ``dpdp_batch`` at three manifest sizes (``--hours``, default 0.1, 0.2, 0.4 h) gives
seconds per hour of audio that should not depend on the size, so the extrapolation to
LibriSpeech 960 h is linear. Memory: peak RSS growth over each size's run (constant: the
features stream) and the numpy working memory (tracemalloc) of one long utterance at two
lengths (the recursion's state is two int64 per frame: linear in T). Also timed: the GEMM alone
(the floor).

The machine is shared: the JSON records the load average before and after; the ratio to
``previous`` is measured under the same load. ``python benchmarks/dpdp_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from speechbrain_codec.quantizers.dpdp import _gemm_part, dedup, dpdp, dpdp_batch

FRAME_RATE = 50
LAMBDAS_K500 = [0.0, 600.0, 1500.0, 2800.0, 4500.0, 7000.0]


# ------------------------------------------------------------------ synthetic data
class SpeechLike:
    """Features and a codebook drawn like the golden data (segments around class centres)."""

    def __init__(self, dim: int, n_codes: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.dim, self.r = dim, math.sqrt(64 / dim)
        self.centres = self.rng.normal(0, 3 * self.r, size=(50, dim)).astype(np.float32)
        pool = self.draw(5000)
        self.codebook = torch.from_numpy(pool[self.rng.choice(5000, n_codes, replace=False)])

    def draw(self, n: int) -> np.ndarray:
        rng, r = self.rng, self.r
        lengths = 1 + rng.poisson(3, size=n)
        lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), n)) + 1]
        means = self.centres[rng.integers(50, size=len(lengths))] + rng.normal(0, r, size=(len(lengths), self.dim))
        out = np.repeat(means.astype(np.float32), lengths, axis=0)[:n]
        out += rng.standard_normal(size=out.shape, dtype=np.float32) * np.float32(1.5 * r)
        return out


def manifest(hours: float, seed: int) -> list[int]:
    """Frames per utterance of a LibriSpeech-like manifest of ``hours``."""
    rng = np.random.default_rng(seed)
    frames, total = [], 0
    while total < hours * 3600 * FRAME_RATE:
        n = int(np.clip(rng.normal(12.3, 4.0), 1.5, 35.0) * FRAME_RATE)
        frames.append(n)
        total += n
    return frames


def groups(frames: list[int], data: SpeechLike, max_frames: int = 4096):
    """Utterance feature lists of about ``max_frames`` frames (generated on the fly)."""
    group, n = [], 0
    for f in frames:
        group.append(torch.from_numpy(data.draw(f)))
        n += f
        if n >= max_frames:
            yield group
            group, n = [], 0
    if group:
        yield group


# ------------------------------------------------------------------ the previous implementation
def _previous(features, codebook, lmbda, num_neighbors, chunk_frames=2048):
    """The implementation before this change (for a same-conditions comparison)."""
    from speechbrain_codec.quantizers.dpdp import _distances

    n_frames, n_codes = features.shape[0], codebook.shape[0]
    started = np.empty((n_frames, (n_codes + 7) // 8), dtype=np.uint8)
    gamma = np.empty(n_frames, dtype=np.int64)
    open_cost = np.full(n_codes, np.inf)
    seg_start = np.zeros(n_codes, dtype=np.int64)
    alpha = 0.0
    for c0 in range(0, n_frames, chunk_frames):
        d, limit = _distances(features[c0 : c0 + chunk_frames], codebook, num_neighbors)
        is_start = np.empty(d.shape, dtype=np.bool_)
        alpha = _previous_kernel(d, limit, float(lmbda), open_cost, seg_start, c0, alpha, is_start,
                                 gamma[c0 : c0 + d.shape[0]])
        started[c0 : c0 + d.shape[0]] = np.packbits(is_start, axis=1)
    units = np.empty(n_frames, dtype=np.int64)
    t = n_frames - 1
    k = gamma[t]
    while t >= 0:
        units[t] = k
        if (started[t, k >> 3] >> (7 - (k & 7))) & 1:
            if t == 0:
                break
            k = gamma[t - 1]
        t -= 1
    return units


def _previous_loops(d, limit, lam, open_cost, seg_start, t0, alpha, is_start, gamma):
    n, n_codes = d.shape
    for i in range(n):
        best, best_k, best_s = np.inf, 0, t0 + n
        for k in range(n_codes):
            dik = np.float64(d[i, k]) if d[i, k] <= limit[i] else np.inf
            ext = open_cost[k] + (dik - lam)
            st = alpha + dik
            if st < ext:
                is_start[i, k] = True
                seg_start[k] = t0 + i
                ext = st
            else:
                is_start[i, k] = False
            open_cost[k] = ext
            if ext < best or (ext == best and seg_start[k] < best_s):
                best, best_k, best_s = ext, k, seg_start[k]
        gamma[i] = best_k
        alpha = open_cost[best_k]
    return alpha


import numba  # noqa: E402

_previous_kernel = numba.njit(cache=True, nogil=True)(_previous_loops)


# ------------------------------------------------------------------ timing
def run(method: str, frames: list[int], data: SpeechLike, nn) -> tuple[float, int, list]:
    """Seconds of DPDP + dedup over the manifest (generation excluded), units after dedup, and
    the units of the first group (for the identity check)."""
    cb, seconds, n_units, first = data.codebook, 0.0, 0, None
    for group in groups(frames, data):
        t0 = time.perf_counter()
        if method == "previous":
            out = [_previous(f, cb, 1500.0, nn)[None] for f in group]
        elif method == "dpdp":
            out = [dpdp(f, cb, 1500.0, nn)[None] for f in group]
        elif method == "dpdp_batch":
            out = dpdp_batch(group, cb, [1500.0], nn)
        elif method == "dpdp_many":
            out = dpdp_batch(group, cb, LAMBDAS_K500, nn)
        else:
            raise ValueError(method)
        n_units += sum(len(dedup(u)[0]) for o in out for u in o)
        seconds += time.perf_counter() - t0
        if first is None:
            first = [o[LAMBDAS_K500.index(1500.0)] if method == "dpdp_many" else o[0] for o in out]
    return seconds, n_units, first


def gemm_floor(frames: list[int], data: SpeechLike) -> float:
    cb = data.codebook
    cnorm = (cb * cb).sum(1)
    seconds = 0.0
    for group in groups(frames, data):
        x = torch.cat(group)
        t0 = time.perf_counter()
        _gemm_part(x, cb, cnorm)
        seconds += time.perf_counter() - t0
    return seconds


def memory_of_one_utterance(data: SpeechLike, n_frames: int) -> float:
    """Peak numpy working memory (MB, tracemalloc) of dpdp on one utterance, input excluded."""
    x = torch.from_numpy(data.draw(n_frames))
    tracemalloc.start()
    dpdp(x, data.codebook, 1500.0, 25)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dpdp_speed.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hours", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = SpeechLike(1024, 500, seed=0)
    warm = [torch.from_numpy(data.draw(700))]
    for nn in (25, None):  # compile / warm up every path
        dpdp_batch(warm, data.codebook, LAMBDAS_K500, nn)
        _previous(warm[0], data.codebook, 1500.0, nn)
    res = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "threads": args.threads, "torch": torch.__version__, "numba": numba.__version__,
           "K": 500, "D": 1024, "lambda": 1500.0, "frame_rate": FRAME_RATE, "repeats": args.repeats,
           "loadavg_before": list(os.getloadavg()), "configs": [], "linearity": [], "memory": {}}

    def median_run(method, frames, nn, seed):
        times, units = [], None
        for r in range(args.repeats):
            data.rng = np.random.default_rng(seed)  # the same features every repeat
            s, n_units, first = run(method, frames, data, nn)
            times.append(s)
            units = (n_units, first)
        return statistics.median(times), times, units

    hours0 = args.hours[0]
    frames0 = manifest(hours0, seed=1)
    audio0 = sum(frames0) / FRAME_RATE
    data.rng = np.random.default_rng(7)
    gemm_s = statistics.median(
        [gemm_floor(frames0, data) for _ in range(args.repeats)])
    res["gemm_only"] = {"hours": audio0 / 3600, "seconds_per_hour": gemm_s * 3600 / audio0,
                        "x_realtime": audio0 / gemm_s}
    print(f"GEMM alone: {gemm_s * 3600 / audio0:.2f} s per hour of audio (x{audio0 / gemm_s:.0f} real time)")
    for nn in (25, None):
        first_units = {}
        for method in ("previous", "dpdp", "dpdp_batch", "dpdp_many"):
            med, times, (n_units, first) = median_run(method, frames0, nn, seed=7)
            per = len(LAMBDAS_K500) if method == "dpdp_many" else 1
            first_units[method] = first
            row = {"method": method, "num_neighbors": nn, "hours": audio0 / 3600, "utterances": len(frames0),
                   "lambdas": LAMBDAS_K500 if method == "dpdp_many" else [1500.0],
                   "seconds": med, "seconds_all": times,
                   "seconds_per_hour_per_lambda": med * 3600 / audio0 / per,
                   "x_realtime_per_lambda": audio0 * per / med, "units_per_second": n_units / audio0 / per}
            res["configs"].append(row)
            print(f"nn={str(nn):4s} {method:10s}: {row['seconds_per_hour_per_lambda']:6.2f} s per hour per lambda "
                  f"(x{row['x_realtime_per_lambda']:6.0f} real time), {row['units_per_second']:.1f} units/s")
        ref = first_units["previous"]
        res.setdefault("identical_units_to_previous", {})[str(nn)] = all(
            all(np.array_equal(a, b) for a, b in zip(ref, first_units[m])) for m in ("dpdp", "dpdp_batch", "dpdp_many"))
    for hours in args.hours:
        frames = manifest(hours, seed=2)
        audio = sum(frames) / FRAME_RATE
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        med, times, (n_units, _) = median_run("dpdp_batch", frames, 25, seed=11)
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        row = {"hours": audio / 3600, "utterances": len(frames), "seconds": med, "seconds_all": times,
               "seconds_per_hour": med * 3600 / audio, "x_realtime": audio / med,
               "peak_rss_growth_MB": (rss1 - rss0) / 1024}
        res["linearity"].append(row)
        print(f"{audio / 3600:.2f} h ({len(frames)} utterances): {med:.2f} s -> {row['seconds_per_hour']:.2f} s/h "
              f"(x{row['x_realtime']:.0f}), peak RSS grew {row['peak_rss_growth_MB']:.0f} MB")
    sph = [r["seconds_per_hour"] for r in res["linearity"]]
    res["librispeech_960h_extrapolated_minutes"] = statistics.median(sph) * 960 / 60
    for minutes in (5, 10):
        res["memory"][f"one_{minutes}_min_utterance_numpy_peak_MB"] = memory_of_one_utterance(data, minutes * 60 * FRAME_RATE)
    res["loadavg_after"] = list(os.getloadavg())
    print(f"LibriSpeech 960 h (extrapolated, nn=25, one lambda): {res['librispeech_960h_extrapolated_minutes']:.1f} min; "
          f"memory {res['memory']}; identical units {res['identical_units_to_previous']}; "
          f"load {res['loadavg_before']} -> {res['loadavg_after']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
