#!/usr/bin/env python3
"""Entropy-coded bit rates of token models (order-0, n-gram) on real speech from ../shared/data.

Two token streams, each with every token model of ``speechbrain_codec.entropy``:

* the mini FSQ codec (``recipes/mini``: log-mel -> FSQ [8,5,5,5] -> Vocos, 50 Hz, 498.3 b/s),
  trained here by the recipe itself (``bash recipes/mini/run.sh --stop_stage 2 --exp EXP``:
  stages 1-2, the generic trainer with default hparams; a folder already trained is left as it
  is, an interrupted training resumes) unless ``--checkpoint`` names an exported codec folder;
* deduplicated DPDP units: the mini DPDP codec's front end and quantizer
  (``recipes/mini/hparams/codec/logmel_dpdp.yaml``: 80-band log-mel at 50 Hz, k-means 512,
  lambda 20), its k-means fitted here on the log-mel frames of the whole fitting clips, as the
  trainer does before training (``fit_codebook_if_needed``); the coded stream is the run-merged units (``dedup``). Their
  durations (run lengths, frames) are coded as a second stream: symbol ``min(d, 64) - 1``, and
  for ``d >= 64`` an Elias-gamma code of ``d - 63`` counted as plain bits. Durations are coded
  with the same model kind; for the n-gram the duration stream also sees its unit
  (``cross_codebook``).

Token models are fitted on the even-numbered clips of LibriSpeech train-clean-100 and measured
on the odd-numbered ones (held out), on LibriSpeech test-clean clips and on AISHELL-1 speaker
S0150 (Mandarin, first 60 clips). Per set and model: nominal and plain payload b/s, the
entropy-coded payload b/s (bytes that ``encode`` returns, every clip coded on its own), the
model's ideal b/s, the saving, and encode / decode time in ms per second of audio (decoding is
checked to return the tokens). Prints a table and writes ``--out`` (JSON).

    python benchmarks/entropy_rate.py                      # trains into recipes/mini/exp/entropy_rate
    python benchmarks/entropy_rate.py --checkpoint recipes/mini/exp/mini/train/codec
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from speechbrain_codec.bitstream import stream_bytes
from speechbrain_codec.codec import Codec
from speechbrain_codec.dataio import load_audio
from speechbrain_codec.entropy import fit_token_model
from speechbrain_codec.quantizers.dpdp import dedup
from speechbrain_codec.training import load_codec_yaml

ROOT = Path(__file__).resolve().parents[1]
DUR_CAP = 64  # duration symbols 0..63: d - 1 for d < 64, 63 = "64 or more" (+ Elias gamma of d - 63)


def clips(folder: Path, limit: int | None = None) -> list[Path]:
    with open(folder / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [folder / r["path"] for r in rows[:limit]]


def trained_codec(args) -> Path:
    """The exported mini FSQ codec: ``--checkpoint``, or trained by the recipe into ``--exp``."""
    if args.checkpoint:
        return Path(args.checkpoint)
    exp = Path(args.exp).resolve()
    codec_dir = exp / "train" / "codec"
    if (exp / "train" / ".done").is_file() and (codec_dir / "codec.ckpt").is_file():
        print(f"using the codec trained in {exp} (delete the folder to retrain)")
        return codec_dir
    # no --stage: run.sh skips the stages already done with the same options and resumes an
    # interrupted training (an explicit --stage 1 would retrain from scratch)
    cmd = ["bash", str(ROOT / "recipes" / "mini" / "run.sh"), "--stop_stage", "2", "--exp", str(exp)]
    print("training the mini FSQ codec:", " ".join(cmd), flush=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return codec_dir


def load(paths: list[Path], sample_rate: int) -> list[torch.Tensor]:
    return [load_audio(p, sample_rate, notices=False) for p in paths]


def fsq_tokens(codec: Codec, sigs: list[torch.Tensor]) -> list[np.ndarray]:
    with torch.no_grad():
        return [codec.sig_to_toks(s[None])[0].numpy().astype(np.int64) for s in sigs]


def dpdp_streams(codec, sigs: list[torch.Tensor]) -> list[dict]:
    """Per clip: deduplicated units ``[U, 1]``, duration symbols ``[U, 1]``, escape bits, frames."""
    out = []
    with torch.no_grad():
        for s in sigs:
            frames = codec.quantizer(codec.sig_to_lats(s[None])).toks[0, :, 0].numpy()  # units per frame
            units, durs = dedup(frames)
            sym = np.minimum(durs, DUR_CAP) - 1
            escape_bits = sum(2 * int(math.log2(d - DUR_CAP + 1)) + 1 for d in durs if d >= DUR_CAP)
            out.append({"units": units[:, None].astype(np.int64), "durs": sym[:, None].astype(np.int64),
                        "joint": np.stack([units, sym], axis=1).astype(np.int64),
                        "escape_bits": escape_bits, "frames": int(frames.size)})
    return out


def measure(model, toks_list: list[np.ndarray], seconds: float) -> dict:
    """Coded and ideal b/s of ``model`` on the clips, with encode / decode times."""
    t0 = time.perf_counter()
    payloads = [model.encode(t) for t in toks_list]
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    for data, t in zip(payloads, toks_list):
        if not np.array_equal(model.decode(data, t.shape[0]), t):
            raise SystemExit(f"{model.kind}: decoding did not return the tokens")
    t_dec = time.perf_counter() - t0
    return {"coded_bits": 8 * sum(len(p) for p in payloads),
            "ideal_bits": sum(model.ideal_bits(t) for t in toks_list),
            "encode_ms_per_s": 1000 * t_enc / seconds, "decode_ms_per_s": 1000 * t_dec / seconds}


DEFAULT_MODELS = ("order0,ngram2-kn,ngram3-kn,ngram4-kn,ngram2-wb,ngram3-wb,ngram4-wb,"
                  "ngram2-kn-c16,ngram3-kn-c16,ngram2-kn-c32")


def model_specs(names: str) -> dict[str, tuple[str, dict]]:
    """``order0`` or ``ngram<order>-<kn|wb>[-c<classes>]`` -> (kind, fit options)."""
    specs = {}
    for name in names.split(","):
        if name == "order0":
            specs[name] = ("order0", {})
            continue
        parts = name.split("-")
        if not (parts[0].startswith("ngram") and parts[0][5:].isdigit() and len(parts) in (2, 3)
                and parts[1] in ("kn", "wb") and (len(parts) == 2 or parts[2][:1] == "c" and parts[2][1:].isdigit())):
            raise SystemExit(f"--models: {name!r} is not order0 or ngram<order>-<kn|wb>[-c<classes>]")
        specs[name] = ("ngram", {"order": int(parts[0][5:]), "smoothing": parts[1],
                                 "n_classes": int(parts[2][1:]) if len(parts) == 3 else 0})
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="an exported mini FSQ codec folder (skips training)")
    parser.add_argument("--exp", default=str(ROOT / "recipes" / "mini" / "exp" / "entropy_rate"),
                        help="where the recipe trains the codec (git-ignored by default)")
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help="token models to measure: order0, ngram<order>-<kn|wb>[-c<classes>] (comma-separated)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "entropy_rate.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    specs = model_specs(args.models)
    data = Path(args.shared) / "data"
    libri = clips(data / "en" / "librispeech_train_clean_100")
    sets = {
        "librispeech train-clean-100, odd clips (held out)": libri[1::2],
        "librispeech test-clean (misc)": clips(data / "en" / "librispeech_clean_misc"),
        "aishell-1 S0150 (Mandarin, first 60)": clips(data / "zh" / "aishell1_S0150", 60),
    }

    codec_dir = trained_codec(args)
    codec = Codec.from_pretrained(codec_dir)
    sr = codec.sample_rate
    fit_sigs = load(libri[0::2], sr)
    fit_seconds = sum(s.numel() for s in fit_sigs) / sr
    set_sigs = {name: load(paths, sr) for name, paths in sets.items()}

    # DPDP: the mini recipe's codec yaml, its k-means fitted on the fitting clips as the trainer does
    dpdp_yaml = ROOT / "recipes" / "mini" / "hparams" / "codec" / "logmel_dpdp.yaml"
    dpdp_codec, _ = load_codec_yaml(str(dpdp_yaml))
    dpdp_codec.eval()
    t0 = time.perf_counter()
    with torch.no_grad():  # as the trainer does (fit_codebook_if_needed): whole fitting clips
        kmeans = dpdp_codec.quantizer.fit([dpdp_codec.sig_to_lats(s[None])[0].numpy() for s in fit_sigs])
    print(f"k-means {dpdp_codec.codebook_sizes[0]} on {kmeans['frames']} log-mel frames "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    n_units = dpdp_codec.codebook_sizes[0]
    unit_bits = math.log2(n_units)
    lmbda = dpdp_codec.quantizer.lmbda

    fsq_fit = fsq_tokens(codec, fit_sigs)
    dpdp_fit = dpdp_streams(dpdp_codec, fit_sigs)
    models = {"fsq": {}, "units": {}, "units+durations": {}}
    for name, (kind, opts) in specs.items():
        models["fsq"][name] = fit_token_model(kind, fsq_fit, codec.codebook_sizes, **opts)
        models["units"][name] = fit_token_model(kind, [d["units"] for d in dpdp_fit], [n_units], **opts)
        joint_opts = {**opts, "cross_codebook": True} if kind == "ngram" else opts
        models["units+durations"][name] = fit_token_model(kind, [d["joint"] for d in dpdp_fit], [n_units, DUR_CAP],
                                                         **joint_opts)

    result = {
        "command": "python benchmarks/entropy_rate.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads 2",
        "fsq_checkpoint": str(codec_dir), "fsq_codec": codec.describe(),
        "dpdp": {"codec_hparams": str(dpdp_yaml.relative_to(ROOT)), "codebook_size": n_units, "lmbda": lmbda,
                 "kmeans": kmeans, "frame_rate": dpdp_codec.frame_rate, "nominal_bitrate": dpdp_codec.bitrate,
                 "duration_symbols": DUR_CAP},
        "fitted_on": f"{len(fit_sigs)} even-numbered clips of librispeech train-clean-100, {fit_seconds:.0f} s",
        "models": {name: {"kind": kind, **opts} for name, (kind, opts) in specs.items()},
        "sets": {},
    }
    print(f"FSQ codec {codec.codebook_sizes} at {codec.frame_rate} Hz, nominal {codec.bitrate:.1f} b/s; "
          f"DPDP units {n_units} (lambda {lmbda}) at {dpdp_codec.frame_rate} Hz, nominal {dpdp_codec.bitrate:.1f} b/s; "
          f"token models fitted on {result['fitted_on']}\n")
    for set_name, sigs in set_sigs.items():
        seconds = sum(s.numel() for s in sigs) / sr
        fsq = fsq_tokens(codec, sigs)
        dp = dpdp_streams(dpdp_codec, sigs)
        n_u = sum(d["units"].shape[0] for d in dp)
        esc = sum(d["escape_bits"] for d in dp)
        plain_fsq = 8 * sum(stream_bytes(t.shape[0], n) for t in fsq for n in codec.codebook_sizes) / seconds
        streams = {
            "fsq": (fsq, codec.bitrate, plain_fsq, 0),
            "units": ([d["units"] for d in dp], dpdp_codec.bitrate, n_u * unit_bits / seconds, 0),
            "units+durations": ([d["joint"] for d in dp], dpdp_codec.bitrate,
                                (n_u * (unit_bits + math.log2(DUR_CAP)) + esc) / seconds, esc),
        }
        row_set = {"clips": len(sigs), "seconds": round(seconds, 1), "dedup_units": n_u,
                   "units_per_second": n_u / seconds, "duration_escape_bits": esc, "streams": {}}
        for stream, (toks, nominal, plain, extra_bits) in streams.items():
            rows = {}
            for name, model in models[stream].items():
                m = measure(model, toks, seconds)
                coded = (m["coded_bits"] + extra_bits) / seconds
                rows[name] = {"nominal_bitrate": nominal, "plain_payload_bitrate": plain,
                              "entropy_payload_bitrate": coded, "ideal_bitrate": (m["ideal_bits"] + extra_bits) / seconds,
                              "saving_vs_nominal_%": 100 * (1 - coded / nominal),
                              "saving_vs_plain_%": 100 * (1 - coded / plain),
                              "encode_ms_per_s": m["encode_ms_per_s"], "decode_ms_per_s": m["decode_ms_per_s"]}
            row_set["streams"][stream] = rows
        result["sets"][set_name] = row_set
        print(f"{set_name}: {len(sigs)} clips, {seconds:.0f} s, {n_u / seconds:.1f} dedup units/s", flush=True)

    for stream, title in (("fsq", "mini FSQ codec tokens (1000 codes, 50 Hz)"),
                          ("units", "deduplicated DPDP units (512, lambda 20)"),
                          ("units+durations", "deduplicated DPDP units + their durations")):
        print(f"\n{title}: b/s (coded = bytes from encode)\n")
        print("| set | model | nominal | plain | coded | ideal | % below nominal | % below plain | enc ms/s | dec ms/s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for set_name, row_set in result["sets"].items():
            for name, r in row_set["streams"][stream].items():
                print(f"| {set_name} | {name} | {r['nominal_bitrate']:.1f} | {r['plain_payload_bitrate']:.1f} | "
                      f"{r['entropy_payload_bitrate']:.1f} | {r['ideal_bitrate']:.1f} | {r['saving_vs_nominal_%']:.1f} | "
                      f"{r['saving_vs_plain_%']:.1f} | {r['encode_ms_per_s']:.2f} | {r['decode_ms_per_s']:.2f} |")
    print("\nnominal: FSQ frame rate x log2 1000; units: 50 Hz x log2 512 per frame (before dedup). plain: FSQ "
          "tokens packed as the .sbc format packs them; units: log2 512 per deduplicated unit (+ log2 64 per "
          "duration symbol and the escape bits). coded: bytes from encode (+ escape bits), every clip on its own "
          "(each pays the range coder's final flush). ideal: the models' cross-entropy. enc/dec: ms of wall time "
          "per second of audio (decoding checked to return the tokens).")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
