#!/usr/bin/env python3
"""Inference speed of the FocalCodec stacks per inference mode, against today's plain path, in ONE run.

Systems: the published FocalCodec 50 Hz, 12.5 Hz and causal 50 Hz (FocalCodec-Stream, 2048
codes) configurations at their published sizes, SIREN P1 (``recipes/LJSpeech/siren``'s codec:
HuBERT-base L9, three streams) and the LM-loss codec (``recipes/LJSpeech/lmloss``'s phase-2
codec: HuBERT-base L6 + YAAPT F0 + HiFi-GAN V1). The published weights are not reachable
offline (hub downloads fail here), so the stacks get PyTorch's default random initialisation
(seed 0; HuBERT-base is ``transformers``' ``HubertConfig()`` with random weights); speed does
not depend on the weights, token agreement does (see "caveats" in the JSON). A mode that a
codec refuses (the LM-loss codec's HiFi-GAN has no Linear layer for ``int8-dec``; ONNX export
is for single-stream codecs) is listed under ``skipped`` with the refusal.

Options (rows): ``baseline`` = the plain eager fp32 path as it is today (``Codec.sig_to_toks`` /
``toks_to_sig`` / ``stream_*``), then ``Codec.optimize_for_inference`` modes ``exact`` (fp32),
``exact+compile`` (``compile="static"``; only for ``--compile-systems``, offline figures only,
since a static compile specialises to each input shape; ``first_call_seconds`` includes the
compiling; measured in a child process, see ``compiled_row``), ``int8``, ``int8-dec`` (exact encoder side, int8 decoder side) and ``bf16``, and ``onnxruntime``
(the fp32 graphs of ``export_onnx`` run by ``OnnxCodec``, one utterance per run). Per option: offline encode / decode RTF on ``--seconds`` of speech, and
for the causal model streaming encode / decode RTF (80-ms chunks) with the per-chunk compute
latency (median and 95th percentile), peak resident memory during the call, batched throughput
(``--batch`` clips of different lengths through ``Codec.batch_sig_to_toks`` + ``batch_toks_to_sig``,
hours of audio per second), token agreement with the baseline's tokens and the waveform error
of decoding the baseline's tokens (max abs, SNR in dB against the baseline's waveform).
Per system, the floating-point work of one offline encode and decode (``FlopCounterMode``:
matrix products, convolutions, attention) and, per machine, the fp32 matrix-product peak of
the threads (best of a few 2048^2 products): ``encode_gflops`` / ``gemm_peak_gflops`` says how
close an fp32 path is to what the cores can do at all. For the ``exact`` rows, one profiled
encode + decode (``torch.profiler``) splits the time into matrix products (``aten::addmm``,
``mm``, ``bmm``), convolutions, fused attention and the rest (``exact_profile``), and
``matmul_share_of_half_baseline`` is the matrix products' time over half the baseline's: at 1
or more, no fp32 path that computes the same products can code in half the baseline's time.

The machine may be shared and noisy: options are interleaved repeat by repeat and each figure is
the median of ``--repeats`` after ``--warmup`` untimed rounds; compare rows within one run. ``torch.set_num_threads(--threads)``.

    python benchmarks/inference_speed.py [--threads 2] [--seconds 10] [--stream-seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from speechbrain_codec.dataio import load_audio
from speechbrain_codec.focalcodec import PUBLISHED, build_focalcodec
from speechbrain_codec.onnx_export import OnnxCodec, export_onnx
from speechbrain_codec.utils import CodecError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "en" / "librispeech_clean_misc"
CLIP = DATA / "audio" / "2412-153948-0000.flac"
RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "LJSpeech"
#: codecs built from a recipe's codec hparams (HuBERT-base from a random-weight folder)
YAML_SYSTEMS = {"siren_p1": RECIPES / "siren" / "hparams" / "codec" / "siren.yaml",
                "lmloss_2_5": RECIPES / "lmloss" / "hparams" / "codec" / "lmloss.yaml"}
SYSTEMS = ["focalcodec_50hz", "focalcodec_12_5hz", "focalcodec_50hz_2k_causal", *YAML_SYSTEMS]
OPTIONS = ["baseline", "exact", "exact+compile", "int8", "int8-dec", "bf16", "onnxruntime"]
MATMUL_OPS = {"aten::addmm", "aten::mm", "aten::bmm"}
CONV_OPS = {"aten::mkldnn_convolution", "aten::convolution_overrideable", "aten::_convolution"}


def random_hubert(folder: Path) -> str:
    """A HuBERT-base (``HubertConfig()``: 12 layers, 768 wide) with random weights, saved in
    the published layout for ``SSLEncoder``; returns the folder."""
    from transformers import HubertConfig, HubertModel

    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        HubertModel(HubertConfig()).save_pretrained(folder)
    return str(folder)


def build(name: str, hubert: Path):
    """The system ``name`` at its published size, seed 0."""
    torch.manual_seed(0)
    if name in YAML_SYSTEMS:
        from hyperpyyaml import load_hyperpyyaml

        with open(YAML_SYSTEMS[name]) as f:
            codec = load_hyperpyyaml(f, {"hubert_source": random_hubert(hubert)})["codec"]
        return codec.eval()
    return build_focalcodec(PUBLISHED[name]).eval()


def flat(toks) -> torch.Tensor:
    """All tokens of a stream dict (or a tensor) as one vector, for agreement rates."""
    return torch.cat([v.flatten() for v in toks.values()]) if isinstance(toks, dict) else toks.flatten()


def profile_split(fn) -> dict:
    """Seconds of ``fn()`` by kind of operator (self CPU time under ``torch.profiler``), their
    sum, and the profiled wall time (its excess over the sum: Python, numpy (YAAPT), profiling)."""
    from torch.profiler import profile

    with profile() as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    split = {"matmul_s": 0.0, "conv_s": 0.0, "attention_s": 0.0, "other_s": 0.0}
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total / 1e6
        kind = ("matmul_s" if ev.key in MATMUL_OPS else "conv_s" if ev.key in CONV_OPS
                else "attention_s" if "scaled_dot_product" in ev.key else "other_s")
        split[kind] += t
    split["total_s"] = sum(split.values())
    split["wall_s"] = wall
    return split


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn):
    """``(result, seconds, peak RSS increase in bytes)`` of ``fn()``, RSS sampled every 2 ms."""
    base, peak, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    start = time.perf_counter()
    out = fn()
    took = time.perf_counter() - start
    stop.set()
    th.join()
    return out, took, max(0, max(peak[0], _rss()) - base)


def snr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    n = min(ref.shape[-1], x.shape[-1])
    ref, x = ref[..., :n].double(), x[..., :n].double()
    noise = (ref - x).pow(2).sum().item()
    return float("inf") if noise == 0 else 10 * torch.log10(ref.pow(2).sum() / noise).item()


def gemm_peak_gflops(repeats: int = 5, n: int = 2048) -> float:
    """Best fp32 matrix-product rate of the current threads, GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def gflop(fn) -> float:
    """Floating-point work of ``fn()`` (FlopCounterMode: matrix products, convolutions, attention), GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def stream_chunks(codec, sig, toks):
    """Streaming encode and decode chunk by chunk; per-chunk compute seconds of each."""
    enc_t, dec_t, out_t, out_s = [], [], [], []
    enc = codec.stream_encoder()
    for chunk in sig.split(codec.chunk_size, dim=-1):
        start = time.perf_counter()
        out_t.append(enc(chunk))
        enc_t.append(time.perf_counter() - start)
    dec = codec.stream_decoder()
    for t in toks.split(codec.chunk_size // codec.hop_length, dim=1):
        start = time.perf_counter()
        out_s.append(dec(t))
        dec_t.append(time.perf_counter() - start)
    return torch.cat(out_t, 1), torch.cat(out_s, -1), enc_t, dec_t


def compiled_row(args, name: str, base_t: float, seconds: float) -> dict:
    """The ``exact+compile`` row of ``name``, measured in a child process, so that compiled
    kernels and inductor's compile workers cannot touch the eager rows' timings; the child
    compares its tokens and waveform with its own plain path (the same seed, the same weights).
    Its inductor cache is empty, so ``first_call_seconds`` is a cold compile."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        subprocess.run([sys.executable, __file__, "--in-child", "--systems", name, "--options", "baseline",
                        "exact+compile", "--compile-systems", name, "--threads", str(args.threads),
                        "--seconds", str(args.seconds), "--stream-seconds", str(args.stream_seconds),
                        "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--batch", str(args.batch),
                        "--out", str(out)], check=True,
                       env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")})  # a cold compile
        row = next(r for r in json.loads(out.read_text())["rows"] if r["option"] == "exact+compile")
    row["offline_time_vs_baseline_of_its_process"] = row.pop("offline_time_vs_baseline", None)
    row["offline_time_vs_baseline"] = (row["encode_rtf"] + row["decode_rtf"]) * seconds / base_t
    row["measured_in"] = "a child process (compiled_row)"
    print(f"{name:26s} exact+compile enc {row['encode_rtf']:.3f} dec {row['decode_rtf']:.3f} "
          f"x{row['offline_time_vs_baseline']:.2f} agree {row['token_agreement']:.3f} "
          f"first call {row['first_call_seconds']:.0f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed rounds first (one was too few: the first system's baseline was still speeding up)")
    parser.add_argument("--batch", type=int, default=4, help="clips in the batched-throughput test")
    parser.add_argument("--systems", nargs="*", default=SYSTEMS)
    parser.add_argument("--options", nargs="*", default=OPTIONS)
    parser.add_argument("--compile-systems", nargs="*", default=["focalcodec_50hz"],
                        help="systems that get the exact+compile row (static shapes; compiling takes minutes)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference_speed.json"))
    parser.add_argument("--in-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, load_start = datetime.datetime.now(datetime.timezone.utc), os.getloadavg()[0]
    speech = load_audio(CLIP, 16000)
    sig = speech[: int(args.seconds * 16000)][None]
    seconds = sig.shape[-1] / 16000
    ssig = speech[: int(args.stream_seconds * 16000)][None]
    clips = sorted(DATA.glob("audio/*.flac"))[: args.batch]
    batch_sigs = [load_audio(c, 16000)[: int((2 + 1.5 * i) * 16000)] for i, c in enumerate(clips)]
    batch_seconds = sum(s.numel() for s in batch_sigs) / 16000
    print(f"{started:%Y-%m-%d %H:%M} UTC; {seconds:.1f} s offline, {ssig.shape[-1] / 16000:.1f} s streaming, "
          f"{len(batch_sigs)} clips ({batch_seconds:.1f} s) batched; {args.threads} threads; median of {args.repeats}")
    peak = gemm_peak_gflops()
    print(f"fp32 matrix-product peak of {args.threads} threads: {peak:.0f} GFLOP/s")
    rows, skipped = [], []
    hubert = Path(tempfile.mkdtemp(prefix="sbc-hubert-"))
    for name in args.systems:
        base = build(name, hubert)
        codecs = {}
        onnx_dir = None
        for opt in args.options:
            try:
                if opt == "exact+compile" and (name not in args.compile_systems or not args.in_child):
                    continue  # measured in a child process (compiled_row)
                if opt == "exact+compile":
                    codecs[opt] = copy.deepcopy(base).optimize_for_inference("exact", compile="static")
                elif opt == "onnxruntime":
                    onnx_dir = tempfile.mkdtemp(prefix="sbc-onnx-")
                    export_onnx(base, onnx_dir, check=False)
                    codecs[opt] = OnnxCodec(onnx_dir, threads=args.threads)
                else:
                    codecs[opt] = base if opt == "baseline" else copy.deepcopy(base).optimize_for_inference(opt)
            except CodecError as e:
                skipped.append({"system": name, "option": opt, "reason": str(e)})
                print(f"  {name} {opt}: skipped ({e})", flush=True)
        causal = base.streaming
        with torch.no_grad():
            ref_toks = base.sig_to_toks(sig)
            ref_sig = base.toks_to_sig(ref_toks)
            if causal:
                ref_stoks = base.sig_to_toks(ssig)
            work = {"encode_gflop": gflop(lambda: base.sig_to_toks(sig)),
                    "decode_gflop": gflop(lambda: base.toks_to_sig(ref_toks))}
        stats = {opt: {k: [] for k in ("enc", "dec", "enc_mem", "dec_mem", "senc", "sdec", "chunk_enc", "chunk_dec",
                                       "batch", "single")} for opt in codecs}
        facts = {opt: {} for opt in codecs}
        for rep in range(args.repeats + args.warmup):  # the first --warmup rounds are not timed
            for opt, codec in codecs.items():
                # a statically compiled codec recompiles for every new shape: offline figures only
                offline_only = opt.endswith("+compile")
                toks, te, me = timed(lambda: codec.sig_to_toks(sig))
                rec, td, md = timed(lambda: codec.toks_to_sig(ref_toks))
                streams = causal and not offline_only
                if streams:
                    stoks, ssig_out, ce, cd = stream_chunks(codec, ssig, ref_stoks)
                if not offline_only:
                    bsize = len(batch_sigs)
                    btoks, tb, _ = timed(
                        lambda: codec.batch_toks_to_sig(codec.batch_sig_to_toks(batch_sigs, bsize), bsize))
                    _, t1, _ = timed(lambda: [codec.toks_to_sig(codec.sig_to_toks(s[None])) for s in batch_sigs])
                if rep < args.warmup:
                    if rep:
                        continue
                    f = facts[opt]
                    f["first_call_seconds"] = te + td  # with compiling, for +compile
                    f["token_agreement"] = (flat(toks) == flat(ref_toks)).float().mean().item()
                    f["wave_max_abs_error"] = (rec - ref_sig).abs().max().item()
                    f["wave_snr_db"] = snr_db(ref_sig, rec)
                    if streams:
                        f["stream_token_agreement"] = (flat(stoks) == flat(ref_stoks)).float().mean().item()
                        f["stream_equals_offline_of_this_option"] = bool(torch.equal(stoks, codec.sig_to_toks(ssig)))
                    continue
                s = stats[opt]
                s["enc"].append(te)
                s["dec"].append(td)
                s["enc_mem"].append(me)
                s["dec_mem"].append(md)
                if not offline_only:
                    s["batch"].append(tb)
                    s["single"].append(t1)
                if streams:
                    s["senc"].append(sum(ce))
                    s["sdec"].append(sum(cd))
                    s["chunk_enc"].extend(ce)
                    s["chunk_dec"].extend(cd)
                print(f"  {name} {opt} repeat {rep}: enc {te / seconds:.3f} dec {td / seconds:.3f}"
                      + (f" stream {(sum(ce) + sum(cd)) / (ssig.shape[-1] / 16000):.3f}" if streams else ""), flush=True)
        if "exact" in codecs:  # where the exact mode's time goes
            facts["exact"]["exact_profile"] = profile_split(
                lambda: (codecs["exact"].sig_to_toks(sig), codecs["exact"].toks_to_sig(ref_toks)))
        med = statistics.median
        base_t = med(stats["baseline"]["enc"]) + med(stats["baseline"]["dec"]) if "baseline" in stats else None
        for opt, s in stats.items():
            row = {"system": name, "option": opt, "params_M": sum(p.numel() for p in base.parameters()) / 1e6,
                   "encode_rtf": med(s["enc"]) / seconds, "decode_rtf": med(s["dec"]) / seconds,
                   "encode_peak_rss_MB": med(s["enc_mem"]) / 2**20, "decode_peak_rss_MB": med(s["dec_mem"]) / 2**20,
                   "batched_hours_per_second": batch_seconds / 3600 / med(s["batch"]) if s["batch"] else None,
                   "one_by_one_hours_per_second": batch_seconds / 3600 / med(s["single"]) if s["single"] else None,
                   **work, "encode_gflops": work["encode_gflop"] / med(s["enc"]),
                   "decode_gflops": work["decode_gflop"] / med(s["dec"]), **facts[opt]}
            if base_t:
                row["offline_time_vs_baseline"] = (med(s["enc"]) + med(s["dec"])) / base_t
                # the rate that coding in half the baseline's time takes, against the GEMM peak
                row["half_baseline_needs_gflops"] = (work["encode_gflop"] + work["decode_gflop"]) / (base_t / 2)
                if "exact_profile" in row:
                    row["matmul_share_of_half_baseline"] = row["exact_profile"]["matmul_s"] / (base_t / 2)
            if s["senc"]:
                ss = ssig.shape[-1] / 16000
                row.update({"stream_encode_rtf": med(s["senc"]) / ss, "stream_decode_rtf": med(s["sdec"]) / ss,
                            "stream_rtf": (med(s["senc"]) + med(s["sdec"])) / ss,
                            "chunk_ms_median": 1000 * med([a + b for a, b in zip(s["chunk_enc"], s["chunk_dec"])]),
                            "chunk_ms_p95": 1000 * sorted(a + b for a, b in zip(s["chunk_enc"], s["chunk_dec"]))[
                                int(0.95 * (len(s["chunk_enc"]) - 1))],
                            "algorithmic_latency_ms": 1000 * base.algorithmic_latency})
            rows.append(row)
            print(f"{name:26s} {opt:8s} enc {row['encode_rtf']:.3f} dec {row['decode_rtf']:.3f} "
                  f"x{row.get('offline_time_vs_baseline', float('nan')):.2f} agree {row['token_agreement']:.3f} "
                  f"snr {row['wave_snr_db']:.1f} dB {row['encode_gflops']:.0f} GFLOP/s batch {row['batched_hours_per_second'] or 0:.2e} h/s"
                  + (f" stream {row['stream_rtf']:.3f} ({row['chunk_ms_median']:.0f} ms/chunk)" if s["senc"] else ""),
                  flush=True)
        if "exact+compile" in args.options and name in args.compile_systems and not args.in_child and base_t:
            rows.append(compiled_row(args, name, base_t, seconds))
        del codecs, base
        if onnx_dir:
            shutil.rmtree(onnx_dir, ignore_errors=True)
    shutil.rmtree(hubert, ignore_errors=True)
    result = {
        "date_utc": f"{started:%Y-%m-%d %H:%M}", "finished_utc": f"{datetime.datetime.now(datetime.timezone.utc):%H:%M}",
        "device": "cpu", "cpu": platform.processor() or platform.machine(), "threads": args.threads,
        "torch": torch.__version__, "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg()[0], "gemm_peak_gflops": peak,
        "audio_seconds": seconds, "stream_audio_seconds": ssig.shape[-1] / 16000, "batch_audio_seconds": batch_seconds,
        "repeats": args.repeats, "warmup_rounds": args.warmup, "clip": str(CLIP.relative_to(CLIP.parents[4])),
        "caveats": ("random weights at the published sizes (published checkpoints are not reachable offline): speed "
                    "is the published models'; token agreement of the lossy modes is that of random weights on "
                    "speech, not of the trained models. dWER is not reported: a randomly initialised codec does "
                    "not reproduce speech, so an ASR's errors on its output say nothing about int8 / bf16."),
        "rows": rows, "skipped": skipped,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
